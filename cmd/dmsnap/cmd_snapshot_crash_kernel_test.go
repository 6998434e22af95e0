package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/lvm"
)

// snapRig is a crashRig whose victim has a snapshot "snap" (4 MiB COW,
// chunk 4K) taken before 1 MiB of new data went to victim: the snapshot
// reads victim's first contents (r.vict), its COW holds exceptions.
func snapRig(t *testing.T) *crashRig {
	r := newCrashRig(t)
	r.e.mustRun("create", r.pool+"/victim", "snap", "--cow", "4M", "--chunksize", "4K")
	if err := writeAt(t, dm.DevicePath(r.pool+"-victim"), 0, randBytes(1<<20)); err != nil {
		t.Fatal(err)
	}
	r.old, _ = loadImages(t, r.imgs...)
	return r
}

// checkSnap asserts that the snapshot device name is active, valid, of
// COW size cowBytes, and reads victim's first contents.
func (r *crashRig) checkSnap(t *testing.T, name string, cowBytes uint64) {
	t.Helper()
	st := kernelSnapStatus(t, r.pool+"-"+name)
	if st.State != dm.SnapshotActive {
		t.Fatalf("snapshot %s: %+v", name, st)
	}
	if cowBytes != 0 && uint64(st.Total.Bytes()) != cowBytes {
		t.Errorf("snapshot %s: the kernel's COW is %d bytes, want %d", name, st.Total.Bytes(), cowBytes)
	}
	if digest(t, dm.DevicePath(r.pool+"-"+name), 8<<20) != r.vict {
		t.Errorf("snapshot %s does not read the data it froze", name)
	}
}

// TestCrashSnapshotRenameKernel kills `dmsnap rename POOL/snap renamed`
// of an active snapshot at each step: the commit's failpoints, then
// after the commit (no device renamed) and after each device rename
// (<snap>, then <snap>-cow). rename writes no pending record: its one
// commit decides old or new, and the devices keep their DM UUIDs (which
// name the volume) and device numbers (which the snapshot table uses).
// After activate:
//  1. the metadata is exactly the old or the new state, as the failpoint
//     demands, and the kernel's devices and tables match it;
//  2. <name> and <name>-cow exist under that state's name only;
//  3. the snapshot is valid and reads the data it froze; keep is intact;
//  4. a further lv create works.
func TestCrashSnapshotRenameKernel(t *testing.T) {
	points := append(commitPoints[:len(commitPoints):len(commitPoints)], []struct {
		fp   string
		want outcome
	}{
		{"lvm.snapshot.rename.after-commit", wantNew},
		{"lvm.snapshot.rename.after-device", wantNew},
		{"lvm.snapshot.rename.after-device@2", wantNew},
	}...)
	for _, pt := range points {
		t.Run(pt.fp, func(t *testing.T) {
			r := snapRig(t)
			next, err := r.old.RenameVolume("snap", "renamed")
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(pt.fp, "rename", r.pool+"/snap", "renamed")
			isNew, _ := r.settle(t, pt.want, next, nil)
			name, gone := "snap", "renamed"
			if isNew {
				name, gone = gone, name
			}
			for _, n := range []string{r.pool + "-" + gone, r.pool + "-" + gone + "-cow"} {
				if exists(n) {
					t.Errorf("device %s exists in the state that has no such snapshot", n)
				}
			}
			r.checkSnap(t, name, 4<<20)
			r.further(t)
		})
	}
}

// TestCrashSnapshotExtendKernel kills `dmsnap extend POOL/snap --cow +4M`
// (the path the monitor's autoextend takes) at each step: the intent
// commit's failpoints (metadata with the new size and a pending
// snapshot-extend record), after it, after the -cow reload, after the
// snapshot table's load, with the origin suspended after the snapshot's
// resume, after the reload, and during the commit that drops the record.
// After activate:
//  1. the metadata is the old size or the new one (without the record),
//     as the failpoint demands; the kernel's tables match it;
//  2. the kernel's snapshot status has that COW size;
//  3. the snapshot is valid, reads the data it froze; keep is intact;
//  4. a further lv create works.
func TestCrashSnapshotExtendKernel(t *testing.T) {
	points := append(commitPoints[:len(commitPoints):len(commitPoints)], []struct {
		fp   string
		want outcome
	}{
		{"lvm.snapshot.extend.after-intent", wantNew},
		{"lvm.snapshot.extend.after-cow", wantNew},
		{"lvm.snapshot.extend.after-snapshot-load", wantNew},
		{"lvm.snapshot.extend.suspended", wantNew},
		{"lvm.snapshot.extend.after-reload", wantNew},
		{"lvm.commit.before-write@2", wantNew},
		{"lvm.commit.torn-header@3", wantNew},
		{"lvm.commit.after-slot-write@4", wantNew},
	}...)
	for _, pt := range points {
		t.Run(pt.fp, func(t *testing.T) {
			r := snapRig(t)
			next, err := r.old.ExtendVolume("snap", 1)
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(pt.fp, "extend", r.pool+"/snap", "--cow", "+4M")
			isNew, _ := r.settle(t, pt.want, next, nil)
			want := uint64(4 << 20)
			if isNew {
				want = 8 << 20
			}
			for _, n := range []string{r.pool + "-victim", r.pool + "-snap", r.pool + "-snap-cow"} {
				if i := info(t, n); i.Suspended || i.InactivePresent {
					t.Errorf("%s after activate: %+v", n, i)
				}
			}
			r.checkSnap(t, "snap", want)
			r.further(t)
		})
	}
}

// TestCrashPoolRemoveKernel kills `dmsnap pool remove --force POOL` (two
// PVs, two active volumes) at each step: during the commit of its
// pending pool-remove record (after deactivating the pool), after the
// state file's entry is marked removing, after a PV's label is zeroed,
// after each PV is wiped (the second: all wiped, the state file not yet
// updated). Then `activate` (every pool, as a boot does) and `pool ls`:
//  1. before the record is on a PV the pool is fully there: the old
//     metadata, its devices rebuilt, both volumes' data intact;
//  2. from then on it is fully gone: activate finishes the removal, no
//     image has a PV label, no device of the pool exists, pool ls does
//     not list it (before the fix: a pool with a missing PV that activate
//     refused, "missing PV"), and the state file no longer names it
//     (before: killed after the last wipe, the entry stayed and pool ls
//     warned until `pool remove --force`);
//  3. the name can be used again for a new pool (which the rig's
//     cleanup deactivates).
func TestCrashPoolRemoveKernel(t *testing.T) {
	points := append(commitPoints[:len(commitPoints):len(commitPoints)], []struct {
		fp   string
		want outcome
	}{
		{"pool.remove.after-mark", wantNew},
		{"pool.remove.after-label", wantNew},
		{"pool.remove.after-wipe", wantNew},
		{"pool.remove.after-label@2", wantNew},
		{"pool.remove.after-wipe@2", wantNew},
	}...)
	for _, pt := range points {
		t.Run(pt.fp, func(t *testing.T) {
			r := newCrashRig(t)
			r.e.crash(pt.fp, "pool", "remove", "--force", r.pool)
			r.e.mustRun("activate")
			var pools []jsonPool
			out, errs := r.e.runOK("--json", "pool", "ls")
			if err := json.Unmarshal([]byte(out), &pools); err != nil {
				t.Fatalf("pool ls: %v: %q", err, out)
			}
			there := false
			for _, p := range pools {
				there = there || p.Name == r.pool
			}
			if there != (pt.want == wantOld) {
				t.Fatalf("pool listed: %v, want %v (pool ls: %s %s)", there, pt.want == wantOld, out, errs)
			}
			if there {
				got, paths := loadImages(t, r.imgs...)
				if !samePool(got, r.old) {
					t.Fatalf("metadata is not the old state:\n got %s\n old %s", poolJSON(got), poolJSON(r.old))
				}
				checkKernel(t, got, paths)
				for v, sum := range map[string][32]byte{"keep": r.keep, "victim": r.vict} {
					if digest(t, dm.DevicePath(r.pool+"-"+v), 8<<20) != sum {
						t.Errorf("data of %s changed", v)
					}
				}
				r.further(t)
				return
			}
			for _, img := range r.imgs {
				d, err := lvm.OpenDisk(img, false)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := lvm.ReadLabel(d); !errors.Is(err, lvm.ErrNoLabel) {
					t.Errorf("%s after the removal: label read %v, want no label", img, err)
				}
				d.Close()
			}
			k, err := dm.Open()
			if err != nil {
				t.Fatal(err)
			}
			cur, err := lvm.CurrentDevices(k, r.old.UUID, nil)
			k.Close()
			if err != nil || len(cur) > 0 {
				t.Errorf("devices of the removed pool: %v %v", cur, err)
			}
			if strings.Contains(out, r.pool) {
				t.Errorf("pool ls lists the removed pool: %s", out)
			}
			// activate forgot the state file's entry too, even when the
			// kill came after the last wipe (it is marked removing).
			if strings.Contains(errs, "in the state file") {
				t.Errorf("pool ls after activate warns: %s", errs)
			}
			st, err := loadState(&globalOptions{ConfigDir: r.e.path("cfg")})
			if err != nil {
				t.Fatal(err)
			}
			if sp, ok := st.Pools[r.pool]; ok {
				t.Errorf("state file after activate still names %s: %+v", r.pool, sp)
			}
			r.e.mustRun("pool", "create", r.pool, r.e.image("c.img", 48<<20))
		})
	}
}

// TestCrashAutoextendKernel kills `dmsnap monitor --once` while its
// autoextend grows a snapshot past its threshold (2.5 MiB of 4 MiB
// written; 60%, +100% = one 4 MiB extent) at the steps of ExtendSnapshot
// it runs: after the intent, with the origin suspended, after the
// reload. After activate the metadata is the new size, the kernel's
// tables and the snapshot's COW size match it, no device is suspended,
// and the snapshot reads the data it froze.
func TestCrashAutoextendKernel(t *testing.T) {
	for _, fp := range []string{"lvm.snapshot.extend.after-intent", "lvm.snapshot.extend.suspended", "lvm.snapshot.extend.after-reload"} {
		t.Run(fp, func(t *testing.T) {
			r := snapRig(t)
			if err := writeAt(t, dm.DevicePath(r.pool+"-victim"), 1<<20, randBytes(3<<19)); err != nil {
				t.Fatal(err)
			}
			if st := kernelSnapStatus(t, r.pool+"-snap"); st.Percent() < 60 {
				t.Fatalf("snapshot only %.1f%% full", st.Percent())
			}
			next, err := r.old.ExtendVolume("snap", 1)
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(fp, "monitor", "--once", "--listen", "", "--autoextend-threshold", "60", "--autoextend-percent", "100")
			r.settle(t, wantNew, next, nil)
			for _, n := range []string{r.pool + "-victim", r.pool + "-snap", r.pool + "-snap-cow"} {
				if i := info(t, n); i.Suspended || i.InactivePresent {
					t.Errorf("%s after activate: %+v", n, i)
				}
			}
			r.checkSnap(t, "snap", 8<<20)
			r.further(t)
		})
	}
}

// TestCrashLVRenameOriginKernel kills `lv rename POOL/victim renamed` of
// an active origin with a snapshot (devices <victim> and <victim>-real)
// at each commit failpoint (lvm.commit.done: committed, no device renamed
// yet; activate renames both). After activate:
//  1. the metadata is the old or the new state, as the failpoint demands,
//     and the kernel's devices and tables match it (checkKernel);
//  2. no device carries the other state's name, -real included;
//  3. the origin reads what it held before the kill, and the snapshot is
//     valid and reads what it froze;
//  4. a further lv create works.
func TestCrashLVRenameOriginKernel(t *testing.T) {
	for _, pt := range commitPoints {
		t.Run(pt.fp, func(t *testing.T) {
			r := snapRig(t)
			origin := digest(t, dm.DevicePath(r.pool+"-victim"), 8<<20)
			next, err := r.old.RenameVolume("victim", "renamed")
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(pt.fp, "lv", "rename", r.pool+"/victim", "renamed")
			isNew, _ := r.settle(t, pt.want, next, nil)
			name, gone := "victim", "renamed"
			if isNew {
				name, gone = gone, name
			}
			for _, l := range []lvm.Layer{lvm.LayerNone, lvm.LayerReal} {
				if n := lvm.DMName(r.pool, gone, l); exists(n) {
					t.Errorf("device %s exists in the state that has no such volume", n)
				}
				if n := lvm.DMName(r.pool, name, l); !exists(n) {
					t.Errorf("device %s missing", n)
				}
			}
			if digest(t, dm.DevicePath(r.pool+"-"+name), 8<<20) != origin {
				t.Errorf("origin %s does not read what it held", name)
			}
			r.checkSnap(t, "snap", 0)
			r.further(t)
		})
	}
}
