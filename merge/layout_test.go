package merge

import (
	"reflect"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// The LVM2 merge state vm.md recorded during lvconvert --merge: the origin
// runs snapshot-merge, the old snapshot carries error; a dmsetup-driven
// merge on anonymous devices leaves the old snapshot's table as it was.
func TestFindMerges(t *testing.T) {
	f := newFake()
	// LVM2
	f.add("vg0-base-real", "LVM-aaa-real", 1, "0 131072 linear 7:0 2048")
	f.add("vg0-base", "LVM-aaa", 0, "0 131072 snapshot-merge 254:1 254:2 P 8")
	f.add("vg0-snap2-cow", "LVM-bbb-cow", 2, "0 65536 linear 7:0 133120")
	f.add("vg0-snap2", "LVM-bbb", 3, "0 131072 error")
	f.add("vg0-keep", "LVM-ccc", 4, "0 131072 snapshot 254:1 254:5 P 8")
	f.add("vg0-keep-cow", "LVM-ccc-cow", 5, "0 65536 linear 7:0 200000")
	// anonymous, dmsetup style, COW and real on loop devices
	f.add("base", "", 10, "0 131072 snapshot-merge 7:3 7:4 PO 16")
	f.add("snap", "", 11, "0 131072 snapshot 7:3 7:4 PO 16")
	// unrelated devices, one with a target dm does not parse
	f.add("crypt", "CRYPT-x", 12, "0 8 crypt aes 0 0 7:9 0")
	f.add("plain", "", 13, "0 8 linear 7:9 0")
	ms, err := FindMerges(f)
	if err != nil {
		t.Fatal(err)
	}
	dev := func(maj, min uint32) dm.DevNum { return dm.DevNum{Major: maj, Minor: min} }
	want := []Merge{
		{Owner: OwnerNone, Origin: "base", RealDev: dev(7, 3), Snapshot: "snap", COWDev: dev(7, 4),
			Target: dm.SnapshotMerge{Origin: dev(7, 3), COW: dev(7, 4), Store: dm.PersistentOverflow, ChunkSectors: 16}},
		{Owner: OwnerLVM2, Origin: "vg0-base", Real: "vg0-base-real", RealDev: dev(254, 1), Snapshot: "vg0-snap2",
			COW: "vg0-snap2-cow", COWDev: dev(254, 2),
			Target: dm.SnapshotMerge{Origin: dev(254, 1), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8}},
	}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("FindMerges:\n got %+v\nwant %+v", ms, want)
	}
	l, err := FindLayout(f, "vg0-keep-cow")
	if err != nil || l.Origin.Name != "vg0-base" || len(l.Snapshots) != 1 || l.Snapshots[0].Name != "vg0-keep" ||
		l.Snapshots[0].COW == nil || l.Snapshots[0].COW.Name != "vg0-keep-cow" || l.Real.Name != "vg0-base-real" {
		t.Errorf("FindLayout(vg0-keep-cow) = %+v, %v", l, err)
	}
	if l, err := FindLayout(f, "plain"); err == nil {
		t.Errorf("FindLayout(plain) = %+v", l)
	}
}

func TestOwner(t *testing.T) {
	for uuid, want := range map[string]Owner{"LVM-x": OwnerLVM2, "DMSNAP-x-cow": OwnerDMSnap, "": OwnerNone, "CRYPT-x": OwnerNone} {
		if got := ownerOf(uuid); got != want {
			t.Errorf("ownerOf(%q) = %s, want %s", uuid, got, want)
		}
	}
}
