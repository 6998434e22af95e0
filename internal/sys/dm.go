package sys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Command numbers, flags and sizes from <linux/dm-ioctl.h> (ioctl interface
// 4.x). dm_linux_test.go pins every value against golang.org/x/sys/unix.
const (
	DM_VERSION_CMD            = 0
	DM_REMOVE_ALL_CMD         = 1
	DM_LIST_DEVICES_CMD       = 2
	DM_DEV_CREATE_CMD         = 3
	DM_DEV_REMOVE_CMD         = 4
	DM_DEV_RENAME_CMD         = 5
	DM_DEV_SUSPEND_CMD        = 6
	DM_DEV_STATUS_CMD         = 7
	DM_DEV_WAIT_CMD           = 8
	DM_TABLE_LOAD_CMD         = 9
	DM_TABLE_CLEAR_CMD        = 10
	DM_TABLE_DEPS_CMD         = 11
	DM_TABLE_STATUS_CMD       = 12
	DM_LIST_VERSIONS_CMD      = 13
	DM_TARGET_MSG_CMD         = 14
	DM_DEV_SET_GEOMETRY_CMD   = 15
	DM_DEV_ARM_POLL_CMD       = 16
	DM_GET_TARGET_VERSION_CMD = 17
)

// Flags of struct dm_ioctl (<linux/dm-ioctl.h>).
const (
	DM_READONLY_FLAG             = 1 << 0
	DM_SUSPEND_FLAG              = 1 << 1
	DM_PERSISTENT_DEV_FLAG       = 1 << 3
	DM_STATUS_TABLE_FLAG         = 1 << 4
	DM_ACTIVE_PRESENT_FLAG       = 1 << 5
	DM_INACTIVE_PRESENT_FLAG     = 1 << 6
	DM_BUFFER_FULL_FLAG          = 1 << 8
	DM_SKIP_BDGET_FLAG           = 1 << 9
	DM_SKIP_LOCKFS_FLAG          = 1 << 10
	DM_NOFLUSH_FLAG              = 1 << 11
	DM_QUERY_INACTIVE_TABLE_FLAG = 1 << 12
	DM_UEVENT_GENERATED_FLAG     = 1 << 13
	DM_UUID_FLAG                 = 1 << 14
	DM_SECURE_DATA_FLAG          = 1 << 15
	DM_DATA_OUT_FLAG             = 1 << 16
	DM_DEFERRED_REMOVE           = 1 << 17
	DM_INTERNAL_SUSPEND_FLAG     = 1 << 18
	DM_IMA_MEASUREMENT_FLAG      = 1 << 19

	DM_NAME_LIST_FLAG_HAS_UUID         = 1
	DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID = 2

	DM_NAME_LEN      = 128
	DM_UUID_LEN      = 129
	DM_MAX_TYPE_NAME = 16
)

// Sizes of the ABI structs (x86-64 and arm64 alike).
const (
	SizeofDmIoctl          = 312 // struct dm_ioctl
	OffsetofDmIoctlData    = 305 // offsetof(struct dm_ioctl, data)
	SizeofDmTargetSpec     = 40  // struct dm_target_spec
	SizeofDmNameListHeader = 12  // offsetof(struct dm_name_list, name)
	SizeofDmTargetDeps     = 8   // struct dm_target_deps without dev[]
	SizeofDmTargetVersions = 16  // offsetof(struct dm_target_versions, name)
	SizeofDmTargetMsg      = 8   // offsetof(struct dm_target_msg, message)
)

// udev cookie flags from libdevmapper.h. The kernel copies dm_ioctl.event_nr
// of resume, remove and rename into the uevent as DM_COOKIE; the high 16
// bits are these flags.
const (
	DM_UDEV_FLAGS_SHIFT         = 16
	DM_UDEV_PRIMARY_SOURCE_FLAG = 0x0040
)

// Buffer sizes for DM replies: libdm starts at 16 KiB; dmsnap doubles on
// DM_BUFFER_FULL_FLAG up to DMBufferCap.
const (
	DMBufferStart = 16 << 10
	DMBufferCap   = 16 << 20
)

// ErrBufferFull is returned when a reply still does not fit in
// DMBufferCap bytes.
var ErrBufferFull = errors.New("dm reply exceeds buffer cap")

// ErrMalformed reports a reply buffer that breaks the ABI (offsets out of
// bounds, missing terminators). It means a kernel/ABI mismatch.
var ErrMalformed = errors.New("malformed dm reply")

func malformedf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrMalformed)
}

// DMRequest is one DM ioctl in Go terms. Name and UUID identify the device
// (give one; DM_DEV_CREATE takes both); Payload is copied to data_start.
type DMRequest struct {
	Cmd         uint      // DM_*_CMD
	Version     [3]uint32 // the minimum interface version the command needs
	Name        string
	UUID        string
	Dev         uint64 // huge_encode_dev form
	Flags       uint32
	EventNr     uint32 // DEV_WAIT: the last seen event; resume/remove/rename: the udev cookie
	TargetCount uint32
	Payload     []byte
}

// DMReply is the kernel's answer. Data is the checked slice
// buf[data_start:data_size] (nil when the kernel returned no payload).
type DMReply struct {
	Version     [3]uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Dev         uint64
	Name        string
	UUID        string
	Data        []byte
}

// HugeEncodeDev encodes a device number as the kernel's huge_encode_dev
// (include/linux/kdev_t.h), the form of dm_ioctl.dev and of the dev
// fields of dm_name_list and dm_target_deps.
func HugeEncodeDev(major, minor uint32) uint64 {
	return uint64(minor&0xff) | uint64(major)<<8 | uint64(minor&^0xff)<<12
}

// HugeDecodeDev is the inverse of HugeEncodeDev.
func HugeDecodeDev(dev uint64) (major, minor uint32) {
	major = uint32((dev & 0xfff00) >> 8)
	minor = uint32((dev & 0xff) | ((dev >> 12) & 0xfff00))
	return major, minor
}

func align8(n int) int { return (n + 7) &^ 7 }

// cstring returns b up to its first NUL and whether a NUL was found.
func cstring(b []byte) (string, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), false
	}
	return string(b[:i]), true
}

// TargetSpec is one struct dm_target_spec plus its parameter string.
type TargetSpec struct {
	Start  uint64 // sectors
	Length uint64 // sectors
	Status int32
	Type   string
	Params string
}

// checkSpec reports a spec the kernel could not represent.
func checkSpec(s TargetSpec) error {
	if len(s.Type) == 0 || len(s.Type) >= DM_MAX_TYPE_NAME {
		return fmt.Errorf("target type %q: length must be 1..%d", s.Type, DM_MAX_TYPE_NAME-1)
	}
	if bytes.IndexByte([]byte(s.Type), 0) >= 0 || bytes.IndexByte([]byte(s.Params), 0) >= 0 {
		return fmt.Errorf("target %q: NUL byte in type or params", s.Type)
	}
	return nil
}

// SpecsSize returns the payload size EncodeTargetSpecs produces: each spec
// is followed by its NUL-terminated params, padded to 8 bytes.
func SpecsSize(specs []TargetSpec) int {
	n := 0
	for _, s := range specs {
		n += SizeofDmTargetSpec + align8(len(s.Params)+1)
	}
	return n
}

// DecodeTargetSpecs parses the payload of DM_TABLE_STATUS, DM_DEV_WAIT and
// DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG: count specs, each followed by
// its NUL-terminated string. On output, unlike on load, `next` is the
// offset of the next spec from the start of the data area, not from the
// current spec (<linux/dm-ioctl.h>; drivers/md/dm-ioctl.c retrieve_status).
func DecodeTargetSpecs(data []byte, count uint32) ([]TargetSpec, error) {
	specs := make([]TargetSpec, 0, min(count, 1024))
	off := 0
	for i := uint32(0); i < count; i++ {
		if off < 0 || off+SizeofDmTargetSpec > len(data) {
			return nil, malformedf("target spec %d at offset %d beyond %d bytes", i, off, len(data))
		}
		h := data[off : off+SizeofDmTargetSpec]
		typ, _ := cstring(h[24:40])
		params, ok := cstring(data[off+SizeofDmTargetSpec:])
		if !ok {
			return nil, malformedf("target spec %d: unterminated string", i)
		}
		specs = append(specs, TargetSpec{
			Start:  binary.NativeEndian.Uint64(h[0:8]),
			Length: binary.NativeEndian.Uint64(h[8:16]),
			Status: int32(binary.NativeEndian.Uint32(h[16:20])),
			Type:   typ,
			Params: params,
		})
		next := int(binary.NativeEndian.Uint32(h[20:24]))
		if i+1 < count && next < off+SizeofDmTargetSpec+len(params)+1 {
			return nil, malformedf("target spec %d: next offset %d overlaps the spec at %d", i, next, off)
		}
		off = next
	}
	return specs, nil
}

// EncodeTargetMsg builds the DM_TARGET_MSG payload: struct dm_target_msg
// {u64 sector; char message[]} with a NUL-terminated message.
func EncodeTargetMsg(sector uint64, msg string) ([]byte, error) {
	if bytes.IndexByte([]byte(msg), 0) >= 0 {
		return nil, errors.New("NUL byte in message")
	}
	b := make([]byte, SizeofDmTargetMsg+len(msg)+1)
	binary.NativeEndian.PutUint64(b, sector)
	copy(b[SizeofDmTargetMsg:], msg)
	return b, nil
}

// EncodeString builds a NUL-terminated payload (the new name or uuid of
// DM_DEV_RENAME).
func EncodeString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// NameListEntry is one record of the DM_LIST_DEVICES payload.
type NameListEntry struct {
	Dev     uint64 // huge_encode_dev form
	Name    string
	EventNr uint32
	// HasEventNr is false on interfaces before 4.37, which end the record
	// after the name.
	HasEventNr bool
	// UUIDFlags is DM_NAME_LIST_FLAG_HAS_UUID or _DOESNT_HAVE_UUID when the
	// kernel honoured DM_UUID_FLAG, 0 when it did not (then UUID is
	// unknown, not empty).
	UUIDFlags uint32
	UUID      string
}

// DecodeNameList parses the DM_LIST_DEVICES payload: a chain of struct
// dm_name_list {u64 dev; u32 next; char name[]}, where next counts from
// the start of the current record and 0 ends the chain. From interface
// 4.37 the name's NUL is followed, aligned to 8, by u32 event_nr and u32
// flags; with DM_UUID_FLAG and DM_NAME_LIST_FLAG_HAS_UUID the uuid follows,
// again aligned to 8. A first record with dev == 0 means no devices
// (drivers/md/dm-ioctl.c list_devices). hasEventNr says whether the
// interface version is at least 4.37.
func DecodeNameList(data []byte, hasEventNr bool) ([]NameListEntry, error) {
	var out []NameListEntry
	if len(data) < SizeofDmNameListHeader || binary.NativeEndian.Uint64(data) == 0 {
		return out, nil
	}
	off := 0
	for {
		if off+SizeofDmNameListHeader > len(data) {
			return nil, malformedf("name list record at %d beyond %d bytes", off, len(data))
		}
		next := int(binary.NativeEndian.Uint32(data[off+8:]))
		end := len(data)
		if next != 0 {
			end = off + next
			if next < SizeofDmNameListHeader || end > len(data) {
				return nil, malformedf("name list record at %d: bad next %d", off, next)
			}
		}
		rec := data[off:end]
		name, ok := cstring(rec[SizeofDmNameListHeader:])
		if !ok {
			return nil, malformedf("name list record at %d: unterminated name", off)
		}
		e := NameListEntry{Dev: binary.NativeEndian.Uint64(rec), Name: name}
		p := align8(SizeofDmNameListHeader + len(name) + 1)
		if hasEventNr && p+8 <= len(rec) {
			e.HasEventNr = true
			e.EventNr = binary.NativeEndian.Uint32(rec[p:])
			e.UUIDFlags = binary.NativeEndian.Uint32(rec[p+4:])
			if e.UUIDFlags&DM_NAME_LIST_FLAG_HAS_UUID != 0 {
				u, ok := cstring(rec[min(p+8, len(rec)):])
				if !ok {
					return nil, malformedf("name list record %q: unterminated uuid", name)
				}
				e.UUID = u
			}
		}
		out = append(out, e)
		if next == 0 {
			return out, nil
		}
		off = end
	}
}

// DecodeDeps parses the DM_TABLE_DEPS payload: struct dm_target_deps
// {u32 count; u32 padding; u64 dev[count]}.
func DecodeDeps(data []byte) ([]uint64, error) {
	if len(data) < SizeofDmTargetDeps {
		return nil, malformedf("deps payload of %d bytes", len(data))
	}
	count := int(binary.NativeEndian.Uint32(data))
	if count > (len(data)-SizeofDmTargetDeps)/8 {
		return nil, malformedf("deps count %d beyond %d bytes", count, len(data))
	}
	devs := make([]uint64, count)
	for i := range devs {
		devs[i] = binary.NativeEndian.Uint64(data[SizeofDmTargetDeps+8*i:])
	}
	return devs, nil
}

// TargetVersion is one record of DM_LIST_VERSIONS.
type TargetVersion struct {
	Name    string
	Version [3]uint32
}

// DecodeVersions parses the DM_LIST_VERSIONS (and DM_GET_TARGET_VERSION)
// payload: a chain of struct dm_target_versions {u32 next; u32
// version[3]; char name[]}, next counted from the current record, 0 ends.
func DecodeVersions(data []byte) ([]TargetVersion, error) {
	var out []TargetVersion
	off := 0
	for len(data) > 0 {
		if off+SizeofDmTargetVersions > len(data) {
			return nil, malformedf("versions record at %d beyond %d bytes", off, len(data))
		}
		rec := data[off:]
		name, ok := cstring(rec[SizeofDmTargetVersions:])
		if !ok {
			return nil, malformedf("versions record at %d: unterminated name", off)
		}
		out = append(out, TargetVersion{Name: name, Version: [3]uint32{
			binary.NativeEndian.Uint32(rec[4:]),
			binary.NativeEndian.Uint32(rec[8:]),
			binary.NativeEndian.Uint32(rec[12:]),
		}})
		next := int(binary.NativeEndian.Uint32(rec))
		if next == 0 {
			break
		}
		if next < SizeofDmTargetVersions+len(name)+1 {
			return nil, malformedf("versions record %q: bad next %d", name, next)
		}
		off += next
	}
	return out, nil
}

// DecodeString returns the NUL-terminated string at the start of data (the
// DM_TARGET_MSG reply).
func DecodeString(data []byte) string {
	s, _ := cstring(data)
	return s
}
