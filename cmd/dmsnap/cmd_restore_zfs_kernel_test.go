//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/zfs"
)

const restoreOriginBytes = 16 << 20

// newRestoreFixture is an ingest fixture with a 16 MiB origin on a pool
// of two 96 MiB images (room for the cursor, pre-restore snapshots and
// two more volumes), with three ingests committed; it returns the
// sha256 of each ingest snapshot, by name.
func newRestoreFixture(t *testing.T) (*ingestFixture, []string, map[string][32]byte) {
	testutil.RequireZFSTier(t)
	e := newCLIEnv(t)
	pool := "t" + strings.TrimPrefix(testutil.UniqueName(t), testutil.DMNamePrefix)
	e.mustRun("pool", "create", pool, e.image("a.img", 96<<20), e.image("b.img", 96<<20))
	t.Cleanup(func() {
		if code, _, errs := e.run("deactivate", pool); code != 0 {
			t.Errorf("cleanup: deactivate %s: %s", pool, errs)
		}
	})
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	f := &ingestFixture{t: t, e: e, pool: pool, origin: dm.DevicePath(pool + "-base"), size: restoreOriginBytes}
	if err := writeAt(t, f.origin, 0, randBytes(restoreOriginBytes)); err != nil {
		t.Fatal(err)
	}
	f.zpool = testutil.ScratchZpool(t, 512<<20)
	f.ds = f.zpool + "/vol"
	var snaps []string
	digests := map[string][32]byte{}
	for seq := 1; seq <= 3; seq++ {
		if seq > 1 {
			f.scribble(30)
		}
		j := f.ingest(seq)
		snaps = append(snaps, j.Snapshot)
		digests[j.Snapshot] = digest(t, f.zvolDev(), f.size)
	}
	return f, snaps, digests
}

func (f *ingestFixture) zvolDev() string {
	f.t.Helper()
	zv, err := (&zfs.Runner{}).ZvolDevice(f.t.Context(), f.ds, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return zv
}

// restore runs a successful `dmsnap --json restore`.
func (f *ingestFixture) restore(args ...string) jsonRestore {
	f.t.Helper()
	stdout, errs := f.e.runOK(append([]string{"--json", "restore"}, args...)...)
	var j jsonRestore
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		f.t.Fatalf("restore output %q: %v", stdout, err)
	}
	f.t.Logf("restore %v: differential=%v %q plan=%d+%d read=%d written=%d zeroed=%d skipped=%d verified=%v (%d+%d) %.2fs pre=%s",
		args, j.Differential, j.Reason, j.PlanBytes, j.SparseBytes, j.BytesRead, j.BytesWritten, j.BytesZeroed, j.BytesSkipped,
		j.Verified, j.VerifiedBytes, j.SampledBytes, j.Seconds, j.PreRestore)
	if !j.DryRun && !strings.Contains(errs, `"message_type":"restore_progress"`) {
		f.t.Errorf("restore: no JSON progress on a non-terminal stderr: %q", errs)
	}
	return j
}

// TestRestoreZFSDifferential:
//  1. three ingests of base into the zvol (random writes between them),
//     then more writes to base;
//  2. for each ingest snapshot, newest first: --dry-run plans a
//     differential restore and changes nothing; the restore makes base
//     equal to the snapshot (sha256), reads exactly the planned bytes,
//     far fewer than the volume, and verifies; its pre-restore snapshot
//     shows base as it was;
//  3. after the second restore, merging its pre-restore snapshot brings
//     the old content back exactly;
//  4. the next ingest is incremental and the zvol equals base.
func TestRestoreZFSDifferential(t *testing.T) {
	f, snaps, digests := newRestoreFixture(t)
	for i := 2; i >= 0; i-- {
		snap := snaps[i]
		f.scribble(20)
		before := digest(t, f.origin, f.size)
		dry := f.restore("--dry-run", snap, f.pool+"/base")
		if !dry.Differential || !dry.DryRun || digest(t, f.origin, f.size) != before {
			t.Fatalf("dry run: %+v", dry)
		}
		j := f.restore(snap, f.pool+"/base")
		if !j.Differential || !j.Verified || j.Created {
			t.Fatalf("restore to %s: %+v", snap, j)
		}
		if digest(t, f.origin, f.size) != digests[snap] {
			t.Fatalf("after the restore base differs from %s", snap)
		}
		if j.BytesRead != j.PlanBytes+j.SparseBytes || j.PlanBytes != dry.PlanBytes || j.PlanBytes >= f.size/2 || j.PlanBytes == 0 {
			t.Errorf("restore to %s read %d bytes for a plan of %d+%d (dry run %d) of a %d-byte volume", snap, j.BytesRead, j.PlanBytes, j.SparseBytes, dry.PlanBytes, f.size)
		}
		if j.BytesWritten+j.BytesZeroed+j.BytesSkipped != j.BytesRead {
			t.Errorf("written %d + zeroed %d + skipped %d != read %d", j.BytesWritten, j.BytesZeroed, j.BytesSkipped, j.BytesRead)
		}
		pre := strings.TrimPrefix(j.PreRestore, f.pool+"/")
		if pre == "" || digest(t, f.snapDev(pre), f.size) != before {
			t.Fatalf("pre-restore snapshot %q does not show the old content", j.PreRestore)
		}
		if i == 1 {
			f.e.mustRun("merge", j.PreRestore)
			if digest(t, f.origin, f.size) != before {
				t.Fatal("merging the pre-restore snapshot did not bring the old content back")
			}
			// Restore again, then keep it.
			j = f.restore(snap, f.pool+"/base")
			if digest(t, f.origin, f.size) != digests[snap] {
				t.Fatalf("after the second restore base differs from %s", snap)
			}
		}
		f.e.mustRun("remove", j.PreRestore)
	}
	j := f.ingest(4)
	if j.Full {
		t.Errorf("the ingest after the restores was full: %s", j.FullReason)
	}
	if digest(t, f.zvolDev(), f.size) != digests[snaps[0]] {
		t.Error("the zvol after the next ingest does not equal the restored origin")
	}
}

// TestRestoreZFSFull: a full restore into a new volume (created, the
// zvol's size) and over an existing volume that is not the origin (the
// reason says so, a pre-restore snapshot keeps the old content), and
// --full onto the origin.
func TestRestoreZFSFull(t *testing.T) {
	f, snaps, digests := newRestoreFixture(t)
	j := f.restore(snaps[1], f.pool+"/new")
	newDev := dm.DevicePath(f.pool + "-new")
	if !j.Created || j.Differential || j.PreRestore != "" || digest(t, newDev, f.size) != digests[snaps[1]] {
		t.Fatalf("restore into a new volume: %+v", j)
	}
	f.e.mustRun("lv", "create", f.pool+"/other", "--size", "16M")
	other := dm.DevicePath(f.pool + "-other")
	if err := writeAt(t, other, 0, randBytes(int(f.size))); err != nil {
		t.Fatal(err)
	}
	before := digest(t, other, f.size)
	j = f.restore("--verify", snaps[0], f.pool+"/other")
	if j.Created || j.Differential || !strings.Contains(j.Reason, "not the ingest origin") || !j.Verified || j.VerifiedBytes != f.size {
		t.Fatalf("restore over another volume: %+v", j)
	}
	if digest(t, other, f.size) != digests[snaps[0]] || digest(t, f.snapDev(strings.TrimPrefix(j.PreRestore, f.pool+"/")), f.size) != before {
		t.Fatal("other is not the snapshot, or its pre-restore snapshot not the old content")
	}
	j = f.restore("--full", snaps[2], f.pool+"/base")
	if j.Differential || j.Reason != "--full" || digest(t, f.origin, f.size) != digests[snaps[2]] {
		t.Fatalf("--full onto the origin: %+v", j)
	}
}

// TestRestoreZFSBadInput: refused restores change nothing and say why:
// a bookmark, a filesystem's snapshot, an open target, a smaller
// target, a lineage that does not prove a differential restore (then
// --full works); a snapshot of another zvol is a full restore.
func TestRestoreZFSBadInput(t *testing.T) {
	f, snaps, digests := newRestoreFixture(t)
	e := f.e
	expect := func(code int, want string, args ...string) {
		t.Helper()
		before := digest(t, f.origin, f.size)
		got, _, errs := e.run(append([]string{"restore"}, args...)...)
		if got != code || !strings.Contains(errs, want) {
			t.Errorf("restore %v: exit %d %q, want exit %d saying %q", args, got, errs, code, want)
		}
		if digest(t, f.origin, f.size) != before {
			t.Errorf("restore %v changed base", args)
		}
		if out := e.mustRun("ls", f.pool); strings.Contains(out, "pre-restore") {
			t.Errorf("restore %v left a pre-restore snapshot: %s", args, out)
		}
	}
	expect(2, "is a bookmark", zfs.BookmarkFor(snaps[0]), f.pool+"/base")
	if out, err := exec.Command("zfs", "create", f.zpool+"/fs").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command("zfs", "snapshot", f.zpool+"/fs@a").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	expect(1, "not of a zvol", f.zpool+"/fs@a", f.pool+"/base")
	expect(1, "does not exist", f.ds+"@nope", f.pool+"/base")
	e.mustRun("lv", "create", f.pool+"/small", "--size", "8M")
	expect(1, "sizes differ", snaps[0], f.pool+"/small")
	h, err := os.Open(f.origin)
	if err != nil {
		t.Fatal(err)
	}
	expect(1, "in use", snaps[0], f.pool+"/base")
	h.Close()

	// Another zvol's snapshot of the same size: a full restore.
	if out, err := exec.Command("zfs", "create", "-V", "16M", f.zpool+"/vol2").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command("zfs", "snapshot", f.zpool+"/vol2@a").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	f.e.mustRun("lv", "create", f.pool+"/other", "--size", "16M")
	j := f.restore(f.zpool+"/vol2@a", f.pool+"/other")
	if j.Differential || !strings.Contains(j.Reason, "not the ingest origin of "+f.zpool+"/vol2") {
		t.Errorf("restore of another zvol's snapshot: %+v", j)
	}
	e.mustRun("remove", j.PreRestore)

	// The last ingest snapshot destroyed: the lineage proves nothing.
	if out, err := exec.Command("zfs", "destroy", snaps[2]).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	expect(1, "differential restore refused", snaps[0], f.pool+"/base")
	j = f.restore("--full", snaps[0], f.pool+"/base")
	if j.Differential || digest(t, f.origin, f.size) != digests[snaps[0]] {
		t.Fatalf("--full after the refusal: %+v", j)
	}
}

// TestRestoreZFSKilled kills a differential restore at each step, then
// alternately reruns it or activates the pool:
//   - until then ingest refuses the volume (but for a kill before the
//     pre-restore snapshot exists: nothing was written);
//   - the rerun finishes it: base equals SNAP, it says it resumed;
//   - activate rolls it back by merging the pre-restore snapshot: base
//     equals its old content, and the record goes stale;
//   - in the end the next ingest is incremental and the zvol equals base.
func TestRestoreZFSKilled(t *testing.T) {
	f, snaps, digests := newRestoreFixture(t)
	snap, seq := snaps[0], 3
	for i, fp := range []string{fpRestoreAfterIntent, fpRestoreAfterPreRestore, fpRestoreMidCopy, fpRestoreAfterCopy, fpRestoreAfterVerify} {
		for _, then := range []string{"rerun", "activate"} {
			f.scribble(10)
			before := digest(t, f.origin, f.size)
			f.e.crash(fp, "restore", snap, f.pool+"/base")
			code, _, errs := f.e.run("ingest", f.pool+"/base", f.ds, "--cow", "8M")
			if refused := code != 0 && strings.Contains(errs, "is being restored"); refused != (fp != fpRestoreAfterIntent) {
				t.Errorf("%s: ingest after the kill: exit %d %q", fp, code, errs)
			}
			if code == 0 {
				seq++ // nothing was restored yet: a normal ingest
			}
			pre := f.preRestore()
			switch then {
			case "rerun":
				j := f.restore(snap, f.pool+"/base")
				if digest(t, f.origin, f.size) != digests[snap] {
					t.Fatalf("%s: the rerun did not restore %s", fp, snap)
				}
				if j.PreRestore == "" || (pre != "" && j.PreRestore != f.pool+"/"+pre) {
					t.Errorf("%s: the rerun took pre-restore snapshot %s, the killed run %s", fp, j.PreRestore, pre)
				}
				f.e.mustRun("remove", j.PreRestore)
			case "activate":
				code, out, errs := f.e.run("activate", f.pool)
				if code != 0 {
					t.Fatalf("%s: activate: exit %d: %s", fp, code, errs)
				}
				if pre != "" {
					if !strings.Contains(errs, "rolled back") { // a warning, on stderr
						t.Errorf("%s: activate did not say it rolled the restore back: %s", fp, errs)
					}
					f.e.run("merge", "--watch", f.pool+"/"+pre) // finishes it, if the kernel has not yet
					if p := f.preRestore(); p != "" {
						t.Fatalf("%s: %s still there after its merge", fp, p)
					}
				}
				if digest(t, f.origin, f.size) != before {
					t.Fatalf("%s: after activate base is not its content before the restore: %s", fp, out)
				}
			}
			if code, _, errs := f.e.run("restore", "--dry-run", snap, f.pool+"/base"); code != 0 {
				t.Fatalf("%s/%s: restore --dry-run afterwards: %s", fp, then, errs)
			}
			t.Logf("kill %d at %s, then %s: ok", i, fp, then)
		}
	}
	j := f.ingest(seq + 1)
	if j.Full {
		t.Errorf("the ingest after the kills was full: %s", j.FullReason)
	}
}

// preRestore returns the name of base's pre-restore snapshot, "" if none.
func (f *ingestFixture) preRestore() string {
	f.t.Helper()
	for _, tok := range strings.Fields(f.e.mustRun("ls", f.pool)) {
		if _, name, ok := strings.Cut(tok, "base-pre-restore-"); ok {
			return "base-pre-restore-" + name
		}
	}
	return ""
}
