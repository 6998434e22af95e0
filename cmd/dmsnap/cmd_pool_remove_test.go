package main

import (
	"errors"
	"strings"
	"testing"

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
