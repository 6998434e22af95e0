package sys

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Loop flags from <linux/loop.h>.
const (
	LO_FLAGS_READ_ONLY = unix.LO_FLAGS_READ_ONLY
	LO_FLAGS_AUTOCLEAR = unix.LO_FLAGS_AUTOCLEAR
	LO_FLAGS_PARTSCAN  = unix.LO_FLAGS_PARTSCAN
	LO_FLAGS_DIRECT_IO = unix.LO_FLAGS_DIRECT_IO
)

// LoopControlPath is the loop control node (devtmpfs).
const LoopControlPath = "/dev/loop-control"

// withFd runs fn on f's descriptor while holding a reference on it.
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	runtime.KeepAlive(f)
	return ferr
}

// LoopCtlGetFree asks /dev/loop-control (ctl) for a free loop index,
// creating a device if none is free. The index is only a hint: another
// process can bind it before we do, so callers retry on EBUSY.
func LoopCtlGetFree(ctl *os.File) (int, error) {
	var n int
	err := withFd(ctl, func(fd int) error {
		var err error
		n, err = unix.IoctlRetInt(fd, unix.LOOP_CTL_GET_FREE)
		return WrapErr(err)
	})
	return n, err
}

// LoopConfigure binds backing to the loop device dev in one call
// (LOOP_CONFIGURE, Linux 5.8). flags are LO_FLAGS_*. Older kernels answer
// EINVAL or ENOTTY; then use LoopSetFd and LoopSetStatus64.
func LoopConfigure(dev, backing *os.File, flags uint32) error {
	return withFd(backing, func(bfd int) error {
		return withFd(dev, func(fd int) error {
			cfg := unix.LoopConfig{Fd: uint32(bfd)}
			cfg.Info.Flags = flags
			return WrapErr(unix.IoctlLoopConfigure(fd, &cfg))
		})
	})
}

// LoopSetFd binds backing to dev (LOOP_SET_FD). A read-only binding
// follows from backing being opened read-only.
func LoopSetFd(dev, backing *os.File) error {
	return withFd(backing, func(bfd int) error {
		return withFd(dev, func(fd int) error {
			return WrapErr(unix.IoctlSetInt(fd, unix.LOOP_SET_FD, bfd))
		})
	})
}

// LoopSetStatus64 sets the settable flags (AUTOCLEAR, PARTSCAN) of dev.
func LoopSetStatus64(dev *os.File, flags uint32) error {
	return withFd(dev, func(fd int) error {
		info, err := unix.IoctlLoopGetStatus64(fd)
		if err != nil {
			return WrapErr(err)
		}
		info.Flags = flags
		return WrapErr(unix.IoctlLoopSetStatus64(fd, info))
	})
}

// LoopSetDirectIO switches direct I/O on dev on or off (LOOP_SET_DIRECT_IO).
func LoopSetDirectIO(dev *os.File, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return withFd(dev, func(fd int) error {
		return WrapErr(unix.IoctlSetInt(fd, unix.LOOP_SET_DIRECT_IO, v))
	})
}

// LoopGetFlags returns the LO_FLAGS_* of dev; ENXIO means unbound.
func LoopGetFlags(dev *os.File) (uint32, error) {
	var flags uint32
	err := withFd(dev, func(fd int) error {
		info, err := unix.IoctlLoopGetStatus64(fd)
		if err != nil {
			return WrapErr(err)
		}
		flags = info.Flags
		return nil
	})
	return flags, err
}

// LoopClrFd unbinds dev (LOOP_CLR_FD). If others still hold dev open the
// kernel only sets AUTOCLEAR and returns 0; the unbinding then happens at
// their last close.
func LoopClrFd(dev *os.File) error {
	return withFd(dev, func(fd int) error {
		return WrapErr(unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0))
	})
}

// OpenFlagsCloexec is O_CLOEXEC, for os.OpenFile callers above sys.
const OpenFlagsCloexec = unix.O_CLOEXEC

// OpenFlagsDirect is O_DIRECT.
const OpenFlagsDirect = unix.O_DIRECT
