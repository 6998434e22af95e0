package sys

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"reflect"
	"syscall"
	"testing"
)

// putSpec appends a status-style spec (next counted from the data start).
func putStatusSpec(b []byte, s TargetSpec, last bool) []byte {
	off := len(b)
	h := make([]byte, SizeofDmTargetSpec)
	binary.NativeEndian.PutUint64(h[0:], s.Start)
	binary.NativeEndian.PutUint64(h[8:], s.Length)
	binary.NativeEndian.PutUint32(h[16:], uint32(s.Status))
	copy(h[24:40], s.Type)
	b = append(b, h...)
	b = append(b, s.Params...)
	b = append(b, 0)
	if !last {
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		binary.NativeEndian.PutUint32(b[off+20:], uint32(len(b)))
	}
	return b
}

func TestDecodeTargetSpecs(t *testing.T) {
	want := []TargetSpec{
		{Start: 0, Length: 131072, Type: "snapshot", Params: "16/32768 16"},
		{Start: 131072, Length: 8, Type: "snapshot-origin", Params: ""},
		{Start: 131080, Length: 1 << 40, Type: "linear", Params: "7:0 2048"},
	}
	var data []byte
	for i, s := range want {
		data = putStatusSpec(data, s, i == len(want)-1)
	}
	got, err := DecodeTargetSpecs(data, uint32(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	// Truncations anywhere must be errors, never panics.
	for n := 0; n < len(data); n++ {
		if _, err := DecodeTargetSpecs(data[:n], uint32(len(want))); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: err %v, want ErrMalformed", n, err)
		}
	}
	// A next that points backwards is rejected.
	bad := append([]byte(nil), data...)
	binary.NativeEndian.PutUint32(bad[20:], 8)
	if _, err := DecodeTargetSpecs(bad, 3); !errors.Is(err, ErrMalformed) {
		t.Fatalf("backward next: err %v", err)
	}
	if got, err := DecodeTargetSpecs(nil, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
}

// nameRecord builds one dm_name_list record as list_devices writes it on
// 4.45+ with DM_UUID_FLAG.
func nameRecord(dev uint64, name string, eventNr, flags uint32, uuid string, withEvent bool) []byte {
	b := make([]byte, SizeofDmNameListHeader)
	binary.NativeEndian.PutUint64(b, dev)
	b = append(b, name...)
	b = append(b, 0)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	if withEvent {
		b = binary.NativeEndian.AppendUint32(b, eventNr)
		b = binary.NativeEndian.AppendUint32(b, flags)
		if flags&DM_NAME_LIST_FLAG_HAS_UUID != 0 {
			b = append(b, uuid...)
			b = append(b, 0)
			for len(b)%8 != 0 {
				b = append(b, 0)
			}
		}
	}
	return b
}

func chainNames(recs ...[]byte) []byte {
	var out []byte
	for i, r := range recs {
		if i+1 < len(recs) {
			binary.NativeEndian.PutUint32(r[8:], uint32(len(r)))
		}
		out = append(out, r...)
	}
	return out
}

func TestDecodeNameList(t *testing.T) {
	data := chainNames(
		nameRecord(HugeEncodeDev(254, 0), "vg0-base", 3, DM_NAME_LIST_FLAG_HAS_UUID, "LVM-abc", true),
		nameRecord(HugeEncodeDev(254, 300), "x", 0, DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID, "", true),
		nameRecord(HugeEncodeDev(254, 2), "dmsnaptest-0123456789abcdef", 7, DM_NAME_LIST_FLAG_HAS_UUID, "u", true),
	)
	got, err := DecodeNameList(data, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []NameListEntry{
		{Dev: HugeEncodeDev(254, 0), Name: "vg0-base", EventNr: 3, HasEventNr: true, UUIDFlags: 1, UUID: "LVM-abc"},
		{Dev: HugeEncodeDev(254, 300), Name: "x", HasEventNr: true, UUIDFlags: 2},
		{Dev: HugeEncodeDev(254, 2), Name: "dmsnaptest-0123456789abcdef", EventNr: 7, HasEventNr: true, UUIDFlags: 1, UUID: "u"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// Pre-4.37 records end after the name.
	old := chainNames(nameRecord(HugeEncodeDev(254, 0), "a", 0, 0, "", false), nameRecord(HugeEncodeDev(254, 1), "bb", 0, 0, "", false))
	got, err = DecodeNameList(old, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "bb" || got[1].HasEventNr {
		t.Fatalf("old format: %+v", got)
	}

	// No devices: one record with dev == 0.
	if got, err := DecodeNameList(make([]byte, 16), true); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %+v %v", got, err)
	}
	// A next beyond the data is malformed.
	bad := append([]byte(nil), data...)
	binary.NativeEndian.PutUint32(bad[8:], uint32(len(bad)+8))
	if _, err := DecodeNameList(bad, true); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad next: %v", err)
	}
	for n := 1; n < len(data); n++ {
		_, _ = DecodeNameList(data[:n], true) // must not panic
	}
}

func TestDecodeDeps(t *testing.T) {
	data := binary.NativeEndian.AppendUint32(nil, 2)
	data = binary.NativeEndian.AppendUint32(data, 0)
	data = binary.NativeEndian.AppendUint64(data, HugeEncodeDev(7, 0))
	data = binary.NativeEndian.AppendUint64(data, HugeEncodeDev(7, 1))
	got, err := DecodeDeps(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0x700, 0x701}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#x, want %#x", got, want)
	}
	if _, err := DecodeDeps(data[:20]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestDecodeVersions(t *testing.T) {
	rec := func(name string, v [3]uint32) []byte {
		b := make([]byte, SizeofDmTargetVersions)
		for i, x := range v {
			binary.NativeEndian.PutUint32(b[4+4*i:], x)
		}
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		return b
	}
	a, b := rec("snapshot", [3]uint32{1, 16, 0}), rec("linear", [3]uint32{1, 4, 0})
	binary.NativeEndian.PutUint32(a, uint32(len(a)))
	got, err := DecodeVersions(append(a, b...))
	if err != nil {
		t.Fatal(err)
	}
	want := []TargetVersion{{"snapshot", [3]uint32{1, 16, 0}}, {"linear", [3]uint32{1, 4, 0}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestHugeDev(t *testing.T) {
	for _, c := range []struct {
		major, minor uint32
		enc          uint64
	}{
		{254, 0, 0xfe00}, {7, 1, 0x701}, {254, 256, 0x10fe00}, {259, 1048575, 0xfff103ff},
	} {
		if got := HugeEncodeDev(c.major, c.minor); got != c.enc {
			t.Errorf("HugeEncodeDev(%d, %d) = %#x, want %#x", c.major, c.minor, got, c.enc)
		}
		if ma, mi := HugeDecodeDev(c.enc); ma != c.major || mi != c.minor {
			t.Errorf("HugeDecodeDev(%#x) = %d:%d", c.enc, ma, mi)
		}
	}
}

func TestEncodeTargetMsg(t *testing.T) {
	b, err := EncodeTargetMsg(42, "@cancel_deferred_remove")
	if err != nil {
		t.Fatal(err)
	}
	if binary.NativeEndian.Uint64(b) != 42 || string(b[8:]) != "@cancel_deferred_remove\x00" {
		t.Fatalf("payload %q", b)
	}
	if _, err := EncodeTargetMsg(0, "a\x00b"); err == nil {
		t.Fatal("NUL in message accepted")
	}
}

func TestErrnoWrapping(t *testing.T) {
	err := WrapErr(syscall.EBUSY)
	if !errors.Is(err, syscall.EBUSY) || !errors.Is(err, EBUSY) {
		t.Fatal("wrapped EBUSY does not match EBUSY")
	}
	if errors.Is(err, syscall.ENXIO) {
		t.Fatal("wrapped EBUSY matches ENXIO")
	}
	if _, ok := err.(syscall.Errno); ok {
		t.Fatal("wrapped errno is a bare syscall.Errno")
	}
	if err.Error() != "device or resource busy" {
		t.Fatalf("Error() = %q", err)
	}
	if !errors.Is(WrapErr(syscall.ENOENT), fs.ErrNotExist) {
		t.Fatal("wrapped ENOENT is not fs.ErrNotExist")
	}
	if WrapErr(nil) != nil || wrapErrno(0) != nil {
		t.Fatal("nil/0 not mapped to nil")
	}
}
