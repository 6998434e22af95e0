package lvm2

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseLVsRecorded parses lvs's report recorded in the VM (lvm2
// 2.03.16): an origin and a tagged snapshot with 8 KiB chunks after three
// 4 KiB origin writes.
func TestParseLVsRecorded(t *testing.T) {
	lvs, err := ParseLVs(readFixture(t, "lvm2-2.03.16-lvs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 2 {
		t.Fatalf("%d LVs, want 2: %+v", len(lvs), lvs)
	}
	cur, origin := lvs[0], lvs[1]
	// UUIDs are random per recording: checked for LVM2's shape only.
	if len(cur.UUID) != 38 || len(origin.UUID) != 38 || cur.UUID == origin.UUID {
		t.Errorf("UUIDs %q, %q", cur.UUID, origin.UUID)
	}
	want := LV{VG: "vg0", Name: "cur", UUID: cur.UUID, Attr: "swi-a-s---",
		SizeBytes: 12 << 20, Extents: 3, ExtentBytes: 4 << 20, Layout: "linear", SegType: "linear",
		Origin: "origin", OriginSizeBytes: 64 << 20, SnapPercent: "0.33", Tags: []string{CursorTag},
		DMPath: "/dev/mapper/vg0-cur", KernelMajor: 254, KernelMinor: 3, ChunkBytes: 8192}
	if !lvEqual(cur, want) {
		t.Errorf("snapshot:\n got %+v\nwant %+v", cur, want)
	}
	if !cur.IsSnapshot() || cur.IsOrigin() || !cur.Active() || cur.Open() || cur.Merging() || cur.Invalid() || cur.ReadOnly() {
		t.Errorf("snapshot attr %s decoded wrongly", cur.Attr)
	}
	if cur.COWDMName() != "vg0-cur-cow" || cur.DMPath != "/dev/mapper/"+cur.DMName() {
		t.Errorf("dm names %s, %s", cur.COWDMName(), cur.DMName())
	}
	if !origin.IsOrigin() || origin.IsSnapshot() || origin.Extents != 16 || origin.SnapPercent != "" || origin.Tags != nil {
		t.Errorf("origin: %+v", origin)
	}
	if err := CheckOwned(cur, false); err != nil {
		t.Errorf("CheckOwned(tagged): %v", err)
	}
}

// TestMergingRecorded: lvs -a during a merge LVM2 deferred because the
// origin was open (lvm2 2.03.16): the snapshot is hidden as "[cur3]" with
// lv_attr S, the origin O and open; LV finds the snapshot and Merge refuses
// a second merge before running anything.
func TestMergingRecorded(t *testing.T) {
	ctx := context.Background()
	f := &fakeExec{results: []fakeResult{{prefix: "lvs", stdout: string(readFixture(t, "lvm2-2.03.16-lvs-a-merging.json"))}}}
	r := &Runner{Exec: f}
	cur, err := r.LV(ctx, Path{VG: "vg0", LV: "cur3"})
	if err != nil {
		t.Fatal(err)
	}
	if cur.Name != "cur3" || !cur.Hidden || !cur.Merging() || !cur.IsSnapshot() || cur.COWDMName() != "vg0-cur3-cow" {
		t.Errorf("merging snapshot: %+v", cur)
	}
	origin, err := r.LV(ctx, Path{VG: "vg0", LV: "origin"})
	if err != nil {
		t.Fatal(err)
	}
	if origin.Hidden || !origin.Merging() || !origin.IsOrigin() || !origin.Open() {
		t.Errorf("origin: %+v", origin)
	}
	if _, err := r.Merge(ctx, Path{VG: "vg0", LV: "cur3"}, false); !errors.Is(err, ErrMerging) {
		t.Errorf("Merge: %v, want ErrMerging", err)
	}
	if _, err := r.LV(ctx, Path{VG: "vg0", LV: "cur"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("LV of a missing LV: %v", err)
	}
	for _, c := range f.commands() {
		if !strings.HasPrefix(c, "lvs --reportformat json --units b --nosuffix -a -o ") {
			t.Errorf("ran %q", c)
		}
	}
}

func lvEqual(a, b LV) bool { return reflect.DeepEqual(a, b) }

func TestParseVGsRecorded(t *testing.T) {
	vgs, err := ParseVGs(readFixture(t, "lvm2-2.03.16-vgs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vgs) == 1 && len(vgs[0].UUID) != 38 {
		t.Errorf("UUID %q", vgs[0].UUID)
	}
	want := VG{Name: "vg0", SizeBytes: 264241152, FreeBytes: 184549376,
		ExtentBytes: 4 << 20, ExtentCount: 63, FreeExtents: 44, LVCount: 2, SnapshotCount: 1}
	if len(vgs) != 1 || vgs[0].Tags != nil {
		t.Fatalf("got %+v", vgs)
	}
	want.UUID = vgs[0].UUID
	if !reflect.DeepEqual(vgs[0], want) {
		t.Errorf("got %+v\nwant %+v", vgs[0], want)
	}
	if err := checkFree(vgs[0], 44<<22); err != nil {
		t.Errorf("44 extents of 44 free: %v", err)
	}
	if err := checkFree(vgs[0], 44<<22+1); !errors.Is(err, ErrNoSpace) {
		t.Errorf("one byte more: %v", err)
	}
}

func TestParseBad(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[]`,
		`{"report":[{"lv":[{"vg_name":"vg0"}]}]}`,
		`{"report":[{"lv":[{"vg_name":"vg0","lv_name":"a","lv_uuid":"","lv_attr":"","lv_size":"12x","vg_extent_size":"4194304","lv_layout":"","segtype":"","origin":"","origin_size":"","snap_percent":"","seg_monitor":"","lv_tags":"","lv_dm_path":"","lv_kernel_major":"","lv_kernel_minor":"","chunk_size":""}]}]}`,
		`{"report":[{"lv":[{"vg_name":"vg0","lv_name":"a","lv_uuid":"","lv_attr":"","lv_size":"5","vg_extent_size":"4194304","lv_layout":"","segtype":"","origin":"","origin_size":"","snap_percent":"","seg_monitor":"","lv_tags":"","lv_dm_path":"","lv_kernel_major":"","lv_kernel_minor":"","chunk_size":""}]}]}`,
	} {
		if lvs, err := ParseLVs([]byte(in)); !errors.Is(err, ErrSyntax) || lvs != nil {
			t.Errorf("ParseLVs(%q) = %v, %v; want ErrSyntax", in, lvs, err)
		}
	}
	if _, err := ParseVGs([]byte(`{"report":[{"vg":[{"vg_name":"x"}]}]}`)); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseVGs of a short row: %v", err)
	}
}

// FuzzParseLVs: exactly one of the result and the error is nil, and every
// LV returned has a whole number of extents.
func FuzzParseLVs(f *testing.F) {
	f.Add(readFixture(f, "lvm2-2.03.16-lvs.json"))
	f.Add([]byte(`{"report":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		lvs, err := ParseLVs(b)
		if (lvs == nil) == (err == nil) {
			t.Fatalf("ParseLVs: %v, %v", lvs, err)
		}
		for _, lv := range lvs {
			if lv.Extents*lv.ExtentBytes != lv.SizeBytes {
				t.Fatalf("%+v", lv)
			}
		}
	})
}
