package lvm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// testPool returns an uncommitted pool with PVs of the given extent counts.
func testPool(t testing.TB, counts ...ExtentCount) *Pool {
	t.Helper()
	p := must[*Pool](t)(NewPool("vg0", DefaultExtentSize))
	for i, n := range counts {
		p.PVs = append(p.PVs, PV{UUID: NewUUID(), DeviceHint: fmt.Sprintf("/dev/pv%d", i),
			Size: 2048 + dm.Sector(n)*p.ExtentSize, PEStart: 2048, PECount: n})
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllocateContiguousFirst(t *testing.T) {
	p := testPool(t, 10, 10)
	pv0, pv1 := p.PVs[0].UUID, p.PVs[1].UUID
	// Leave free runs: pv0 [2,5) (3), [7,10) (3); pv1 [0,4) (4), [6,10) (4).
	p.Volumes = []Volume{
		{Name: "a", UUID: NewUUID(), Kind: KindPlain, Segments: []Segment{{pv0, 0, 2}, {pv0, 5, 2}, {pv1, 4, 2}}},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []FreeRun{{pv0, 2, 3}, {pv0, 7, 3}, {pv1, 0, 4}, {pv1, 6, 4}}
	if got := p.FreeRuns(); !reflect.DeepEqual(got, want) {
		t.Fatalf("FreeRuns = %v, want %v", got, want)
	}
	// Best fit: 3 extents fit exactly in pv0's first run.
	if got := must[[]Segment](t)(p.Allocate(3)); !reflect.DeepEqual(got, []Segment{{pv0, 2, 3}}) {
		t.Errorf("Allocate(3) = %v", got)
	}
	// 4: the smallest run holding 4 is pv1's first.
	if got := must[[]Segment](t)(p.Allocate(4)); !reflect.DeepEqual(got, []Segment{{pv1, 0, 4}}) {
		t.Errorf("Allocate(4) = %v", got)
	}
	// 5: no run holds it; fill first-fit in PV order.
	if got := must[[]Segment](t)(p.Allocate(5)); !reflect.DeepEqual(got, []Segment{{pv0, 2, 3}, {pv0, 7, 2}}) {
		t.Errorf("Allocate(5) = %v", got)
	}
	if got := must[[]Segment](t)(p.Allocate(14)); len(got) != 4 {
		t.Errorf("Allocate(14) = %v", got)
	}
	before := mustEncode(t, p)
	_, err := p.Allocate(15)
	var nse *NoSpaceError
	if !errors.Is(err, ErrNoSpace) || !errors.As(err, &nse) || nse.Need != 15 || nse.Free != 14 {
		t.Fatalf("Allocate(15) = %v", err)
	}
	if !strings.Contains(err.Error(), "only 14 free (56 MiB)") {
		t.Errorf("message %q does not name the free space", err)
	}
	if _, err := p.AddVolume("big", 15); !errors.Is(err, ErrNoSpace) {
		t.Errorf("AddVolume beyond free: %v", err)
	}
	if after := mustEncode(t, p); after != before {
		t.Error("refused allocation changed the pool")
	}
}

func TestVolumeOps(t *testing.T) {
	p := testPool(t, 8, 8)
	pv0 := p.PVs[0].UUID
	q := must[*Pool](t)(p.AddVolume("a", 3))
	q = must[*Pool](t)(q.AddVolume("b", 2))
	if len(p.Volumes) != 0 {
		t.Fatal("AddVolume changed its receiver")
	}
	if _, err := q.AddVolume("a", 1); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := q.AddVolume("a/b", 1); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
	// "a" got pv0 [0,3) by best fit among equal runs, "b" pv0 [3,5).
	// Extending "b" continues in place.
	q = must[*Pool](t)(q.ExtendVolume("b", 2))
	if got := q.Volume("b").Segments; !reflect.DeepEqual(got, []Segment{{pv0, 3, 4}}) {
		t.Errorf("extend in place: %v", got)
	}
	// Extending "a" cannot continue in place (b follows); it gets a new
	// segment.
	q = must[*Pool](t)(q.ExtendVolume("a", 5))
	if got := q.Volume("a"); got.Extents() != 8 || len(got.Segments) != 2 {
		t.Errorf("extend a: %v", got.Segments)
	}
	if _, err := q.ExtendVolume("a", 100); !errors.Is(err, ErrNoSpace) {
		t.Errorf("extend beyond free: %v", err)
	}
	if _, err := q.ExtendVolume("zz", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("extend missing: %v", err)
	}
	r := must[*Pool](t)(q.RenameVolume("a", "c"))
	if r.Volume("c") == nil || r.Volume("a") != nil || q.Volume("a") == nil {
		t.Error("rename")
	}
	if _, err := r.RenameVolume("c", "b"); !errors.Is(err, ErrExists) {
		t.Errorf("rename onto existing: %v", err)
	}
	r = must[*Pool](t)(r.RemoveVolume("c"))
	if r.Volume("c") != nil || r.FreeExtents() != 16-4 {
		t.Errorf("remove: free %d", r.FreeExtents())
	}
	if _, err := r.RemoveVolume("c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
}

func TestSnapshotModel(t *testing.T) {
	p := testPool(t, 16)
	p = must[*Pool](t)(p.AddVolume("base", 4))
	spec := SnapshotSpec{Name: "snap", Origin: "base", COWExtents: 1, Store: dm.Persistent, ChunkSize: 8}
	q := must[*Pool](t)(p.AddSnapshot(spec))
	if q.Volume("base").Kind != KindOrigin || q.Volume("snap").Kind != KindSnapshotCOW || len(q.Snapshots) != 1 {
		t.Fatalf("AddSnapshot: %+v", q)
	}
	spec.Name = "snap2"
	q = must[*Pool](t)(q.AddSnapshot(spec))
	if _, err := q.AddSnapshot(SnapshotSpec{Name: "s3", Origin: "snap", COWExtents: 1, Store: dm.Persistent, ChunkSize: 8}); !errors.Is(err, ErrInUse) {
		t.Errorf("snapshot of snapshot: %v", err)
	}
	if _, err := q.AddSnapshot(SnapshotSpec{Name: "s3", Origin: "base", COWExtents: 1, Store: dm.Persistent, ChunkSize: 12}); err == nil {
		t.Error("chunk size 12 accepted")
	}
	if _, err := q.RemoveVolume("base"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "snap, snap2") {
		t.Errorf("remove origin: %v", err)
	}
	q = must[*Pool](t)(q.SetSnapshotState("snap", SnapshotMerging))
	if q.SnapshotByCOW(q.Volume("snap").UUID).State != SnapshotMerging {
		t.Error("state not set")
	}
	q = must[*Pool](t)(q.RemoveVolume("snap"))
	if q.Volume("base").Kind != KindOrigin {
		t.Error("origin with a snapshot left became plain")
	}
	q = must[*Pool](t)(q.RemoveSnapshot("snap2"))
	if q.Volume("base").Kind != KindPlain || len(q.Snapshots) != 0 || q.FreeExtents() != 12 {
		t.Errorf("after removing all snapshots: %+v", q)
	}
	q, id := q.AddPending(PendingOp{Op: "merge", Args: map[string]string{"k": "v"}})
	if len(q.Pending) != 1 || q.Pending[0].ID != id {
		t.Fatal("AddPending")
	}
	c := q.Clone()
	c.Pending[0].Args["k"] = "changed"
	if q.Pending[0].Args["k"] != "v" {
		t.Error("Clone shares Args")
	}
	if q = q.RemovePending(id); len(q.Pending) != 0 {
		t.Error("RemovePending")
	}
}

func TestValidateRejects(t *testing.T) {
	base := testPool(t, 8)
	base = must[*Pool](t)(base.AddVolume("a", 2))
	for name, mutate := range map[string]func(p *Pool){
		"overlap": func(p *Pool) {
			p.Volumes = append(p.Volumes, Volume{Name: "b", UUID: NewUUID(), Kind: KindPlain, Segments: []Segment{{p.PVs[0].UUID, 1, 1}}})
		},
		"beyond pv":    func(p *Pool) { p.Volumes[0].Segments[0].Count = 9 },
		"unknown pv":   func(p *Pool) { p.Volumes[0].Segments[0].PV = NewUUID() },
		"dup uuid":     func(p *Pool) { p.Volumes[0].UUID = p.PVs[0].UUID },
		"bad kind":     func(p *Pool) { p.Volumes[0].Kind = "thin" },
		"lonely cow":   func(p *Pool) { p.Volumes[0].Kind = KindSnapshotCOW },
		"lonely orig":  func(p *Pool) { p.Volumes[0].Kind = KindOrigin },
		"pv too large": func(p *Pool) { p.PVs[0].PECount = 1 << 62 },
		"no segments":  func(p *Pool) { p.Volumes[0].Segments = nil },
		"bad extent":   func(p *Pool) { p.ExtentSize = 12 },
	} {
		p := base.Clone()
		mutate(p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidModel) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}

// TestAllocatorRandom runs random operations and checks the invariants
// after each: the model validates, and used + free = total.
func TestAllocatorRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := testPool(t, 50, 13, 77)
	total := p.TotalExtents()
	for i := range 3000 {
		var q *Pool
		var err error
		name := fmt.Sprintf("v%d", rng.IntN(40))
		n := ExtentCount(1 + rng.IntN(30))
		switch rng.IntN(4) {
		case 0:
			q, err = p.AddVolume(name, n)
		case 1:
			q, err = p.ExtendVolume(name, n)
		case 2:
			q, err = p.RemoveVolume(name)
		case 3:
			q, err = p.RenameVolume(name, fmt.Sprintf("v%d", rng.IntN(40)))
		}
		if err != nil {
			if !errors.Is(err, ErrNoSpace) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) {
				t.Fatalf("step %d: unexpected error %v", i, err)
			}
			continue
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var used ExtentCount
		for _, v := range q.Volumes {
			used += v.Extents()
		}
		if used+q.FreeExtents() != total {
			t.Fatalf("step %d: used %d + free %d != %d", i, used, q.FreeExtents(), total)
		}
		p = q
	}
}
