package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
)

func writeAt(t testing.TB, dev string, off int64, b []byte) error {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Sync()
}

func readAt(t *testing.T, dev string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	return b
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func snapStatus(t *testing.T, e *cliEnv, path string) jsonSnap {
	t.Helper()
	var j jsonSnap
	if err := json.Unmarshal([]byte(e.mustRun("--json", "status", path)), &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func table(t *testing.T, name string) string {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lines, _, err := c.Table(name, dm.TableOptions{})
	if err != nil {
		t.Fatalf("table %s: %v", name, err)
	}
	var out []string
	for _, l := range lines {
		out = append(out, l.String())
	}
	return strings.Join(out, "\n")
}

func info(t *testing.T, name string) dm.Info {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	i, err := c.Info(name)
	if err != nil {
		t.Fatalf("info %s: %v", name, err)
	}
	return i
}

// TestSnapshotLifecycleKernel: the card's flow.
//  1. pool, origin "base" (16 MiB) with data; create snap --cow 8M: the
//     origin keeps its dev number and UUID; the tables are LVM2's layout.
//  2. origin writes leave the snapshot's data; snapshot writes leave the
//     origin's; ls and status report it.
//  3. extend --cow +4M: the kernel's total grows; rename.
//  4. a second snapshot reuses -real; removing both collapses the origin
//     to linear with the data intact.
//  5. remove of an open snapshot refuses; --force removes.
func TestSnapshotLifecycleKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	base := dm.DevicePath(pool + "-base")
	old := randBytes(16 << 20)
	if err := writeAt(t, base, 0, old); err != nil {
		t.Fatal(err)
	}
	before := info(t, pool+"-base")
	code, out, errs := e.run("--verbose", "create", pool+"/base", "snap", "--cow", "8M", "--persistent")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errs)
	}
	t.Logf("create: %s%s", out, errs)
	if !strings.Contains(errs, "suspended for") {
		t.Errorf("--verbose does not report the suspended window: %s", errs)
	}
	after := info(t, pool+"-base")
	if after.Dev != before.Dev || after.UUID != before.UUID {
		t.Errorf("origin changed identity: %+v -> %+v", before, after)
	}
	real, cowI, snapI := info(t, pool+"-base-real"), info(t, pool+"-snap-cow"), info(t, pool+"-snap")
	if got, want := table(t, pool+"-base"), fmt.Sprintf("0 32768 snapshot-origin %s", real.Dev); got != want {
		t.Errorf("origin table %q, want %q", got, want)
	}
	if got := table(t, pool+"-base-real"); !strings.HasPrefix(got, "0 32768 linear ") {
		t.Errorf("-real table %q", got)
	}
	if got, want := table(t, pool+"-snap"), fmt.Sprintf("0 32768 snapshot %s %s P 8", real.Dev, cowI.Dev); got != want {
		t.Errorf("snapshot table %q, want %q", got, want)
	}
	if !strings.HasSuffix(snapI.UUID, "") || !strings.HasSuffix(real.UUID, "-real") || !strings.HasSuffix(cowI.UUID, "-cow") {
		t.Errorf("uuids: %s %s %s", real.UUID, cowI.UUID, snapI.UUID)
	}
	st := snapStatus(t, e, pool+"/snap")
	if st.State != "active" || st.UsePercent == nil || *st.UsePercent != 0 || *st.AllocatedSectors != 16 || *st.TotalSectors != 16384 {
		t.Errorf("fresh status: %+v", st)
	}
	// Origin writes do not change the snapshot.
	snap := dm.DevicePath(pool + "-snap")
	if err := writeAt(t, base, 1<<20, randBytes(1<<20)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAt(t, snap, 0, 16<<20), old) {
		t.Fatal("snapshot changed after origin writes")
	}
	originNow := readAt(t, base, 0, 16<<20)
	// Snapshot writes do not change the origin.
	if err := writeAt(t, snap, 4<<20, randBytes(64<<10)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAt(t, base, 0, 16<<20), originNow) {
		t.Fatal("origin changed after snapshot writes")
	}
	st = snapStatus(t, e, pool+"/snap")
	if *st.AllocatedSectors <= 16 || *st.UsePercent <= 0 {
		t.Errorf("status after writes: %+v", st)
	}
	ls := e.mustRun("ls", pool)
	if !strings.Contains(ls, "snap") || !strings.Contains(ls, "active") || !strings.Contains(ls, "USE%") {
		t.Errorf("ls:\n%s", ls)
	}
	if got := e.mustRun("ls", "-o", "name,state", pool); got != "NAME  STATE\nsnap  active\n" {
		t.Errorf("ls -o name,state: %q", got)
	}

	// Extend while active: the kernel's total grows.
	total := *st.TotalSectors
	e.mustRun("extend", pool+"/snap", "--cow", "+4M")
	st = snapStatus(t, e, pool+"/snap")
	if st.TotalSectors == nil || *st.TotalSectors != total+8192 || st.State != "active" {
		t.Errorf("after extend: %+v (total was %d)", st, total)
	}
	e.mustRun("rename", pool+"/snap", "snap1")
	if exists(pool+"-snap") || !exists(pool+"-snap1") || !exists(pool+"-snap1-cow") {
		t.Error("rename did not rename the devices")
	}
	snap = dm.DevicePath(pool + "-snap1")
	if !bytes.Equal(readAt(t, snap, 0, 1<<20), old[:1<<20]) {
		t.Error("snapshot data changed by extend/rename")
	}

	// A second snapshot reuses -real.
	e.mustRun("create", pool+"/base", "snap2", "--cow", "4M", "--chunksize", "64K")
	if info(t, pool+"-base-real").Dev != real.Dev {
		t.Error("-real was recreated")
	}
	if got := table(t, pool+"-snap2"); !strings.HasSuffix(got, " P 128") {
		t.Errorf("snap2 table %q", got)
	}
	// Open snapshot: remove refuses, --force removes.
	f, err := os.Open(dm.DevicePath(pool + "-snap2"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs = e.run("remove", pool+"/snap2")
	if code == 0 || !strings.Contains(errs, "open") || !exists(pool+"-snap2") {
		t.Errorf("remove of an open snapshot: exit %d: %s", code, errs)
	}
	e.mustRun("remove", "--force", pool+"/snap2")
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err == nil {
		t.Error("read of a force-removed snapshot succeeded")
	}
	f.Close()
	time.Sleep(100 * time.Millisecond)
	if exists(pool + "-snap2") {
		t.Error("snap2 still exists after its last close")
	}
	final := readAt(t, base, 0, 16<<20)
	e.mustRun("remove", pool+"/snap1")
	if exists(pool+"-base-real") || exists(pool+"-snap1") || exists(pool+"-snap1-cow") {
		t.Error("devices left after removing the last snapshot")
	}
	if got := table(t, pool+"-base"); !strings.HasPrefix(got, "0 32768 linear ") {
		t.Errorf("origin after the last remove: %q", got)
	}
	if info(t, pool+"-base").Dev != before.Dev {
		t.Error("origin dev number changed")
	}
	if !bytes.Equal(readAt(t, base, 0, 16<<20), final) {
		t.Error("origin data changed by removing snapshots")
	}
	e.mustRun("activate", pool) // consistent: nothing to do
}

// TestSnapshotManyKernel: 16 snapshots of one origin, each taken after a
// different write, each keeps its own point in time.
func TestSnapshotManyKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "4M")
	base := dm.DevicePath(pool + "-base")
	var want [][]byte
	for i := range 16 {
		if err := writeAt(t, base, int64(i)*4096, randBytes(4096)); err != nil {
			t.Fatal(err)
		}
		want = append(want, readAt(t, base, 0, 256<<10))
		e.mustRun("create", pool+"/base", fmt.Sprintf("s%d", i), "--cow", "1M")
	}
	if err := writeAt(t, base, 0, randBytes(256<<10)); err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		if !bytes.Equal(readAt(t, dm.DevicePath(fmt.Sprintf("%s-s%d", pool, i)), 0, 256<<10), want[i]) {
			t.Errorf("snapshot s%d lost its point in time", i)
		}
	}
	e.mustRun("deactivate", pool)
	e.mustRun("activate", pool)
	for i := range 16 {
		if !bytes.Equal(readAt(t, dm.DevicePath(fmt.Sprintf("%s-s%d", pool, i)), 0, 256<<10), want[i]) {
			t.Errorf("snapshot s%d changed across deactivate/activate", i)
		}
	}
}

// TestSnapshotFullKernel: a P snapshot filled by origin writes becomes
// Invalid and the origin keeps working; a PO snapshot filled by its own
// writes reports Overflow and still reads. Both are removable.
func TestSnapshotFullKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "12M")
	e.mustRun("create", pool+"/base", "p", "--cow", "4M")
	e.mustRun("create", pool+"/base", "po", "--cow", "4M", "--overflow")
	base := dm.DevicePath(pool + "-base")
	po := dm.DevicePath(pool + "-po")
	poData := readAt(t, po, 0, 1<<20)
	// PO: fill through the snapshot; the write fails at the end.
	if err := writeAt(t, po, 0, randBytes(8<<20)); err == nil {
		t.Error("writing 8 MiB into a 4 MiB PO snapshot succeeded")
	}
	if st := snapStatus(t, e, pool+"/po"); st.State != "overflow" {
		t.Errorf("po: %+v", st)
	}
	_ = poData
	// P: fill through the origin.
	data := randBytes(8 << 20)
	if err := writeAt(t, base, 0, data); err != nil {
		t.Fatalf("origin write with a full snapshot: %v", err)
	}
	if st := snapStatus(t, e, pool+"/p"); st.State != "invalid" || st.UsePercent != nil {
		t.Errorf("p: %+v", st)
	}
	if !bytes.Equal(readAt(t, base, 0, 8<<20), data) {
		t.Error("origin lost data next to an invalid snapshot")
	}
	if ls := e.mustRun("ls", pool); !strings.Contains(ls, "invalid") {
		t.Errorf("ls does not show invalid:\n%s", ls)
	}
	e.mustRun("remove", pool+"/p")
	e.mustRun("remove", pool+"/po")
	if got := table(t, pool+"-base"); !strings.HasPrefix(got, "0 24576 linear ") {
		t.Errorf("origin after removing both: %q", got)
	}
}

// TestSnapshotTransientDiscardKernel: N reports metadata 0 and is not
// restored; discard_zeroes_cow frees an exception and passdown reaches
// the origin.
func TestSnapshotTransientDiscardKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "8M")
	base := dm.DevicePath(pool + "-base")
	if err := writeAt(t, base, 0, randBytes(8<<20)); err != nil {
		t.Fatal(err)
	}
	e.mustRun("create", pool+"/base", "tr", "--cow", "4M", "--transient")
	if err := writeAt(t, base, 0, randBytes(64<<10)); err != nil {
		t.Fatal(err)
	}
	st := snapStatus(t, e, pool+"/tr")
	if st.MetadataSectors == nil || *st.MetadataSectors != 0 || *st.AllocatedSectors == 0 {
		t.Errorf("transient: %+v", st)
	}
	e.mustRun("deactivate", pool)
	code, _, errs := e.run("activate", pool)
	if code != 0 || !strings.Contains(errs, "lost") || exists(pool+"-tr") {
		t.Errorf("activate after deactivate: exit %d: %s", code, errs)
	}
	if code, _, _ := e.run("status", pool+"/tr"); code == 0 {
		t.Error("the lost transient snapshot is still in the metadata")
	}
	if got := table(t, pool+"-base"); !strings.HasPrefix(got, "0 16384 linear ") {
		t.Errorf("origin after the transient snapshot was dropped: %q", got)
	}

	e.mustRun("create", pool+"/base", "d", "--cow", "4M", "--discard-zeroes-cow", "--discard-passdown-origin")
	if got := table(t, pool+"-d"); !strings.HasSuffix(got, " P 8 2 discard_zeroes_cow discard_passdown_origin") {
		t.Errorf("discard table %q", got)
	}
	snap := dm.DevicePath(pool + "-d")
	if err := writeAt(t, snap, 0, randBytes(64<<10)); err != nil {
		t.Fatal(err)
	}
	used := *snapStatus(t, e, pool+"/d").AllocatedSectors
	originBefore := readAt(t, base, 0, 64<<10)
	if out, err := exec.Command("blkdiscard", "--offset", "0", "--length", "65536", snap).CombinedOutput(); err != nil {
		t.Fatalf("blkdiscard: %v: %s", err, out)
	}
	// The kernel zeroes the exceptions of the discarded chunks
	// (zero_exception) and allocates nothing new; a persistent store
	// never lowers its allocation count, so "freed" shows as zeroes.
	if now := *snapStatus(t, e, pool+"/d").AllocatedSectors; now > used {
		t.Errorf("discard allocated exceptions: allocated %d -> %d", used, now)
	}
	if !allZero(readAt(t, snap, 0, 64<<10)) {
		t.Error("discarded snapshot range does not read zeroes")
	}
	// Passdown reached the origin: the loop device punched the range.
	if got := readAt(t, base, 0, 64<<10); bytes.Equal(got, originBefore) || !allZero(got) {
		t.Error("discard_passdown_origin: the origin's range was not discarded")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestSnapshotBadInputKernel: each refusal exits non-zero with one line,
// creates no device and leaves the metadata unchanged.
func TestSnapshotBadInputKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "8M")
	e.mustRun("create", pool+"/base", "s", "--cow", "4M")
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list := func() string {
		l, err := c.List()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range l {
			names = append(names, e.Name+"="+e.UUID)
		}
		return strings.Join(names, ",")
	}
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"create", pool + "/base", "x", "--cow", "8K"}, "smaller than the minimum 12 KiB"},
		{[]string{"create", pool + "/base", "x", "--cow", "4M", "--chunksize", "12K"}, "power of two from 4K to 512K"},
		{[]string{"create", pool + "/base", "x", "--cow", "4M", "--chunksize", "1M"}, "power of two from 4K to 512K"},
		{[]string{"create", pool + "/base", "x", "--cow", "4M", "--chunksize", "2K"}, "power of two from 4K to 512K"},
		{[]string{"create", pool + "/base", "x", "--cow", "4M", "--discard-passdown-origin"}, "needs --discard-zeroes-cow"},
		{[]string{"create", pool + "/s", "x", "--cow", "4M"}, "do not stack"},
		{[]string{"create", pool + "/nope", "x", "--cow", "4M"}, "not found"},
		{[]string{"create", pool + "/base", "s", "--cow", "4M"}, "already exists"},
		{[]string{"create", pool + "/base", "x", "--cow", "1G"}, "free"},
		{[]string{"create", pool + "/base", "x", "--cow", "4M", "--transient", "--overflow"}, "exclude"},
		{[]string{"create", pool + "/base", "x"}, "--cow is required"},
		{[]string{"remove", pool + "/base"}, "not a snapshot"},
		{[]string{"extend", pool + "/s", "--cow", "+1G"}, "free"},
		{[]string{"rename", pool + "/s", "base"}, "already exists"},
	} {
		before, kernel := snapshotFiles(t, e.dir), list()
		code, _, errs := e.run(tt.args...)
		if code == 0 || !strings.Contains(errs, tt.msg) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d stderr %q; want non-zero, one line containing %q", tt.args, code, errs, tt.msg)
		}
		sameFiles(t, before, snapshotFiles(t, e.dir))
		if after := list(); after != kernel {
			t.Errorf("%v changed the kernel:\n%s\n%s", tt.args, kernel, after)
		}
	}
}

// TestSnapshotCrashKernel kills dmsnap create at each kernel step; after
// activate the snapshot is either absent (metadata and devices) or
// complete, and the origin's data and identity are intact.
func TestSnapshotCrashKernel(t *testing.T) {
	for _, fp := range []string{
		"lvm.snapshot.after-intent", "lvm.snapshot.after-cow", "lvm.snapshot.after-real",
		"lvm.snapshot.after-snapshot-load", "lvm.snapshot.after-origin-load", "lvm.snapshot.suspended",
		"lvm.snapshot.after-swap",
	} {
		t.Run(fp, func(t *testing.T) {
			e, pool, _, _ := kernelPool(t)
			e.mustRun("lv", "create", pool+"/base", "--size", "8M")
			base := dm.DevicePath(pool + "-base")
			sum := fill(t, base, 8<<20)
			dev := info(t, pool+"-base").Dev
			e.crash(fp, "create", pool+"/base", "snap", "--cow", "4M")
			e.mustRun("activate", pool)
			code, _, _ := e.run("status", pool+"/snap")
			has := code == 0
			switch fp {
			case "lvm.snapshot.after-swap":
				if !has {
					t.Error("a snapshot whose swap completed was rolled back")
				}
			default:
				if has {
					t.Error("an incomplete snapshot was kept")
				}
			}
			if has {
				if st := snapStatus(t, e, pool+"/snap"); st.State != "active" {
					t.Errorf("kept snapshot: %+v", st)
				}
				if !strings.HasPrefix(table(t, pool+"-base"), "0 16384 snapshot-origin") {
					t.Error("origin is not a snapshot-origin")
				}
			} else {
				if exists(pool+"-snap") || exists(pool+"-snap-cow") || exists(pool+"-base-real") {
					t.Error("leftover devices after rollback")
				}
				if !strings.HasPrefix(table(t, pool+"-base"), "0 16384 linear") {
					t.Error("origin is not linear after rollback")
				}
			}
			if i := info(t, pool+"-base"); i.Dev != dev || i.Suspended {
				t.Errorf("origin: %+v", i)
			}
			if digest(t, base, 8<<20) != sum {
				t.Error("origin data changed")
			}
			// The pool is usable afterwards.
			e.mustRun("create", pool+"/base", "again", "--cow", "4M")
		})
	}
}

// TestSnapshotModelKernel: random writes to the origin and to snapshots,
// with the expected content of every device kept in memory and compared
// byte for byte after each step.
func TestSnapshotModelKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	const size = 1 << 20
	e.mustRun("lv", "create", pool+"/base", "--size", "4M")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, seed))
	model := map[string][]byte{"base": make([]byte, size)}
	dev := func(n string) string { return dm.DevicePath(pool + "-" + n) }
	if err := writeAt(t, dev("base"), 0, model["base"]); err != nil {
		t.Fatal(err)
	}
	names := []string{"base"}
	for step := range 40 {
		switch {
		case len(names) < 5 && rng.IntN(5) == 0:
			n := fmt.Sprintf("m%d", step)
			e.mustRun("create", pool+"/base", n, "--cow", "4M", "--chunksize", []string{"4K", "8K", "64K"}[rng.IntN(3)])
			model[n] = bytes.Clone(model["base"])
			names = append(names, n)
		default:
			target := names[rng.IntN(len(names))]
			off := rng.IntN(size/512-16) * 512
			n := (1 + rng.IntN(16)) * 512
			b := randBytes(n)
			if err := writeAt(t, dev(target), int64(off), b); err != nil {
				t.Fatalf("step %d: write %s: %v", step, target, err)
			}
			copy(model[target][off:], b)
		}
		for _, n := range names {
			if !bytes.Equal(readAt(t, dev(n), 0, size), model[n]) {
				t.Fatalf("step %d: %s differs from the model (seed %d)", step, n, seed)
			}
		}
	}
}
