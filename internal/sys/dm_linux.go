package sys

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node. devtmpfs creates it (misc
// minor 236, nodename "mapper/control"); opening it needs CAP_SYS_ADMIN.
const ControlPath = "/dev/mapper/control"

// dmRequestCodes maps DM_*_CMD to the ioctl request _IOWR(0xfd, nr,
// struct dm_ioctl).
var dmRequestCodes = [...]uint{
	DM_VERSION_CMD:            unix.DM_VERSION,
	DM_REMOVE_ALL_CMD:         unix.DM_REMOVE_ALL,
	DM_LIST_DEVICES_CMD:       unix.DM_LIST_DEVICES,
	DM_DEV_CREATE_CMD:         unix.DM_DEV_CREATE,
	DM_DEV_REMOVE_CMD:         unix.DM_DEV_REMOVE,
	DM_DEV_RENAME_CMD:         unix.DM_DEV_RENAME,
	DM_DEV_SUSPEND_CMD:        unix.DM_DEV_SUSPEND,
	DM_DEV_STATUS_CMD:         unix.DM_DEV_STATUS,
	DM_DEV_WAIT_CMD:           unix.DM_DEV_WAIT,
	DM_TABLE_LOAD_CMD:         unix.DM_TABLE_LOAD,
	DM_TABLE_CLEAR_CMD:        unix.DM_TABLE_CLEAR,
	DM_TABLE_DEPS_CMD:         unix.DM_TABLE_DEPS,
	DM_TABLE_STATUS_CMD:       unix.DM_TABLE_STATUS,
	DM_LIST_VERSIONS_CMD:      unix.DM_LIST_VERSIONS,
	DM_TARGET_MSG_CMD:         unix.DM_TARGET_MSG,
	DM_DEV_SET_GEOMETRY_CMD:   unix.DM_DEV_SET_GEOMETRY,
	DM_DEV_ARM_POLL_CMD:       unix.DM_DEV_ARM_POLL,
	DM_GET_TARGET_VERSION_CMD: unix.DM_GET_TARGET_VERSION,
}

// Control owns one open descriptor of /dev/mapper/control. It is safe for
// concurrent use: each call holds a reference on the descriptor (through
// os.File's RawConn), so Close never pulls it from under a running ioctl.
type Control struct {
	f         *os.File
	bufStart  int // first reply buffer size; 0 means DMBufferStart
	closeOnce sync.Once
	closeErr  error
}

// OpenControl opens /dev/mapper/control read-write with O_CLOEXEC. The
// error wraps the errno: ENOENT when device-mapper is absent, EACCES or
// EPERM without privileges.
func OpenControl() (*Control, error) {
	f, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			pe.Err = WrapErr(pe.Err)
		}
		return nil, err
	}
	return &Control{f: f}, nil
}

// Close closes the descriptor. Later calls return the first result.
func (c *Control) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.f.Close() })
	return c.closeErr
}

// ioctl runs one ioctl on the descriptor, retrying EINTR (an interrupted
// DM_DEV_SUSPEND undoes itself in the kernel, so a retry is safe).
func (c *Control) ioctl(req uint, buf []byte) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	cerr := rc.Control(func(fd uintptr) {
		for {
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
			if e != unix.EINTR {
				errno = e
				return
			}
		}
	})
	runtime.KeepAlive(buf)
	if cerr != nil {
		return cerr
	}
	return wrapErrno(errno)
}

// newBuffer returns a zeroed, 8-byte aligned buffer of size bytes.
func newBuffer(size int) []byte {
	if size == 0 {
		return []byte{}
	}
	words := make([]uint64, (size+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
}

// Do runs req, growing the reply buffer on DM_BUFFER_FULL_FLAG: it starts
// at max(DMBufferStart, what the payload needs) and doubles up to
// DMBufferCap, then returns ErrBufferFull. Every retry re-issues the
// command; only commands that return data set the flag (list, status,
// deps, versions, and DM_TARGET_MSG, whose message is then delivered
// again, as libdm does).
//
// The kernel rewrites data_size to the bytes it used, which can be less
// than data_start (DM_DEV_CREATE); Do checks data_start and data_size
// before slicing and returns Data == nil when there is no payload.
func (c *Control) Do(req *DMRequest) (*DMReply, error) {
	if req.Cmd >= uint(len(dmRequestCodes)) {
		return nil, fmt.Errorf("dm command %d unknown", req.Cmd)
	}
	if len(req.Name) >= DM_NAME_LEN {
		return nil, fmt.Errorf("device name %q longer than %d bytes", req.Name, DM_NAME_LEN-1)
	}
	if len(req.UUID) >= DM_UUID_LEN {
		return nil, fmt.Errorf("device uuid %q longer than %d bytes", req.UUID, DM_UUID_LEN-1)
	}
	start := c.bufStart
	if start == 0 {
		start = DMBufferStart
	}
	size := max(start, SizeofDmIoctl+align8(len(req.Payload)))
	for {
		buf := newBuffer(size)
		packHeader(buf, req)
		if err := c.ioctl(dmRequestCodes[req.Cmd], buf); err != nil {
			return nil, err
		}
		reply, err := unpackReply(buf)
		if err != nil {
			return nil, err
		}
		if reply.Flags&DM_BUFFER_FULL_FLAG == 0 {
			return reply, nil
		}
		if size >= DMBufferCap {
			return nil, fmt.Errorf("%d bytes: %w", size, ErrBufferFull)
		}
		size *= 2
	}
}

// packHeader fills the struct dm_ioctl at the start of buf and copies the
// payload to data_start. buf must be 8-byte aligned and large enough.
func packHeader(buf []byte, req *DMRequest) {
	h := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	h.Version = req.Version
	h.Data_size = uint32(len(buf))
	h.Data_start = unix.SizeofDmIoctl
	h.Target_count = req.TargetCount
	h.Flags = req.Flags
	h.Event_nr = req.EventNr
	h.Dev = req.Dev
	copy(h.Name[:DM_NAME_LEN-1], req.Name)
	copy(h.Uuid[:DM_UUID_LEN-1], req.UUID)
	copy(buf[unix.SizeofDmIoctl:], req.Payload)
}

// unpackReply reads the header the kernel wrote back and slices the
// payload after checking data_start/data_size against the buffer.
func unpackReply(buf []byte) (*DMReply, error) {
	h := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	r := &DMReply{
		Version:     h.Version,
		TargetCount: h.Target_count,
		OpenCount:   h.Open_count,
		Flags:       h.Flags,
		EventNr:     h.Event_nr,
		Dev:         h.Dev,
	}
	r.Name, _ = cstring(h.Name[:])
	r.UUID, _ = cstring(h.Uuid[:])
	start, size := int(h.Data_start), int(h.Data_size)
	if size > len(buf) {
		return nil, malformedf("data_size %d beyond the %d-byte buffer", size, len(buf))
	}
	if start < OffsetofDmIoctlData {
		return nil, malformedf("data_start %d inside the header", start)
	}
	if start < size {
		r.Data = buf[start:size]
	}
	return r, nil
}

// EncodeTargetSpecs builds the DM_TABLE_LOAD payload: for each target a
// struct dm_target_spec, its NUL-terminated params, and padding to 8
// bytes. On load `next` is the distance from this spec to the next one
// (drivers/md/dm-ioctl.c populate_table/next_target require it to be a
// multiple of 8 and to point past the previous NUL); the last spec's next
// is 0.
func EncodeTargetSpecs(specs []TargetSpec) ([]byte, error) {
	for _, s := range specs {
		if err := checkSpec(s); err != nil {
			return nil, err
		}
	}
	buf := newBuffer(SpecsSize(specs))
	off := 0
	for i, s := range specs {
		size := unix.SizeofDmTargetSpec + align8(len(s.Params)+1)
		h := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[off]))
		h.Sector_start = s.Start
		h.Length = s.Length
		h.Status = s.Status
		if i+1 < len(specs) {
			h.Next = uint32(size)
		}
		copy(h.Target_type[:], s.Type)
		copy(buf[off+unix.SizeofDmTargetSpec:], s.Params)
		off += size
	}
	return buf, nil
}

// WaitEvent blocks until the global DM event counter moves past the value
// recorded by the last DM_DEV_ARM_POLL on this descriptor, or timeout
// passes. It reports whether an event is pending. poll(2) on the control
// node returns POLLIN until the next DM_DEV_ARM_POLL (drivers/md/dm-ioctl.c
// dm_poll), so the caller re-arms before re-checking its condition.
func (c *Control) WaitEvent(timeout time.Duration) (bool, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		n     int
		perr  error
		msecs = int(timeout / time.Millisecond)
	)
	cerr := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, perr = unix.Poll(fds, msecs)
			if perr != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return false, cerr
	}
	if perr != nil {
		return false, WrapErr(perr)
	}
	return n > 0, nil
}
