//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/zfs"
)

// cowCount returns the number of exceptions of the snapshot's COW.
func cowCount(t testing.TB, pool, snap string) int {
	t.Helper()
	src, err := openCowSource(dm.DevicePath(lvm.DMName(pool, snap, lvm.LayerCOW)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s, err := cow.Open(src, src.Size())
	if err != nil {
		t.Fatal(err)
	}
	return s.Len()
}

// ingestFixture is a dmsnap pool with a 32 MiB origin "base" full of
// random data and a zpool for the zvol pool/vol.
type ingestFixture struct {
	t      testing.TB
	e      *cliEnv
	pool   string
	origin string // the origin's device
	size   int64  // of the origin
	zpool  string
	ds     string
}

const ingestOriginBytes = 32 << 20

func newIngestFixture(t *testing.T) *ingestFixture {
	return newSizedIngestFixture(t, ingestOriginBytes)
}

// newSizedIngestFixture makes the fixture with an origin of size bytes
// (a multiple of 4 MiB) on a pool of two images of size+16 MiB.
func newSizedIngestFixture(t testing.TB, size int64) *ingestFixture {
	testutil.RequireZFSTier(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("dmesg").CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Logf("dmesg tail:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	e := newCLIEnv(t)
	pool := "t" + strings.TrimPrefix(testutil.UniqueName(t), testutil.DMNamePrefix)
	e.mustRun("pool", "create", pool, e.image("a.img", size+16<<20), e.image("b.img", size+16<<20))
	t.Cleanup(func() {
		if code, _, errs := e.run("deactivate", pool); code != 0 {
			t.Errorf("cleanup: deactivate %s: %s", pool, errs)
		}
	})
	e.mustRun("lv", "create", pool+"/base", "--size", fmt.Sprintf("%dM", size>>20))
	f := &ingestFixture{t: t, e: e, pool: pool, origin: dm.DevicePath(pool + "-base"), size: size}
	if err := writeAt(t, f.origin, 0, randBytes(int(size))); err != nil {
		t.Fatal(err)
	}
	f.zpool = testutil.ScratchZpool(t, 4*size+512<<20) // sparse; zfs keeps 128 MiB of slop
	f.ds = f.zpool + "/vol"
	return f
}

// ingest runs a successful `dmsnap --json ingest` and checks the zvol
// equals the frozen snapshot of sequence seq, and that the previous
// cursor is gone.
func (f *ingestFixture) ingest(seq int, extra ...string) jsonIngest {
	t := f.t
	t.Helper()
	args := append([]string{"--json", "ingest", f.pool + "/base", f.ds, "--cow", "8M"}, extra...)
	stdout, errs := f.e.runOK(args...)
	var j jsonIngest
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		t.Fatalf("ingest output %q: %v", stdout, err)
	}
	t.Logf("ingest %d: full=%v %q changed=%d plan=%d written=%d zeroed=%d skipped=%d %.2fs %s",
		seq, j.Full, j.FullReason, j.ChangedChunks, j.PlanBytes, j.BytesWritten, j.BytesZeroed, j.BytesSkipped, j.Seconds, j.Recovered)
	if !strings.Contains(errs, `"message_type":"ingest_progress"`) {
		t.Errorf("ingest %d: no JSON progress on a non-terminal stderr: %q", seq, errs)
	}
	cur := ingest.CursorName("base", uint64(seq))
	if j.Cursor != f.pool+"/"+cur {
		t.Fatalf("cursor %s, want %s/%s", j.Cursor, f.pool, cur)
	}
	zv, err := (&zfs.Runner{}).ZvolDevice(t.Context(), f.ds, 0)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, zv, f.size) != digest(t, f.snapDev(cur), f.size) {
		t.Fatalf("ingest %d: zvol %s differs from the frozen snapshot %s", seq, zv, cur)
	}
	if seq > 1 {
		for old := 1; old < seq; old++ {
			if _, err := os.Stat(f.snapDev(ingest.CursorName("base", uint64(old)))); err == nil {
				t.Errorf("after ingest %d: old cursor %d still active", seq, old)
			}
		}
	}
	return j
}

func (f *ingestFixture) snapDev(snap string) string {
	return dm.DevicePath(lvm.DMName(f.pool, snap, lvm.LayerNone))
}

// points returns the names of the zvol's snapshots and bookmarks.
func (f *ingestFixture) points() []string {
	f.t.Helper()
	out, err := exec.Command("zfs", "list", "-Hp", "-d", "1", "-t", "snapshot,bookmark", "-o", "name", "-s", "createtxg", f.ds).Output()
	if err != nil {
		f.t.Fatalf("zfs list %s: %v", f.ds, err)
	}
	return strings.Fields(string(out))
}

// scribble makes n random writes to the origin: 4 KiB of random data, or
// (one in four) a whole zeroed 16 KiB block, which must become a hole in
// the zvol.
func (f *ingestFixture) scribble(n int) {
	f.t.Helper()
	for range n {
		off := mrand.Int64N(f.size/4096) * 4096
		b := randBytes(4096)
		if mrand.IntN(4) == 0 {
			off, b = off/(16<<10)*(16<<10), make([]byte, 16<<10)
		}
		if err := writeAt(f.t, f.origin, off, b); err != nil {
			f.t.Fatal(err)
		}
	}
}

// TestIngestZFSKernel:
//   - full ingest: the zvol equals the frozen snapshot;
//   - three times: random 4K writes, incremental ingest: the zvol equals
//     the new frozen snapshot, the chunks copied are exactly the cursor
//     COW's exceptions, the old cursor is gone, one ZFS snapshot and one
//     bookmark more;
//   - an ingest killed after the copy, before the ZFS snapshot: the rerun
//     rolls the zvol back and ends correct;
//   - an ingest killed after the ZFS snapshot: the rerun adopts it;
//   - writes that overflow the cursor's COW: the next ingest says so and
//     copies everything.
func TestIngestZFSKernel(t *testing.T) {
	f := newIngestFixture(t)
	j := f.ingest(1)
	if !j.Full || j.BytesWritten == 0 || j.FullReason != "first ingest" {
		t.Errorf("first ingest: %+v, want a full copy", j)
	}
	if n := len(f.points()); n != 2 {
		t.Errorf("after the first ingest: %d snapshots+bookmarks, want 2: %v", n, f.points())
	}
	var zeroed int64
	for seq := 2; seq <= 4; seq++ {
		f.scribble(40)
		want := cowCount(t, f.pool, ingest.CursorName("base", uint64(seq-1)))
		j := f.ingest(seq)
		if j.Full {
			t.Fatalf("ingest %d was full: %s", seq, j.FullReason)
		}
		if int(j.ChangedChunks) != want || want == 0 {
			t.Errorf("ingest %d copied %d chunks, the cursor's COW listed %d", seq, j.ChangedChunks, want)
		}
		if j.PlanBytes != int64(want)*j.ChunkBytes || j.BytesWritten+j.BytesZeroed+j.BytesSkipped != j.PlanBytes {
			t.Errorf("ingest %d: plan %d bytes (written %d, zeroed %d) for %d chunks of %d", seq, j.PlanBytes, j.BytesWritten, j.BytesZeroed, want, j.ChunkBytes)
		}
		if n := len(f.points()); n != 2*seq {
			t.Errorf("after ingest %d: %d snapshots+bookmarks, want %d: %v", seq, n, 2*seq, f.points())
		}
		zeroed += j.BytesZeroed
	}
	if zeroed == 0 {
		t.Error("no zero block became a hole in three incremental ingests with ~30 zeroed blocks")
	}

	// Killed halfway through a full copy, then between the copy and the
	// ZFS snapshot: the killed runs' snapshots were seq 5 and 6; each rerun
	// rolls back, removes the killed run's snapshot and takes the next
	// number (sequence numbers are never reused).
	f.scribble(40)
	f.e.crash(fpIngestMidCopy, "ingest", f.pool+"/base", f.ds, "--cow", "8M", "--full")
	f.e.crash(fpIngestAfterCopy, "ingest", f.pool+"/base", f.ds, "--cow", "8M")
	j = f.ingest(7)
	if !strings.HasPrefix(j.Recovered, "rolled "+f.ds+" back") || j.Full {
		t.Errorf("rerun after a kill mid-ingest: recovered %q full %v, want a rollback and an incremental", j.Recovered, j.Full)
	}
	if n := len(f.points()); n != 10 {
		t.Errorf("after the recovered ingest: %d points, want 10: %v", n, f.points())
	}
	// Killed after the ZFS snapshot: the rerun adopts it (seq 8, which
	// holds the writes), then ingests seq 9 (nothing changed since).
	f.scribble(10)
	f.e.crash(fpIngestAfterCommit, "ingest", f.pool+"/base", f.ds, "--cow", "8M")
	j = f.ingest(9)
	if !strings.HasPrefix(j.Recovered, "adopted ") {
		t.Errorf("rerun after a kill after the commit: recovered %q, want adopted", j.Recovered)
	}
	if n := len(f.points()); n != 14 || j.ChangedChunks != 0 {
		t.Errorf("after the adopted ingest: %d points, want 14 (seq 1-4, 7-9); %d changed chunks, want 0: %v", n, j.ChangedChunks, f.points())
	}

	// 12 MiB of new data overflow the cursor's 8 MiB COW.
	if err := writeAt(t, f.origin, 4<<20, randBytes(12<<20)); err != nil {
		t.Fatal(err)
	}
	j = f.ingest(10)
	if !j.Full || !strings.Contains(j.FullReason, "invalidated") {
		t.Errorf("ingest after the cursor overflowed: full=%v reason %q, want a full copy because it was invalidated", j.Full, j.FullReason)
	}

	// The monitor exports the last ingest.
	mfs := parseExposition(t, []byte(f.e.mustRun("monitor", "--once")))
	if got, ok := metricValue(mfs, "dmsnap_last_transfer_bytes", map[string]string{"op": "ingest", "pool": f.pool, "origin": "base"}); !ok || got != float64(j.PlanBytes) {
		t.Errorf("dmsnap_last_transfer_bytes for the ingest: %v (found %v), want %d", got, ok, j.PlanBytes)
	}
}

// TestIngestZFSInvalidatedDuringCopy: writes to the origin while an
// ingest copies overflow the new frozen snapshot's COW; the ingest must
// fail rather than commit garbage, and undo itself: the zvol back at the
// last ingest, no new ZFS snapshot, no leftover pool snapshot.
func TestIngestZFSInvalidatedDuringCopy(t *testing.T) {
	f := newIngestFixture(t)
	f.ingest(1)
	before := f.points()
	zv, err := (&zfs.Runner{}).ZvolDevice(t.Context(), f.ds, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := digest(t, zv, ingestOriginBytes)

	stop := make(chan struct{})
	done := make(chan int)
	go func() { // rewrite the origin, 64 KiB at a time, until told to stop
		w, err := os.OpenFile(f.origin, os.O_WRONLY|os.O_SYNC, 0)
		if err != nil {
			done <- -1
			return
		}
		defer w.Close()
		b := randBytes(64 << 10)
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			off := int64(n%(ingestOriginBytes/len(b))) * int64(len(b))
			if _, err := w.WriteAt(b, off); err != nil {
				done <- -1
				return
			}
			n++
		}
	}()
	code, stdout, errs := f.e.run("ingest", f.pool+"/base", f.ds, "--cow", "4M", "--full")
	close(stop)
	writes := <-done
	t.Logf("ingest with %d concurrent 64K writes: exit %d: %s %s", writes, code, stdout, errs)
	if writes < 0 {
		t.Fatal("the concurrent writer failed")
	}
	if code == 0 {
		t.Fatalf("ingest succeeded although %d×64K were written to the origin during the copy into a 4M COW", writes)
	}
	if !strings.Contains(errs, "during the copy") && !strings.Contains(errs, "input/output error") {
		t.Errorf("error does not say the snapshot broke during the copy: %s", errs)
	}
	if got := f.points(); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Errorf("ZFS points changed: %v, were %v", got, before)
	}
	if digest(t, zv, ingestOriginBytes) != want {
		t.Error("the zvol was not rolled back to the last ingest")
	}
	if _, err := os.Stat(f.snapDev(ingest.CursorName("base", 2))); err == nil {
		t.Error("the failed ingest's snapshot is still active")
	}
	// The failed ingest was undone, so its sequence number is free again;
	// the writes also overflowed the cursor's COW: a full copy.
	if j := f.ingest(2); !j.Full || !strings.Contains(j.FullReason, "invalidated") {
		t.Errorf("ingest after the failed one: full=%v %q, want a full copy (the cursor overflowed too)", j.Full, j.FullReason)
	}
}

// TestIngestZFSBadInput: each bad invocation fails with a message naming
// the problem, and changes nothing: no pool snapshot, no ZFS change, the
// state file as it was.
func TestIngestZFSBadInput(t *testing.T) {
	f := newIngestFixture(t)
	zfsCmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("zfs", args...).CombinedOutput(); err != nil {
			t.Fatalf("zfs %v: %v: %s", args, err, out)
		}
	}
	zfsCmd("create", f.zpool+"/fs")
	zfsCmd("create", "-s", "-V", "32M", f.zpool+"/foreign")
	zfsCmd("create", "-s", "-V", "16M", "-o", ingest.OwnerProperty+"="+f.pool+"/base", f.zpool+"/small")
	zfsCmd("create", "-s", "-V", "32M", "-o", ingest.OwnerProperty+"="+f.pool+"/other", f.zpool+"/other")
	f.e.mustRun("create", f.pool+"/base", "snap", "--cow", "4M")

	snapshot := func() (string, string, string) {
		st, _ := os.ReadFile(f.e.path("cfg/pools.json"))
		out, err := exec.Command("zfs", "list", "-Hp", "-r", "-t", "all", "-o", "name,guid,written", f.zpool).Output()
		if err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir("/dev/mapper")
		var devs []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), f.pool+"-") {
				devs = append(devs, e.Name())
			}
		}
		return string(st), string(out), strings.Join(devs, " ")
	}
	st0, zfs0, dev0 := snapshot()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"filesystem", []string{f.pool + "/base", f.zpool + "/fs"}, 1, "not a zvol"},
		{"foreign zvol", []string{f.pool + "/base", f.zpool + "/foreign"}, 1, "not made by dmsnap ingest"},
		{"zvol too small", []string{f.pool + "/base", f.zpool + "/small"}, 1, "smaller than the origin"},
		{"zvol of another origin", []string{f.pool + "/base", f.zpool + "/other"}, 1, "holds ingests of " + f.pool + "/other"},
		{"zpool missing", []string{f.pool + "/base", "nosuchzpool/vol"}, 1, "does not exist"},
		{"origin is a snapshot", []string{f.pool + "/snap", f.ds}, 2, "is a snapshot"},
		{"origin missing", []string{f.pool + "/nope", f.ds}, 1, "nope"},
		{"pool missing", []string{"nosuchpool/base", f.ds}, 1, "nosuchpool"},
		{"not ZPOOL/DATASET", []string{f.pool + "/base", f.zpool}, 2, "want ZPOOL/DATASET"},
		{"bad volblocksize", []string{f.pool + "/base", f.ds, "--volblocksize", "3K"}, 2, "--volblocksize"},
		{"bad cow", []string{f.pool + "/base", f.ds, "--cow", "lots"}, 2, "lots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := f.e.run(append([]string{"ingest"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, errs, tc.code, tc.want)
			}
			st, zfsl, devs := snapshot()
			if st != st0 || zfsl != zfs0 || devs != dev0 {
				t.Errorf("changed something:\nstate %q\n   was %q\nzfs %q\n was %q\ndevs %q\n  was %q", st, st0, zfsl, zfs0, devs, dev0)
			}
		})
	}
	t.Run("zfs not installed", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		code, _, errs := f.e.run("ingest", f.pool+"/base", f.ds)
		if code != 1 || !strings.Contains(errs, "zfs not installed") {
			t.Errorf("exit %d, stderr %q; want exit 1, zfs not installed", code, errs)
		}
	})
}

// TestIngestZFSLostLineage: with dmsnap's record of the zvol gone from the
// state file, ingest refuses the zvol's history and says how to go on;
// --full relinks it to its newest dmsnap snapshot, retires the old cursor
// and copies everything; then incrementals resume.
func TestIngestZFSLostLineage(t *testing.T) {
	f := newIngestFixture(t)
	f.ingest(1)
	f.scribble(20)
	f.ingest(2)

	path := f.e.path("cfg/pools.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	delete(st, "ingest")
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	code, _, errs := f.e.run("ingest", f.pool+"/base", f.ds, "--cow", "8M")
	if code != 1 || !strings.Contains(errs, "ingest --full starts again") {
		t.Fatalf("without a lineage: exit %d, %q; want exit 1 pointing at --full", code, errs)
	}
	f.scribble(20)
	j := f.ingest(3, "--full")
	if !j.Full || !strings.HasPrefix(j.Recovered, "relinked "+f.ds) {
		t.Errorf("--full without a lineage: full=%v recovered %q, want a relinked full copy", j.Full, j.Recovered)
	}
	f.scribble(20)
	if j := f.ingest(4); j.Full {
		t.Errorf("the ingest after the relink was full: %s", j.FullReason)
	}
	if n := len(f.points()); n != 8 {
		t.Errorf("%d points, want 8 (seq 1-4): %v", n, f.points())
	}
}
