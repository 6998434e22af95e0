package lvm

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/failpoint"
)

// checkNoSharedExtents fails if two live linear mappings of k overlap on
// one PV: a volume given extents that another device still maps.
func checkNoSharedExtents(t *testing.T, k *fakeKernel) {
	t.Helper()
	type span struct {
		name       string
		start, end uint64
	}
	byPV := map[string][]span{}
	for name, d := range k.devs {
		for _, l := range d.live {
			if l.Type != dm.TypeLinear {
				continue
			}
			f := strings.Fields(l.Params)
			off, _ := strconv.ParseUint(f[1], 10, 64)
			byPV[f[0]] = append(byPV[f[0]], span{name, off, off + uint64(l.Length)})
		}
	}
	for pv, spans := range byPV {
		for i, a := range spans {
			for _, b := range spans[i+1:] {
				if a.start < b.end && b.start < a.end {
					t.Errorf("%s and %s both map sectors %d-%d of %s", a.name, b.name, max(a.start, b.start), min(a.end, b.end), pv)
				}
			}
		}
	}
}

// TestRemoveSnapshotBusy is the reproduction of issue #13: the
// snapshot's remove fails with EBUSY (udev's blkid holding it open).
//  1. a brief hold (two EBUSY) is retried and the removal completes;
//  2. a lasting one fails the removal with ErrBusy and puts everything
//     back: the snapshot, -cow and -real live, the origin a
//     snapshot-origin with no inactive table and not suspended, the
//     snapshot in the metadata with no pending record;
//  3. the next lv create does not get the extents the live -cow maps
//     (before the fix: sector 22528, where vg-snap-cow maps).
func TestRemoveSnapshotBusy(t *testing.T) {
	ctx := context.Background()
	t.Run("brief", func(t *testing.T) {
		s, k, env := snapFixture(t)
		if _, err := CreateSnapshot(ctx, s, env, snapSpec); err != nil {
			t.Fatal(err)
		}
		k.busy = map[string]int{"vg-snap": 2}
		if _, err := RemoveSnapshotDevices(ctx, s, env, "snap", false); err != nil {
			t.Fatal(err)
		}
		if len(k.devs) != 1 || s.Pool.Volume("snap") != nil || len(s.Pool.Pending) != 0 {
			t.Errorf("after a retried remove: devices %v, metadata %+v", k.devs, s.Pool)
		}
	})
	t.Run("lasting", func(t *testing.T) {
		s, k, env := snapFixture(t)
		if _, err := CreateSnapshot(ctx, s, env, snapSpec); err != nil {
			t.Fatal(err)
		}
		before := s.Pool
		k.busy = map[string]int{"vg-snap": -1}
		_, err := RemoveSnapshotDevices(ctx, s, env, "snap", false)
		if !errors.Is(err, dm.ErrBusy) {
			t.Fatalf("remove of a busy snapshot: %v", err)
		}
		for _, n := range []string{"vg-snap", "vg-snap-cow", "vg-base-real"} {
			if _, ok := k.devs[n]; !ok {
				t.Errorf("%s is gone", n)
			}
		}
		o := k.devs["vg-base"]
		if o.live[0].Type != dm.TypeSnapshotOrigin || o.hasInactive || o.suspended {
			t.Errorf("origin: %+v", o)
		}
		if !samePoolState(s.Pool, before) {
			t.Errorf("metadata changed: %+v", s.Pool)
		}
		k.busy = nil
		next, err := s.Pool.AddVolume("new", 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(next); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Activate(k, s.Pool, env.Devs, ActivateOptions{}); err != nil {
			t.Fatal(err)
		}
		checkNoSharedExtents(t, k)
	})
}

// samePoolState compares descriptions without their seqno.
func samePoolState(a, b *Pool) bool {
	x, y := a.Clone(), b.Clone()
	x.Seqno, y.Seqno = 0, 0
	return mustEncodeNoT(x) == mustEncodeNoT(y)
}

func mustEncodeNoT(p *Pool) string {
	b, err := encodeDocument(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// errCrashed is what a failpoint panics with in these tests.
type errCrashed string

// crashAt arms failpoint fp for the test: reaching it panics with
// errCrashed, which run recovers, like a process killed there.
func crashAt(t *testing.T, fp string) (run func(fn func())) {
	t.Setenv(failpoint.Env, fp)
	t.Cleanup(failpoint.SetExit(func(name string) { panic(errCrashed(name)) }))
	return func(fn func()) {
		defer func() {
			r := recover()
			if _, ok := r.(errCrashed); !ok {
				if r != nil {
					panic(r)
				}
				t.Fatalf("failpoint %s did not fire", fp)
			}
		}()
		fn()
	}
}

// TestRemoveSnapshotCrash kills remove at each step (the process dies:
// no deferred function runs, a suspended origin stays suspended), then
// reloads the pool from its disks and settles it as activation does:
//  1. the metadata is the new state (the snapshot gone, no record), or
//     for a crash before any change, the old state;
//  2. the kernel has exactly the devices of that state, none suspended;
//  3. the next allocation does not get extents a live device maps.
func TestRemoveSnapshotCrash(t *testing.T) {
	for _, fp := range []string{
		"lvm.snapshot.remove.after-intent", "lvm.snapshot.remove.after-origin-load",
		"lvm.snapshot.remove.suspended", "lvm.snapshot.remove.after-snapshot",
		"lvm.snapshot.remove.after-commit",
	} {
		t.Run(fp, func(t *testing.T) {
			ctx := context.Background()
			s, k, env := snapFixture(t)
			if _, err := CreateSnapshot(ctx, s, env, snapSpec); err != nil {
				t.Fatal(err)
			}
			old := s.Pool
			next := must[*Pool](t)(old.RemoveSnapshot("snap"))
			crashAt(t, fp)(func() { RemoveSnapshotDevices(ctx, s, env, "snap", false) })
			t.Setenv(failpoint.Env, "")

			// A fresh process: the pool as its disks have it.
			var ds []Disk
			for _, d := range s.Disks {
				ds = append(ds, d)
			}
			s2 := must[*Store](t)(Load(ds))
			if fp != "lvm.snapshot.remove.after-commit" && !slices.ContainsFunc(s2.Pool.Pending, func(op PendingOp) bool { return op.Op == OpSnapshotRemove }) {
				t.Fatalf("no pending %s record after a crash at %s: %+v", OpSnapshotRemove, fp, s2.Pool.Pending)
			}
			// Allocation settles first.
			if _, err := SettleForAllocation(ctx, s2, env); err != nil {
				t.Fatal(err)
			}
			if !samePoolState(s2.Pool, next) {
				t.Fatalf("metadata after settling is not the new state:\n%s\nwant\n%s", mustEncodeNoT(s2.Pool), mustEncodeNoT(next))
			}
			if _, _, err := Activate(k, s2.Pool, env.Devs, ActivateOptions{Apply: ApplyOptions{RemoveLeftovers: true}}); err != nil {
				t.Fatal(err)
			}
			if len(k.devs) != 1 || k.devs["vg-base"].live[0].Type != dm.TypeLinear || k.devs["vg-base"].suspended || k.devs["vg-base"].hasInactive {
				t.Errorf("kernel after settling: %v", k.devs)
			}
			s2.Commit(must[*Pool](t)(s2.Pool.AddVolume("new", 2)))
			if _, _, err := Activate(k, s2.Pool, env.Devs, ActivateOptions{}); err != nil {
				t.Fatal(err)
			}
			checkNoSharedExtents(t, k)
		})
	}
}

// TestSettleForAllocation: allocation refuses while a device of the pool
// belongs to no volume of its metadata (the state the old remove left
// after a crash), naming it; and, without a kernel, while a snapshot
// record is pending, naming it. Merge records do not block it.
func TestSettleForAllocation(t *testing.T) {
	ctx := context.Background()
	s, k, env := snapFixture(t)
	if _, err := CreateSnapshot(ctx, s, env, snapSpec); err != nil {
		t.Fatal(err)
	}
	// The old order: metadata first, devices left.
	if err := s.Commit(must[*Pool](t)(s.Pool.RemoveSnapshot("snap"))); err != nil {
		t.Fatal(err)
	}
	_, err := SettleForAllocation(ctx, s, env)
	if !errors.Is(err, ErrUnsettled) || !strings.Contains(err.Error(), "vg-snap-cow") {
		t.Fatalf("leftover devices: %v", err)
	}
	spec := snapSpec
	spec.Name = "snap2"
	if _, err := CreateSnapshot(ctx, s, env, spec); !errors.Is(err, ErrUnsettled) {
		t.Fatalf("create over leftovers: %v", err)
	}
	if _, _, err := Activate(k, s.Pool, env.Devs, ActivateOptions{Apply: ApplyOptions{RemoveLeftovers: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := SettleForAllocation(ctx, s, env); err != nil {
		t.Fatalf("after activate: %v", err)
	}

	p, _ := s.Pool.AddPending(PendingOp{Op: OpSnapshotRemove, Volume: s.Pool.Volume("base").UUID})
	p, _ = p.AddPending(PendingOp{Op: OpMerge, Volume: s.Pool.Volume("base").UUID})
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	_, err = SettleForAllocation(ctx, s, SnapshotEnv{})
	if !errors.Is(err, ErrUnsettled) || !strings.Contains(err.Error(), "snapshot-remove of vg/base") || strings.Contains(err.Error(), "merge") {
		t.Fatalf("pending record, no kernel: %v", err)
	}
	if err := s.Commit(s.Pool.RemovePending(s.Pool.Pending[0].ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := SettleForAllocation(ctx, s, SnapshotEnv{}); err != nil {
		t.Fatalf("merge record only: %v", err)
	}
}

// TestRemoveSnapshotUndo: a remove that fails before the snapshot device
// is gone (the origin's suspend or the snapshot's remove fails) leaves
// the origin without an inactive table (a later resume would swap linear
// in under the live snapshot) and the metadata as it was.
func TestRemoveSnapshotUndo(t *testing.T) {
	for _, fail := range []string{"suspend vg-base", "remove vg-snap", "load vg-base"} {
		t.Run(fail, func(t *testing.T) {
			ctx := context.Background()
			s, k, env := snapFixture(t)
			if _, err := CreateSnapshot(ctx, s, env, snapSpec); err != nil {
				t.Fatal(err)
			}
			before := s.Pool
			k.failOn = fail
			if _, err := RemoveSnapshotDevices(ctx, s, env, "snap", false); !errors.Is(err, errFake) {
				t.Fatalf("err %v", err)
			}
			if o := k.devs["vg-base"]; o.hasInactive || o.suspended || o.live[0].Type != dm.TypeSnapshotOrigin || len(k.devs) != 4 {
				t.Errorf("kernel not restored: %v", k.devs)
			}
			if !samePoolState(s.Pool, before) {
				t.Errorf("metadata changed: %+v", s.Pool)
			}
		})
	}
}
