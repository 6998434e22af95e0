package sys

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestABISizes pins the struct layouts to <linux/dm-ioctl.h>.
func TestABISizes(t *testing.T) {
	var h unix.DmIoctl
	var s unix.DmTargetSpec
	var nameList struct { // struct dm_name_list (not in x/sys)
		Dev  uint64
		Next uint32
		Name [0]byte
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(dm_ioctl)", unsafe.Sizeof(h), 312},
		{"SizeofDmIoctl", SizeofDmIoctl, unix.SizeofDmIoctl},
		{"offsetof(dm_ioctl.data_size)", unsafe.Offsetof(h.Data_size), 12},
		{"offsetof(dm_ioctl.flags)", unsafe.Offsetof(h.Flags), 28},
		{"offsetof(dm_ioctl.event_nr)", unsafe.Offsetof(h.Event_nr), 32},
		{"offsetof(dm_ioctl.dev)", unsafe.Offsetof(h.Dev), 40},
		{"offsetof(dm_ioctl.name)", unsafe.Offsetof(h.Name), 48},
		{"offsetof(dm_ioctl.uuid)", unsafe.Offsetof(h.Uuid), 176},
		{"offsetof(dm_ioctl.data)", unsafe.Offsetof(h.Data), OffsetofDmIoctlData},
		{"sizeof(dm_target_spec)", unsafe.Sizeof(s), SizeofDmTargetSpec},
		{"SizeofDmTargetSpec", unix.SizeofDmTargetSpec, SizeofDmTargetSpec},
		{"offsetof(dm_target_spec.next)", unsafe.Offsetof(s.Next), 20},
		{"offsetof(dm_target_spec.target_type)", unsafe.Offsetof(s.Target_type), 24},
		{"sizeof(dm_target_deps)", unsafe.Sizeof(unix.DmTargetDeps{}), SizeofDmTargetDeps},
		{"sizeof(dm_target_versions)", unsafe.Sizeof(unix.DmTargetVersions{}), SizeofDmTargetVersions},
		{"sizeof(dm_target_msg)", unsafe.Sizeof(unix.DmTargetMsg{}), SizeofDmTargetMsg},
		{"offsetof(dm_name_list.name)", unsafe.Offsetof(nameList.Name), SizeofDmNameListHeader},
		{"sizeof(loop_config)", unsafe.Sizeof(unix.LoopConfig{}), 304},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestConstants pins the kernel-named constants declared in dm.go to
// golang.org/x/sys/unix and the _IOWR encoding.
func TestConstants(t *testing.T) {
	for nr, code := range dmRequestCodes {
		// _IOWR(0xfd, nr, struct dm_ioctl) = dir 3<<30 | size<<16 | 0xfd<<8 | nr
		if want := uint(3<<30 | 312<<16 | 0xfd<<8 | nr); code != want {
			t.Errorf("request %d = %#x, want %#x", nr, code, want)
		}
	}
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"READONLY", DM_READONLY_FLAG, unix.DM_READONLY_FLAG},
		{"SUSPEND", DM_SUSPEND_FLAG, unix.DM_SUSPEND_FLAG},
		{"PERSISTENT_DEV", DM_PERSISTENT_DEV_FLAG, unix.DM_PERSISTENT_DEV_FLAG},
		{"STATUS_TABLE", DM_STATUS_TABLE_FLAG, unix.DM_STATUS_TABLE_FLAG},
		{"ACTIVE_PRESENT", DM_ACTIVE_PRESENT_FLAG, unix.DM_ACTIVE_PRESENT_FLAG},
		{"INACTIVE_PRESENT", DM_INACTIVE_PRESENT_FLAG, unix.DM_INACTIVE_PRESENT_FLAG},
		{"BUFFER_FULL", DM_BUFFER_FULL_FLAG, unix.DM_BUFFER_FULL_FLAG},
		{"SKIP_BDGET", DM_SKIP_BDGET_FLAG, unix.DM_SKIP_BDGET_FLAG},
		{"SKIP_LOCKFS", DM_SKIP_LOCKFS_FLAG, unix.DM_SKIP_LOCKFS_FLAG},
		{"NOFLUSH", DM_NOFLUSH_FLAG, unix.DM_NOFLUSH_FLAG},
		{"QUERY_INACTIVE_TABLE", DM_QUERY_INACTIVE_TABLE_FLAG, unix.DM_QUERY_INACTIVE_TABLE_FLAG},
		{"UEVENT_GENERATED", DM_UEVENT_GENERATED_FLAG, unix.DM_UEVENT_GENERATED_FLAG},
		{"UUID", DM_UUID_FLAG, unix.DM_UUID_FLAG},
		{"SECURE_DATA", DM_SECURE_DATA_FLAG, unix.DM_SECURE_DATA_FLAG},
		{"DATA_OUT", DM_DATA_OUT_FLAG, unix.DM_DATA_OUT_FLAG},
		{"DEFERRED_REMOVE", DM_DEFERRED_REMOVE, unix.DM_DEFERRED_REMOVE},
		{"INTERNAL_SUSPEND", DM_INTERNAL_SUSPEND_FLAG, unix.DM_INTERNAL_SUSPEND_FLAG},
		{"IMA_MEASUREMENT", DM_IMA_MEASUREMENT_FLAG, unix.DM_IMA_MEASUREMENT_FLAG},
		{"NAME_LIST_HAS_UUID", DM_NAME_LIST_FLAG_HAS_UUID, unix.DM_NAME_LIST_FLAG_HAS_UUID},
		{"NAME_LIST_DOESNT_HAVE_UUID", DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID, unix.DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID},
		{"NAME_LEN", DM_NAME_LEN, unix.DM_NAME_LEN},
		{"UUID_LEN", DM_UUID_LEN, unix.DM_UUID_LEN},
		{"MAX_TYPE_NAME", DM_MAX_TYPE_NAME, unix.DM_MAX_TYPE_NAME},
	} {
		if c.got != c.want {
			t.Errorf("DM_%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// referenceSpecs is the encoding/binary reference of EncodeTargetSpecs.
func referenceSpecs(specs []TargetSpec) []byte {
	var buf bytes.Buffer
	for i, s := range specs {
		size := 40 + (len(s.Params)+1+7)/8*8
		next := uint32(size)
		if i == len(specs)-1 {
			next = 0
		}
		var typ [16]byte
		copy(typ[:], s.Type)
		_ = binary.Write(&buf, binary.NativeEndian, struct {
			Start, Length uint64
			Status        int32
			Next          uint32
			Type          [16]byte
		}{s.Start, s.Length, s.Status, next, typ})
		buf.WriteString(s.Params)
		buf.Write(make([]byte, size-40-len(s.Params)))
	}
	return buf.Bytes()
}

func TestEncodeTargetSpecsMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []string{"linear", "snapshot", "snapshot-origin", "snapshot-merge", "error", "zero", "a", "123456789012345"}
	for iter := range 500 {
		specs := make([]TargetSpec, rng.IntN(6)+1)
		for i := range specs {
			specs[i] = TargetSpec{
				Start:  rng.Uint64(),
				Length: rng.Uint64(),
				Type:   types[rng.IntN(len(types))],
				Params: strings.Repeat("x", rng.IntN(40)),
			}
		}
		got, err := EncodeTargetSpecs(specs)
		if err != nil {
			t.Fatal(err)
		}
		want := referenceSpecs(specs)
		if !bytes.Equal(got, want) {
			t.Fatalf("iteration %d: encoding differs\n got %x\nwant %x", iter, got, want)
		}
		if len(got) != SpecsSize(specs) || len(got)%8 != 0 {
			t.Fatalf("size %d, SpecsSize %d", len(got), SpecsSize(specs))
		}
	}
	if b, err := EncodeTargetSpecs(nil); err != nil || len(b) != 0 {
		t.Fatalf("EncodeTargetSpecs(nil) = %x, %v", b, err)
	}
	for _, bad := range []TargetSpec{{Type: ""}, {Type: "1234567890123456"}, {Type: "linear", Params: "a\x00b"}} {
		if _, err := EncodeTargetSpecs([]TargetSpec{bad}); err == nil {
			t.Errorf("EncodeTargetSpecs(%+v) accepted", bad)
		}
	}
}

func TestPackHeaderAndUnpackReply(t *testing.T) {
	req := &DMRequest{
		Cmd: DM_TABLE_LOAD_CMD, Version: [3]uint32{4, 2, 0}, Name: "dev0", UUID: "uuid0",
		Dev: HugeEncodeDev(254, 3), Flags: DM_READONLY_FLAG, EventNr: 0x400000, TargetCount: 2,
		Payload: []byte("payload"),
	}
	buf := newBuffer(1024)
	packHeader(buf, req)
	ne := binary.NativeEndian
	for _, c := range []struct {
		off  int
		want uint32
	}{{0, 4}, {4, 2}, {8, 0}, {12, 1024}, {16, 312}, {20, 2}, {28, DM_READONLY_FLAG}, {32, 0x400000}} {
		if got := ne.Uint32(buf[c.off:]); got != c.want {
			t.Errorf("u32 at %d = %#x, want %#x", c.off, got, c.want)
		}
	}
	if ne.Uint64(buf[40:]) != 0xfe03 || string(buf[48:52]) != "dev0" || string(buf[176:181]) != "uuid0" || string(buf[312:319]) != "payload" {
		t.Fatalf("header bytes wrong: % x", buf[:320])
	}

	// The kernel shrinks data_size below data_start for DM_DEV_CREATE.
	ne.PutUint32(buf[12:], 305)
	r, err := unpackReply(buf)
	if err != nil || r.Data != nil || r.Name != "dev0" || r.UUID != "uuid0" {
		t.Fatalf("shrunk reply: %+v %v", r, err)
	}
	ne.PutUint32(buf[12:], 320)
	if r, err = unpackReply(buf); err != nil || string(r.Data) != "payload\x00" {
		t.Fatalf("reply data %q %v", r.Data, err)
	}
	ne.PutUint32(buf[12:], 2048)
	if _, err := unpackReply(buf); err == nil {
		t.Fatal("data_size beyond buffer accepted")
	}
}
