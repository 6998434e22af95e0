//go:build linux

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/zfs"
)

// replZFS runs zfs(8) and returns its standard output.
func replZFS(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("zfs %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("zfs %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// replGUID returns the guid of a snapshot or bookmark ("" if it is gone).
func replGUID(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("zfs", "get", "-Hp", "-o", "value", "guid", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// replPoints lists a dataset's snapshots and bookmarks, in createtxg order.
func replPoints(t *testing.T, ds string) string {
	t.Helper()
	return replZFS(t, "list", "-Hp", "-d", "1", "-t", "snapshot,bookmark", "-o", "name,guid,createtxg", "-s", "createtxg", ds)
}

// replSnapshot writes n random bytes at off of the zvol device, then
// takes the dmsnap-named snapshot seq and returns its full name and the
// digest of the first size bytes of the zvol at that moment.
func replSnapshot(t *testing.T, ds, dev string, seq uint64, off int64, n int, size int64) (string, [32]byte) {
	t.Helper()
	if n > 0 {
		if err := writeAt(t, dev, off, randBytes(n)); err != nil {
			t.Fatal(err)
		}
	}
	name := zfs.SnapshotFullName(ds, zfs.SnapshotName(time.Now(), seq))
	replZFS(t, "snapshot", name)
	return name, digest(t, dev, size)
}

// replicateJSON runs `dmsnap --json replicate ARGS` and decodes the result.
func replicateJSON(t *testing.T, e *cliEnv, args ...string) (jsonReplicate, string) {
	t.Helper()
	out, errs := e.runOK(append([]string{"--json", "replicate"}, args...)...)
	var res jsonReplicate
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("replicate output %q: %v", out, err)
	}
	return res, errs
}

// replSameGUIDs checks that each sender snapshot's copy on the target has
// its guid.
func replSameGUIDs(t *testing.T, target string, snaps ...string) {
	t.Helper()
	for _, s := range snaps {
		want := replGUID(t, s)
		got := replGUID(t, zfs.SnapshotFullName(target, pointShort(s)))
		if want == "" || got != want {
			t.Errorf("%s@%s guid %q, sender %s has %q", target, pointShort(s), got, s, want)
		}
	}
}

// replCut pipes `zfs send s` into `zfs receive -s -u target` and kills the
// sender after limit bytes, as a dropped connection would.
func replCut(t *testing.T, s zfs.Send, target string, limit int64) {
	t.Helper()
	r := &zfs.Runner{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := r.Send(ctx, s, &replLimitWriter{w: pw, n: limit, cancel: cancel})
		pw.Close()
		done <- err
	}()
	rerr := r.Receive(context.Background(), target, false, pr)
	pr.CloseWithError(errors.New("receiver exited"))
	if serr := <-done; serr == nil || rerr == nil {
		t.Fatalf("cut transfer: send %v, receive %v; want both to fail", serr, rerr)
	}
}

type replLimitWriter struct {
	w      io.Writer
	n      int64
	cancel context.CancelFunc
}

func (l *replLimitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		l.cancel()
		return 0, errors.New("stream cut by the test")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// TestReplicateZFSKernel runs dmsnap replicate against real OpenZFS 2.3.2.
// Scenario (zvol src/vol, 64 MiB, written between dmsnap-named snapshots):
//   - s1, replicate to dst/vol: a full send; guids equal, the received
//     zvol's bytes equal s1's; bookmarks #s1 and #dmsnap-last-sent (s1's
//     guid); JSON progress lines on stderr;
//   - s2, s3, replicate: one -I s1 s3 stream; guids of s2 and s3 equal;
//   - destroy s3 (the base) on the sender, s4, replicate: -i src/vol#s3
//     src/vol@s4 from the bookmark; guid equal, bytes equal s4's;
//   - 24 MiB more, s5, --dry-run: the plan and a -nvP estimate, nothing
//     changed on either side;
//   - a receive of s4 → s5 cut after 4 MiB leaves receive_resume_token;
//     --dry-run shows the resume; replicate --resume completes it: guid
//     equal, no token left, #dmsnap-last-sent at s5;
//   - s6 (not replicated); zfs ls is in createtxg order and flags the
//     base; zfs prune --keep 1 --keep-bookmarks 0 keeps s5 (the base) and
//     s6, destroys s1, s2, s4 and the older bookmarks; replicate -i s5 s6
//     still works;
//   - a target snapshot newer than the base: refused unchanged, then
//     --force-rollback destroys it (said first) and receives s7;
//   - an unrelated zvol into dst/vol: refused, dst/vol unchanged;
//   - --to-host through an "ssh" that runs the remote command with sh -c
//     (as sshd would): a full send to dst/remote, guids equal;
//   - s8, a receive of it cut, s8 destroyed on the sender: replicate
//     aborts the stale token (receive -A) and finds the target up to date;
//   - 40 MiB more, s9, replicate cancelled mid-stream (a signal): exit
//     130, the message points at --resume; a plain replicate resumes it
//     (and says so); guid equal.
func TestReplicateZFSKernel(t *testing.T) {
	testutil.RequireZFSTier(t)
	ctx := t.Context()
	srcPool, dstPool := testutil.ScratchZpool(t, 256<<20), testutil.ScratchZpool(t, 512<<20)
	src, dst := srcPool+"/vol", dstPool+"/vol"
	const size = 64 << 20
	r := &zfs.Runner{}
	if err := r.CreateVolume(ctx, src, size, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	dev, err := (&zfs.Runner{}).ZvolDevice(ctx, src, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e := newCLIEnv(t)

	// Full.
	s1, d1 := replSnapshot(t, src, dev, 1, 0, 16<<20, size)
	res, errs := replicateJSON(t, e, src, dst)
	if len(res.Steps) != 1 || res.Steps[0].Kind != "full" || res.Steps[0].To != s1 || res.Bytes == 0 || res.Steps[0].EstimatedBytes == 0 {
		t.Fatalf("full: %+v", res)
	}
	t.Logf("full: %d bytes sent, %d estimated, %.2fs", res.Bytes, res.EstimatedBytes, res.Seconds)
	replSameGUIDs(t, dst, s1)
	if !strings.Contains(errs, `"message_type":"replicate_progress"`) {
		t.Errorf("no JSON progress on stderr: %q", errs)
	}
	for _, bm := range []string{zfs.BookmarkFor(s1), zfs.BookmarkFullName(src, zfs.LastSentBookmark)} {
		if g := replGUID(t, bm); g != replGUID(t, s1) {
			t.Errorf("bookmark %s guid %q, want s1's", bm, g)
		}
	}
	dstDev, err := (&zfs.Runner{}).ZvolDevice(ctx, dst, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, dstDev, size) != d1 {
		t.Error("received zvol differs from s1")
	}

	// Incremental with an intermediate snapshot: one -I stream.
	s2, _ := replSnapshot(t, src, dev, 2, 16<<20, 4<<20, size)
	s3, _ := replSnapshot(t, src, dev, 3, 20<<20, 4<<20, size)
	res, _ = replicateJSON(t, e, src, dst)
	if len(res.Steps) != 1 || res.Steps[0].Kind != "package" || res.Steps[0].From != s1 || res.Steps[0].To != s3 {
		t.Fatalf("incremental: %+v", res.Steps)
	}
	replSameGUIDs(t, dst, s1, s2, s3)
	// The monitor exports the last replication (a dataset no ingest
	// fills is named by itself).
	mfs := parseExposition(t, []byte(e.mustRun("monitor", "--once")))
	if got, ok := metricValue(mfs, "dmsnap_last_transfer_bytes", map[string]string{"op": "replication", "origin": src}); !ok || got != float64(res.Bytes) {
		t.Errorf("dmsnap_last_transfer_bytes for the replication: %v (found %v), want %d", got, ok, res.Bytes)
	}

	// The base snapshot pruned by hand: the next send starts at its
	// bookmark.
	replZFS(t, "destroy", s3)
	s4, d4 := replSnapshot(t, src, dev, 4, 4<<20, 4<<20, size)
	res, _ = replicateJSON(t, e, src, dst)
	if len(res.Steps) != 1 || res.Steps[0].From != zfs.BookmarkFor(s3) || res.Steps[0].To != s4 || res.Steps[0].Kind != "incremental" {
		t.Fatalf("from the bookmark: %+v", res.Steps)
	}
	replSameGUIDs(t, dst, s4)
	// The target's live zvol is its newest snapshot after receive -u;
	// read it past the page cache of the first read.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
		t.Logf("drop_caches: %v; content of s4 not compared", err)
	} else if digest(t, dstDev, size) != d4 {
		t.Error("received zvol differs from s4")
	}

	// Dry run: a plan and an estimate, nothing changed.
	s5, _ := replSnapshot(t, src, dev, 5, 24<<20, 24<<20, size)
	beforeSrc, beforeDst := replPoints(t, src), replPoints(t, dst)
	res, _ = replicateJSON(t, e, src, dst, "--dry-run")
	if !res.DryRun || len(res.Steps) != 1 || res.Steps[0].From != s4 || res.Steps[0].To != s5 || res.Steps[0].EstimatedBytes < 24<<20 || res.Bytes != 0 {
		t.Fatalf("dry run: %+v", res)
	}
	if replPoints(t, src) != beforeSrc || replPoints(t, dst) != beforeDst {
		t.Error("--dry-run changed a listing")
	}

	// An interrupted receive, resumed.
	replCut(t, zfs.Send{From: s4, To: s5, Incremental: true}, dst, 4<<20)
	token := strings.TrimSpace(replZFS(t, "get", "-Hp", "-o", "value", "receive_resume_token", dst))
	if token == "" || token == "-" {
		t.Fatal("no receive_resume_token after a cut receive")
	}
	raw := replZFS(t, "send", "-nvP", "-t", token)
	t.Logf("zfs send -nvP -t TOKEN:\n%s", raw)
	ri, err := zfs.ParseResumeEstimate([]byte(raw))
	if err != nil || ri.ToName != s5 || replGUID(t, s5) != strconv.FormatUint(ri.ToGUID, 10) || ri.EstimateBytes == 0 {
		t.Fatalf("ParseResumeEstimate on real output: %+v %v", ri, err)
	}
	res, _ = replicateJSON(t, e, src, dst, "--dry-run")
	if !res.Resumed || len(res.Steps) != 1 || res.Steps[0].Kind != "resume" || res.Steps[0].To != s5 {
		t.Fatalf("dry run with a token: %+v", res.Steps)
	}
	res, _ = replicateJSON(t, e, src, dst, "--resume")
	if !res.Resumed || len(res.Steps) != 1 || res.Steps[0].Kind != "resume" || res.Steps[0].Bytes == 0 {
		t.Fatalf("resume: %+v", res)
	}
	t.Logf("resume: %d bytes after a 4 MiB cut, %d estimated", res.Bytes, res.EstimatedBytes)
	replSameGUIDs(t, dst, s5)
	if tok := strings.TrimSpace(replZFS(t, "get", "-Hp", "-o", "value", "receive_resume_token", dst)); tok != "-" {
		t.Errorf("token after resume: %q", tok)
	}
	if g := replGUID(t, zfs.BookmarkFullName(src, zfs.LastSentBookmark)); g != replGUID(t, s5) {
		t.Errorf("#dmsnap-last-sent guid %s, want s5's", g)
	}
	if code, _, errs := e.run("replicate", src, dst, "--resume"); code != exitError || !strings.Contains(errs, "no interrupted receive") {
		t.Errorf("--resume without a token: exit %d: %s", code, errs)
	}

	// zfs ls and prune: s5 is the base, s6 newer and not replicated.
	s6, _ := replSnapshot(t, src, dev, 6, 0, 1<<20, size)
	var ls jsonZFSList
	if err := json.Unmarshal([]byte(e.mustRun("--json", "zfs", "ls", src)), &ls); err != nil {
		t.Fatal(err)
	}
	// The expected order, from zfs's own listing: createtxg, then a
	// snapshot before its bookmarks, then the name.
	type row struct {
		name string
		txg  uint64
	}
	var rows []row
	for _, l := range strings.Split(strings.TrimSpace(replPoints(t, src)), "\n") {
		f := strings.Fields(l)
		rows = append(rows, row{f[0], mustUint(t, f[2])})
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		if c := cmp.Compare(a.txg, b.txg); c != 0 {
			return c
		}
		if sa, sb := strings.Contains(a.name, "@"), strings.Contains(b.name, "@"); sa != sb {
			if sa {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	base := mustUint(t, replGUID(t, s5))
	if len(ls.Points) != len(rows) {
		t.Fatalf("zfs ls has %d points, zfs list %d", len(ls.Points), len(rows))
	}
	for i, p := range ls.Points {
		if p.Name != rows[i].name || p.CreateTXG != rows[i].txg {
			t.Errorf("zfs ls row %d: %s (txg %d), want %s (txg %d)", i, p.Name, p.CreateTXG, rows[i].name, rows[i].txg)
		}
		if p.Base != (p.GUID == base) {
			t.Errorf("zfs ls: %s base=%v", p.Name, p.Base)
		}
	}
	before := replPoints(t, src)
	out := e.mustRun("zfs", "prune", src, "--keep", "1", "--keep-bookmarks", "0", "--dry-run")
	if !strings.Contains(out, "would destroy snapshot "+s1) {
		t.Errorf("prune --dry-run:\n%s", out)
	}
	if replPoints(t, src) != before {
		t.Error("prune --dry-run changed the listing")
	}
	out = e.mustRun("zfs", "prune", src, "--keep", "1", "--keep-bookmarks", "0")
	t.Logf("prune:\n%s", out)
	for _, gone := range []string{s1, s2, s4, zfs.BookmarkFor(s1), zfs.BookmarkFor(s3), zfs.BookmarkFor(s4)} {
		if replGUID(t, gone) != "" {
			t.Errorf("prune kept %s", gone)
		}
	}
	for _, kept := range []string{s5, s6, zfs.BookmarkFor(s5), zfs.BookmarkFullName(src, zfs.LastSentBookmark)} {
		if replGUID(t, kept) == "" {
			t.Errorf("prune destroyed %s", kept)
		}
	}
	res, _ = replicateJSON(t, e, src, dst)
	if len(res.Steps) != 1 || res.Steps[0].From != s5 || res.Steps[0].To != s6 {
		t.Fatalf("after prune: %+v", res.Steps)
	}
	replSameGUIDs(t, dst, s6)

	// A diverged target: refused unchanged, then --force-rollback.
	local := dst + "@local"
	replZFS(t, "snapshot", local)
	s7, _ := replSnapshot(t, src, dev, 7, 0, 1<<20, size)
	beforeDst = replPoints(t, dst)
	if code, _, errs := e.run("replicate", src, dst); code != exitError || !strings.Contains(errs, "newer than the common base") || !strings.Contains(errs, local) {
		t.Errorf("diverged: exit %d: %s", code, errs)
	}
	if replPoints(t, dst) != beforeDst {
		t.Error("a refused replicate changed the target")
	}
	out, _ = e.runOK("replicate", src, dst, "--force-rollback")
	if !strings.Contains(out, "zfs receive -F destroys on "+dst+": "+local) {
		t.Errorf("--force-rollback output:\n%s", out)
	}
	if replGUID(t, local) != "" {
		t.Errorf("%s survived receive -F", local)
	}
	replSameGUIDs(t, dst, s7)

	// Unrelated history: refused, nothing changed.
	other := srcPool + "/other"
	if err := r.CreateVolume(ctx, other, 8<<20, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	replZFS(t, "snapshot", other+"@"+zfs.SnapshotName(time.Now(), 1))
	beforeDst = replPoints(t, dst)
	code, _, errs := e.run("replicate", other, dst)
	if code != exitError || !strings.Contains(errs, "unrelated history: GUID mismatch") {
		t.Errorf("unrelated: exit %d: %s", code, errs)
	}
	if replPoints(t, dst) != beforeDst {
		t.Error("refusing unrelated history changed the target")
	}
	if code, _, errs := e.run("replicate", srcPool+"/nope", dst); code != exitError || !strings.Contains(errs, "sender dataset "+srcPool+"/nope does not exist") {
		t.Errorf("missing sender: exit %d: %s", code, errs)
	}

	// --to-host through a stand-in ssh: sshd hands the joined words to
	// the user's shell, which is what sh -c "$*" does.
	bin := t.TempDir()
	fake := "#!/bin/sh\nwhile [ \"$1\" = -o ]; do shift 2; done\nshift\nexec sh -c \"$*\"\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	remote := dstPool + "/remote"
	res, _ = replicateJSON(t, e, src, remote, "--to-host", "backup1")
	if len(res.Steps) != 1 || res.Steps[0].Kind != "full" || res.Steps[0].Receive[0] != "ssh" || res.ToHost != "backup1" {
		t.Fatalf("--to-host: %+v", res)
	}
	replSameGUIDs(t, remote, s7)
	props := replZFS(t, "get", "-Hp", "-s", "local", "-o", "property,value", "all", src)
	if !strings.Contains(props, "backup1:"+remote) || !strings.Contains(props, "\t"+replGUID(t, s7)+" "+dst) {
		t.Errorf("replication records:\n%s", props)
	}

	// A stale token: the cut receive's snapshot is destroyed on the
	// sender, so zfs rejects the token; replicate aborts it (receive -A),
	// plans again and finds the target up to date.
	s8, _ := replSnapshot(t, src, dev, 8, 0, 6<<20, size)
	replCut(t, zfs.Send{From: s7, To: s8, Incremental: true}, dst, 1<<20)
	replZFS(t, "destroy", s8)
	res, errs = replicateJSON(t, e, src, dst)
	if !res.Aborted || !res.UpToDate || len(res.Steps) != 0 || !strings.Contains(errs, "aborting it with zfs receive -A") {
		t.Fatalf("stale token: %+v\n%s", res, errs)
	}
	if tok := strings.TrimSpace(replZFS(t, "get", "-Hp", "-o", "value", "receive_resume_token", dst)); tok != "-" {
		t.Errorf("token after the abort: %q", tok)
	}

	// Interrupted by a signal (the context ends at the first progress
	// line with bytes sent): exit 130 and a resumable receive; the next
	// plain replicate resumes it, says so, and is done.
	s9, _ := replSnapshot(t, src, dev, 9, 8<<20, 40<<20, size)
	sigCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stdout strings.Builder
	stderr := &replCancelOnProgress{cancel: cancel}
	code = run(sigCtx, []string{"dmsnap", "--config-dir", e.path("cfg"), "--lock-dir", e.path("lock"), "--dev-dir", e.path("dev"),
		"replicate", src, dst}, &stdout, stderr)
	if code == exitOK {
		t.Logf("the transfer ended before the first progress line; interruption not tested")
		return
	}
	if code != exitInterrupted || !strings.Contains(stderr.String(), "--resume continues it") {
		t.Fatalf("interrupted replicate: exit %d: %s", code, stderr)
	}
	res, errs = replicateJSON(t, e, src, dst)
	if !res.Resumed || len(res.Steps) != 1 || res.Steps[0].Kind != "resume" || !strings.Contains(errs, "resuming it first") {
		t.Fatalf("after the interruption: %+v\n%s", res, errs)
	}
	replSameGUIDs(t, dst, s9)
}

// replCancelOnProgress is a stderr that cancels the command at its first
// progress line reporting bytes sent, as a SIGINT would.
type replCancelOnProgress struct {
	strings.Builder
	cancel context.CancelFunc
}

func (w *replCancelOnProgress) Write(p []byte) (int, error) {
	if strings.Contains(string(p), `"message_type":"replicate_progress"`) && !strings.Contains(string(p), `"bytes":0,`) {
		w.cancel()
	}
	return w.Builder.Write(p)
}

// TestReplicateZFSVersionGuard reads the real `zfs version` in the VM:
// userland and kernel module are both 2.3.2, so -I is allowed.
func TestReplicateZFSVersionGuard(t *testing.T) {
	testutil.RequireZFSTier(t)
	vs, err := (&zfs.Runner{}).Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	g := zfs.CheckVersions(vs)
	if !vs.Userland.Is(2, 3, 2) || !vs.Kernel.Is(2, 3, 2) || g.Compat != zfs.CompatOK || !g.SendIncrementalPackage || g.Warning != "" {
		t.Errorf("versions %s / %s: %+v", vs.Userland, vs.Kernel, g)
	}
	// The CLI says so with -v, and a dry run needs no lock or change.
	pool := testutil.ScratchZpool(t, 128<<20)
	if err := (&zfs.Runner{}).CreateVolume(t.Context(), pool+"/v", 8<<20, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	replZFS(t, "snapshot", pool+"/v@"+zfs.SnapshotName(time.Now(), 1))
	e := newCLIEnv(t)
	_, errs := e.runOK("-v", "replicate", pool+"/v", pool+"/copy", "--dry-run")
	if !strings.Contains(errs, "zfs userland "+vs.Userland.String()+", kernel module "+vs.Kernel.String()+": ok") {
		t.Errorf("stderr %q", errs)
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestReplicateZFSCrashRecord kills replicate between the receive and
// the sender's bookkeeping, at each step of it: after the receive (no
// bookmark, no record), after the snapshot's bookmark (no record), after
// the record (#dmsnap-last-sent not moved). After each kill:
//  1. zfs prune --keep 1 --keep-bookmarks 0 on the sender succeeds and
//     keeps what the target's chain needs;
//  2. the next replicate finds the target up to date and finishes the
//     bookkeeping: the snapshot's bookmark, the record and
//     #dmsnap-last-sent all have the received snapshot's guid (before the
//     fix #dmsnap-last-sent stayed at the previous base);
//  3. a further snapshot replicates incrementally from it, guids equal.
func TestReplicateZFSCrashRecord(t *testing.T) {
	testutil.RequireZFSTier(t)
	ctx := t.Context()
	srcPool, dstPool := testutil.ScratchZpool(t, 256<<20), testutil.ScratchZpool(t, 256<<20)
	src, dst := srcPool+"/vol", dstPool+"/vol"
	const size = 16 << 20
	r := &zfs.Runner{}
	if err := r.CreateVolume(ctx, src, size, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	dev, err := (&zfs.Runner{}).ZvolDevice(ctx, src, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e := newCLIEnv(t)
	seq := uint64(1)
	s, _ := replSnapshot(t, src, dev, seq, 0, 4<<20, size)
	replicateJSON(t, e, src, dst)
	last := zfs.BookmarkFullName(src, zfs.LastSentBookmark)
	record := func() string {
		return strings.TrimSpace(replZFS(t, "get", "-Hp", "-o", "value", sentProp(dst), src))
	}
	for _, fp := range []string{fpReplicateAfterReceive, fpReplicateAfterBookmark, fpReplicateAfterRecord} {
		t.Run(fp, func(t *testing.T) {
			seq++
			s, _ = replSnapshot(t, src, dev, seq, int64(seq%4)<<20, 1<<20, size)
			e.crash(fp, "replicate", src, dst)
			replSameGUIDs(t, dst, s)
			e.mustRun("zfs", "prune", src, "--keep", "1", "--keep-bookmarks", "0")
			if replGUID(t, s) == "" {
				t.Fatalf("prune destroyed %s, the snapshot the target has", s)
			}
			res, _ := replicateJSON(t, e, src, dst)
			if !res.UpToDate || len(res.Steps) != 0 {
				t.Errorf("rerun after the kill: %+v, want up to date", res)
			}
			g := replGUID(t, s)
			for _, bm := range []string{zfs.BookmarkFor(s), last} {
				if got := replGUID(t, bm); got != g {
					t.Errorf("after the rerun: %s guid %q, want %s's %s", bm, got, s, g)
				}
			}
			if got := record(); got != g+" "+dst {
				t.Errorf("after the rerun: record %q, want %q", got, g+" "+dst)
			}
			seq++
			n, _ := replSnapshot(t, src, dev, seq, int64(seq%4)<<20, 1<<20, size)
			res, _ = replicateJSON(t, e, src, dst)
			if len(res.Steps) != 1 || res.Steps[0].From != s || res.Steps[0].To != n {
				t.Errorf("next replicate: %+v, want one incremental %s -> %s", res.Steps, s, n)
			}
			replSameGUIDs(t, dst, s, n)
			s = n
		})
	}
}
