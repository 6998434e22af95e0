package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
)

// TestPoolRemovePending: a pool whose metadata carries a pending
// pool-remove record (a pool remove killed after committing it) is
// refused by writing commands, naming how to finish; `pool remove`
// without --force finishes it though the pool has volumes; the PVs are
// wiped and the pool is forgotten.
func TestPoolRemovePending(t *testing.T) {
	e := newCLIEnv(t)
	a, b := e.image("a.img", 16<<20), e.image("b.img", 16<<20)
	e.mustRun("pool", "create", "vg", a, b)
	e.mustRun("lv", "create", "vg/one", "--size", "4M", "--no-activate")
	var disks []lvm.Disk
	for _, img := range []string{a, b} {
		d, err := lvm.OpenDisk(img, true)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		disks = append(disks, d)
	}
	s, err := lvm.Load(disks)
	if err != nil {
		t.Fatal(err)
	}
	next, _ := s.Pool.AddPending(lvm.PendingOp{Op: lvm.OpPoolRemove})
	if err := s.Commit(next); err != nil {
		t.Fatal(err)
	}
	code, _, errs := e.run("lv", "create", "vg/two", "--size", "4M", "--no-activate")
	if code != exitError || !strings.Contains(errs, "is being removed") || !strings.Contains(errs, "pool remove vg") {
		t.Errorf("lv create on a pool being removed: exit %d %q", code, errs)
	}
	e.mustRun("pool", "remove", "vg")
	for _, d := range disks {
		if _, err := lvm.ReadLabel(d); !errors.Is(err, lvm.ErrNoLabel) {
			t.Errorf("after pool remove: label %v, want none", err)
		}
	}
	if code, out, errs := e.run("pool", "ls"); code != 0 || strings.Contains(out, "vg") || errs != "" {
		t.Errorf("pool ls after the finished removal: exit %d %q %q", code, out, errs)
	}
}

// TestPoolRemoveCrashStateFile kills `pool remove --force vg` (two image
// PVs, one volume; the host has no device-mapper, so nothing is
// deactivated) at each of its steps after the pending record: after the
// state file's entry is marked removing, after the first PV's label,
// after each PV's wipe. Then:
//  1. the state file's entry is still there, marked removing (nothing
//     else changed it);
//  2. `pool remove vg`, without --force, finishes the removal: no image
//     is labelled, the state file has no entry for vg, `pool ls` lists
//     nothing and warns nothing;
//  3. the name is free: `pool create vg` works.
//
// Killed after the last wipe, every PV is wiped and only the entry is
// left; before the mark, `pool remove` without --force refused it ("no
// pool named vg") and `pool ls` warned until `--force` forgot it.
func TestPoolRemoveCrashStateFile(t *testing.T) {
	for _, fp := range []string{"pool.remove.after-mark", "pool.remove.after-label", "pool.remove.after-wipe", "pool.remove.after-label@2", "pool.remove.after-wipe@2"} {
		t.Run(fp, func(t *testing.T) {
			e := newCLIEnv(t)
			a, b := e.image("a.img", 16<<20), e.image("b.img", 16<<20)
			e.mustRun("pool", "create", "vg", a, b)
			e.mustRun("lv", "create", "vg/one", "--size", "4M", "--no-activate")
			e.crash(fp, "pool", "remove", "--force", "vg")
			gopts := &globalOptions{ConfigDir: e.path("cfg")}
			st, err := loadState(gopts)
			if err != nil {
				t.Fatal(err)
			}
			if sp, ok := st.Pools["vg"]; !ok || !sp.Removing {
				t.Errorf("state file after the kill: %+v, want vg marked removing", st.Pools)
			}
			out := e.mustRun("pool", "remove", "vg")
			if !strings.Contains(out, "removed pool vg") && !strings.Contains(out, "finished removing pool vg") {
				t.Errorf("pool remove vg: %q", out)
			}
			for _, img := range []string{a, b} {
				d, err := lvm.OpenDisk(img, false)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := lvm.ReadLabel(d); !errors.Is(err, lvm.ErrNoLabel) {
					t.Errorf("%s: label %v, want none", img, err)
				}
				d.Close()
			}
			if st, err = loadState(gopts); err != nil {
				t.Fatal(err)
			} else if _, ok := st.Pools["vg"]; ok {
				t.Errorf("state file still names vg: %+v", st.Pools)
			}
			if code, out, errs := e.run("pool", "ls"); code != 0 || strings.Contains(out, "vg") || errs != "" {
				t.Errorf("pool ls: exit %d %q %q", code, out, errs)
			}
			e.mustRun("pool", "create", "vg", e.image("c.img", 16<<20))
		})
	}
}

// TestSettleRemoved: after a pool remove killed past its last wipe, the
// discovery-time settling that activate runs forgets the entry marked
// removing (and the default pool naming it), but not an entry that is
// not marked, not one whose PVs are still found, and not one whose pool
// another process holds locked.
func TestSettleRemoved(t *testing.T) {
	e := newCLIEnv(t)
	e.mustRun("pool", "create", "--default", "gone", e.image("a.img", 16<<20))
	e.mustRun("pool", "create", "kept", e.image("b.img", 16<<20))
	e.mustRun("pool", "create", "held", e.image("c.img", 16<<20))
	e.crash("pool.remove.after-wipe", "pool", "remove", "gone")
	e.crash("pool.remove.after-wipe", "pool", "remove", "held")
	e.crash("pool.remove.after-mark", "pool", "remove", "kept") // marked, PV not wiped
	gopts := &globalOptions{ConfigDir: e.path("cfg"), LockDir: e.path("lock"), DevDir: e.path("dev")}
	l, err := lockPool(gopts, "held", lock.Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	d, err := discover(gopts, nil)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := settleRemoved(context.Background(), gopts, d, nil)
	l.Close()
	if err != nil || len(gone) != 1 || gone[0].Name != "gone" {
		t.Fatalf("settleRemoved: %+v %v, want gone only", gone, err)
	}
	st, err := loadState(gopts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Pools["gone"]; ok || st.DefaultPool != "" {
		t.Errorf("state after settling: %+v default %q", st.Pools, st.DefaultPool)
	}
	for _, n := range []string{"kept", "held"} {
		if _, ok := st.Pools[n]; !ok {
			t.Errorf("settling forgot %s", n)
		}
	}
	if gone, err := settleRemoved(context.Background(), gopts, d, nil); err != nil || len(gone) != 1 || gone[0].Name != "held" {
		t.Errorf("second settling, held unlocked: %+v %v", gone, err)
	}
}
