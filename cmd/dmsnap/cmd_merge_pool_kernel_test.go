package main

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
)

// poolFree returns the pool's free bytes from `pool show --json`.
func poolFree(t *testing.T, e *cliEnv, pool string) uint64 {
	t.Helper()
	var j jsonPool
	if err := json.Unmarshal([]byte(e.mustRun("--json", "pool", "show", pool)), &j); err != nil {
		t.Fatal(err)
	}
	return j.FreeBytes
}

// tableType returns the single target type of the device name, "" if it
// does not exist.
func tableType(t *testing.T, name string) string {
	t.Helper()
	if !exists(name) {
		return ""
	}
	f := strings.Fields(table(t, name))
	if len(f) < 3 {
		t.Fatalf("table of %s: %q", name, f)
	}
	return f[2]
}

// mergeLines parses the JSON lines of `merge --json --watch` and checks
// the progress: monotonic, ending at 100% done.
func mergeLines(t *testing.T, out string) (progress []jsonMergeProgress, fin *jsonMergeFinished) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	last := -1.0
	for sc.Scan() {
		var kind struct {
			MessageType string `json:"message_type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &kind); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		switch kind.MessageType {
		case "merge_progress":
			var p jsonMergeProgress
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Percent < last {
				t.Errorf("progress went back: %v after %v", p.Percent, last)
			}
			last = p.Percent
			progress = append(progress, p)
		case "merge_finished":
			fin = new(jsonMergeFinished)
			if err := json.Unmarshal(sc.Bytes(), fin); err != nil {
				t.Fatal(err)
			}
		case "merge_done":
		default:
			t.Errorf("unexpected line %q", sc.Text())
		}
	}
	if len(progress) == 0 || !progress[len(progress)-1].Done || progress[len(progress)-1].Percent != 100 {
		t.Errorf("progress does not end done at 100%%: %+v", progress)
	}
	if fin == nil {
		t.Fatalf("no merge_finished line in %q", out)
	}
	return progress, fin
}

// TestMergePoolKernel: merge of a pool snapshot with known changes.
//  1. base (16 MiB, random), snap taken; 4 MiB of base rewritten; snap2
//     taken of the changed base.
//  2. merge --json --watch pool/snap: JSON lines parse, progress is
//     monotonic and ends at 100%, done within a few polls of the end.
//  3. base == snap's content before the merge (sha256 of the device);
//     layout: base snapshot-origin, -real linear, snap2 a snapshot with
//     its content unchanged, snap and snap-cow gone; snap's COW extents
//     are free again.
//  4. merge of snap2 (the last snapshot): base linear, -real gone.
func TestMergePoolKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	const size = 16 << 20
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	base := dm.DevicePath(pool + "-base")
	fill(t, base, size)
	e.mustRun("create", pool+"/base", "snap", "--cow", "8M")
	want := digest(t, dm.DevicePath(pool+"-snap"), size)
	if err := writeAt(t, base, 2<<20, randBytes(4<<20)); err != nil {
		t.Fatal(err)
	}
	changed := digest(t, base, size)
	e.mustRun("create", pool+"/base", "snap2", "--cow", "8M")
	free := poolFree(t, e, pool)

	out := e.mustRun("--json", "merge", "--watch", "--interval", "50ms", pool+"/snap")
	progress, fin := mergeLines(t, out)
	t.Logf("%d progress lines; finished: %+v", len(progress), fin)
	if fin.OriginTarget != dm.TypeSnapshotOrigin || len(fin.SnapshotsLeft) != 1 || fin.FreedBytes != 8<<20 {
		t.Errorf("merge_finished: %+v", fin)
	}
	if digest(t, base, size) != want {
		t.Error("origin is not at the snapshot's content after the merge")
	}
	if digest(t, dm.DevicePath(pool+"-snap2"), size) != changed {
		t.Error("the other snapshot's content changed")
	}
	for name, typ := range map[string]string{
		pool + "-base": dm.TypeSnapshotOrigin, pool + "-base-real": dm.TypeLinear, pool + "-snap2": dm.TypeSnapshot,
		pool + "-snap2-cow": dm.TypeLinear, pool + "-snap": "", pool + "-snap-cow": "",
	} {
		if got := tableType(t, name); got != typ {
			t.Errorf("%s: table %q, want %q", name, got, typ)
		}
	}
	if got := poolFree(t, e, pool); got != free+8<<20 {
		t.Errorf("free bytes %d after the merge, want %d", got, free+8<<20)
	}
	if code, _, errs := e.run("status", pool+"/snap"); code == 0 {
		t.Errorf("merged snapshot still in the metadata: %s", errs)
	}

	// The last snapshot: the origin goes back to linear.
	out = e.mustRun("merge", pool+"/snap2")
	if !strings.Contains(out, "origin is linear") {
		t.Errorf("merge output: %q", out)
	}
	if digest(t, base, size) != changed {
		t.Error("origin is not at snap2's content")
	}
	for name, typ := range map[string]string{pool + "-base": dm.TypeLinear, pool + "-base-real": "", pool + "-snap2": "", pool + "-snap2-cow": ""} {
		if got := tableType(t, name); got != typ {
			t.Errorf("%s: table %q, want %q", name, got, typ)
		}
	}
	if act := activation(t, e.mustRun("--json", "activate", pool)); len(act.Actions) == 0 {
		t.Error("no actions")
	} else {
		for _, a := range act.Actions {
			if a.Kind != "keep" {
				t.Errorf("activate after the merge: %s", a.Text)
			}
		}
	}
}

// TestMergePoolDeferredKernel: the origin held open defers the merge.
//  1. base with a snapshot and changes; base opened O_RDONLY.
//  2. merge pool/snap: exit 0, "Delaying merge since origin is open",
//     nothing changed in the kernel.
//  3. a second merge of another snapshot of base is refused.
//  4. close; activate starts it; merge --watch pool/snap re-attaches and
//     finishes it; data correct.
func TestMergePoolDeferredKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	const size = 8 << 20
	e.mustRun("lv", "create", pool+"/base", "--size", "8M")
	base := dm.DevicePath(pool + "-base")
	fill(t, base, size)
	e.mustRun("create", pool+"/base", "snap", "--cow", "8M")
	e.mustRun("create", pool+"/base", "other", "--cow", "4M")
	want := digest(t, dm.DevicePath(pool+"-snap"), size)
	if err := writeAt(t, base, 0, randBytes(2<<20)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	out := e.mustRun("merge", pool+"/snap")
	if !strings.Contains(out, "Delaying merge since origin is open") || !strings.Contains(out, "next activation") {
		t.Errorf("deferred merge output: %q", out)
	}
	if got := tableType(t, pool+"-base"); got != dm.TypeSnapshotOrigin {
		t.Errorf("origin table %q after a deferred merge", got)
	}
	if code, _, errs := e.run("merge", pool+"/other"); code == 0 || !strings.Contains(errs, "already merging") {
		t.Errorf("second merge into the same origin: exit %d: %s", code, errs)
	}
	// Still open: activation keeps it deferred.
	e.mustRun("activate", pool)
	if got := tableType(t, pool+"-base"); got != dm.TypeSnapshotOrigin {
		t.Errorf("origin table %q: merge started though the origin is open", got)
	}
	f.Close()
	_, errs := e.runOK("activate", pool)
	if !strings.Contains(errs, "merge of "+pool+"/snap") {
		t.Errorf("activate did not report the merge: %q", errs)
	}
	e.mustRun("merge", "--watch", pool+"/snap")
	if digest(t, base, size) != want {
		t.Error("origin is not at the snapshot's content")
	}
	if exists(pool+"-snap") || exists(pool+"-snap-cow") || tableType(t, pool+"-base") != dm.TypeSnapshotOrigin {
		t.Error("layout after the deferred merge")
	}
}

// runOK runs dmsnap and fails the test on a non-zero exit.
func (e *cliEnv) runOK(args ...string) (string, string) {
	e.t.Helper()
	code, out, errs := e.run(args...)
	if code != 0 {
		e.t.Fatalf("dmsnap %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out, errs
}

// TestMergePoolBadInputKernel: refusals change nothing.
func TestMergePoolBadInputKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "8M")
	e.mustRun("create", pool+"/base", "nsnap", "--cow", "4M", "--transient")
	e.mustRun("create", pool+"/base", "full", "--cow", "12K")
	// Rewrite all of base: "full" (one extent) overflows and becomes
	// invalid.
	_ = writeAt(t, dm.DevicePath(pool+"-base"), 0, randBytes(8<<20))
	before := snapshotFiles(t, e.dir)
	for _, tc := range []struct{ args, text string }{
		{pool + "/nsnap", "transient"},
		{pool + "/full", "invalidated"},
		{pool + "/nope", "not found"},
		{pool + "/base", "not a snapshot"},
	} {
		code, _, errs := e.run("merge", tc.args)
		if code == 0 || !strings.Contains(errs, tc.text) {
			t.Errorf("merge %s: exit %d: %q, want %q", tc.args, code, errs, tc.text)
		}
	}
	if code, _, errs := e.run("merge", "--interval", "1ms", pool+"/full"); code != exitUsage || !strings.Contains(errs, "out of range") {
		t.Errorf("bad interval: exit %d: %s", code, errs)
	}
	sameFiles(t, before, snapshotFiles(t, e.dir))
	if tableType(t, pool+"-base") != dm.TypeSnapshotOrigin {
		t.Error("origin changed by a refused merge")
	}
}

// TestMergePoolCrashKernel kills dmsnap merge at each step of the
// handover and of the finish; activate (then merge --watch if the merge
// is still running) must end with the origin at the snapshot's content,
// the snapshot gone from the metadata and the kernel, and a plain linear
// origin.
func TestMergePoolCrashKernel(t *testing.T) {
	for _, fp := range []string{
		"lvm.merge.after-intent", "lvm.merge.after-load-merge", "lvm.merge.after-load-error",
		"lvm.merge.snapshot-suspended", "lvm.merge.origin-suspended", "lvm.merge.after-handover",
		"lvm.merge.after-start", "lvm.merge.finish.after-kernel",
	} {
		t.Run(fp, func(t *testing.T) {
			e, pool, _, _ := kernelPool(t)
			const size = 8 << 20
			e.mustRun("lv", "create", pool+"/base", "--size", "8M")
			base := dm.DevicePath(pool + "-base")
			fill(t, base, size)
			e.mustRun("create", pool+"/base", "snap", "--cow", "8M")
			want := digest(t, dm.DevicePath(pool+"-snap"), size)
			if err := writeAt(t, base, 1<<20, randBytes(3<<20)); err != nil {
				t.Fatal(err)
			}
			e.crash(fp, "merge", pool+"/snap")
			_, errs := e.runOK("activate", pool)
			t.Logf("activate: %s", errs)
			if code, _, _ := e.run("status", pool+"/snap"); code == 0 {
				e.mustRun("merge", "--watch", pool+"/snap")
			}
			deadline := time.Now().Add(10 * time.Second)
			for exists(pool+"-base-real") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				e.mustRun("activate", pool)
			}
			if digest(t, base, size) != want {
				t.Error("origin is not at the snapshot's content")
			}
			for name, typ := range map[string]string{pool + "-base": dm.TypeLinear, pool + "-base-real": "", pool + "-snap": "", pool + "-snap-cow": ""} {
				if got := tableType(t, name); got != typ {
					t.Errorf("%s: table %q, want %q", name, got, typ)
				}
			}
			if code, _, _ := e.run("status", pool+"/snap"); code == 0 {
				t.Error("snapshot still in the metadata")
			}
			if i := info(t, pool+"-base"); i.Suspended || i.InactivePresent {
				t.Errorf("origin left %+v", i)
			}
		})
	}
}
