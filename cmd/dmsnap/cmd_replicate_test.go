package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/zfs"
)

// Sender tank/vol: s1 (guid 101, txg 10, with its bookmark), s2 (102,
// 20), s3 (103, 30). Receiver backup/vol: s1 (guid 101, its own txg 7).
func replSenderListing() string {
	return zlisting(
		zpt{"tank/vol@" + zdn(1), 101, 10, 0}, zpt{"tank/vol#" + zdn(1), 101, 10, 0},
		zpt{"tank/vol@" + zdn(2), 102, 20, 0}, zpt{"tank/vol@" + zdn(3), 103, 30, 0})
}

func zsnap(i int) string { return "tank/vol@" + zdn(i) }

// replicaFake scripts the common part: version, both listings, no token.
func replicaFake(t *testing.T, version, receiver string) *fakeZFS {
	f := newFakeZFS(t)
	f.on("zfs version -j", zok(version))
	f.on(zfsListKey("tank/vol"), zok(replSenderListing()))
	if receiver == "" {
		f.on(zfsGetKey("backup/vol", "receive_resume_token"), zfail("cannot open 'backup/vol': dataset does not exist\n"))
		f.on(zfsGetKey("backup", "guid"), zok("guid\t5\n"))
	} else {
		f.on(zfsGetKey("backup/vol", "receive_resume_token"), zok("receive_resume_token\t-\n"))
		f.on(zfsListKey("backup/vol"), zok(receiver))
	}
	return f
}

// zestimate is what zfs send -nvP prints for from → to (full when from is
// empty).
func zestimate(from, to string, n int) fakeZFSReply {
	line := "full\t" + to
	if from != "" {
		line = "incremental\t" + from + "\t" + to
	}
	return zok(line + "\t" + strconv.Itoa(n) + "\nsize\t" + strconv.Itoa(n) + "\n")
}

// expectReplRecord scripts the bookkeeping after s was received: record is
// the value of the replication record, "<guid> <target>".
func expectReplRecord(f *fakeZFS, s string, record string, target string) {
	bm := zfs.BookmarkFor(s)
	f.on("zfs bookmark "+s+" "+bm, zok(""))
	f.on("zfs set "+sentProp(target)+"="+record+" tank/vol", zok(""))
	f.on("zfs destroy tank/vol#dmsnap-last-sent", zok(""))
	f.on("zfs bookmark "+s+" tank/vol#dmsnap-last-sent", zok(""))
}

func runReplicateFake(t *testing.T, f *fakeZFS, jsonOut bool, opts replicateOptions) (stdout, stderr string, err error) {
	t.Helper()
	gopts, out, errb := zfsTestGopts(t, jsonOut)
	if opts.Dataset == "" {
		opts.Dataset, opts.Target = "tank/vol", "backup/vol"
	}
	err = runReplicate(context.Background(), opts, gopts, fakeZFSEnv(f))
	return out.String(), errb.String(), err
}

// TestReplicateDryRunPrintsStepsAndEstimates: the plan (-I s1 s3) and its
// -nvP zestimate are printed, in text and JSON, and nothing but reads ran.
func TestReplicateDryRunPrintsStepsAndEstimates(t *testing.T) {
	f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0}))
	f.on("zfs send -nvP -I "+zsnap(1)+" "+zsnap(3), zestimate(zsnap(1), zsnap(3), 5349376))
	out, _, err := runReplicateFake(t, f, false, replicateOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"base: " + zsnap(1) + " (guid 101) = backup/vol@" + zdn(1),
		"would run 1/1: zfs send -I " + zsnap(1) + " " + zsnap(3) + " | zfs receive -s -u backup/vol  (estimated 5.1 MiB)",
		"dry run: estimated 5.1 MiB in 1 step(s); nothing changed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if m := f.mutations(); len(m) != 0 {
		t.Errorf("dry run ran %q", m)
	}

	out, _, err = runReplicateFake(t, f, true, replicateOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var res jsonReplicate
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !res.DryRun || len(res.Steps) != 1 || res.Steps[0].Kind != "package" || res.Steps[0].EstimatedBytes != 5349376 ||
		res.EstimatedBytes != 5349376 || res.Bytes != 0 || res.Base == nil || res.Base.GUID != 101 {
		t.Errorf("json %s", out)
	}
	if m := f.mutations(); len(m) != 0 {
		t.Errorf("dry run ran %q", m)
	}
}

// TestReplicateRefusesUnrelatedHistory: a receiver whose guids the sender
// does not know is refused with ErrNoCommonBase before any send or
// receive, also with --allow-full alone.
func TestReplicateRefusesUnrelatedHistory(t *testing.T) {
	for _, opts := range []replicateOptions{{}, {AllowFull: true}, {DryRun: true}} {
		f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(1), 901, 7, 0}, zpt{"backup/vol@other", 902, 9, 0}))
		_, _, err := runReplicateFake(t, f, false, opts)
		if !errors.Is(err, zfs.ErrNoCommonBase) || exitCode(err) != exitError {
			t.Fatalf("%+v: err %v, want ErrNoCommonBase", opts, err)
		}
		if !strings.Contains(err.Error(), "GUID mismatch") || !strings.Contains(err.Error(), "backup/vol has 2 snapshot(s)") {
			t.Errorf("message %q", err)
		}
		if m := f.mutations(); len(m) != 0 {
			t.Errorf("%+v ran %q", opts, m)
		}
	}
}

// TestReplicateBookmarksAfterSend: the stream goes from send into
// receive unchanged and is counted; after the receive the received guid
// is checked, then the per-snapshot bookmark, the record, and
// #dmsnap-last-sent, in that order.
func TestReplicateBookmarksAfterSend(t *testing.T) {
	f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(2), 102, 7, 0}))
	stream := strings.Repeat("0123456789", 10000)
	f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 90000))
	f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zok(stream))
	f.on("zfs receive -s -u backup/vol", zok(""))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
	out, errs, err := runReplicateFake(t, f, true, replicateOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if got := f.stdin["zfs receive -s -u backup/vol"]; got != stream {
		t.Errorf("receive got %d bytes, want the %d sent", len(got), len(stream))
	}
	order := []string{
		"zfs receive -s -u backup/vol",
		zfsGetKey("backup/vol@"+zdn(3), "guid"),
		"zfs bookmark " + zsnap(3) + " tank/vol#" + zdn(3),
		"zfs set " + sentProp("backup/vol") + "=103 backup/vol tank/vol",
		"zfs destroy tank/vol#dmsnap-last-sent",
		"zfs bookmark " + zsnap(3) + " tank/vol#dmsnap-last-sent",
	}
	for i := 1; i < len(order); i++ {
		if a, b := f.index(order[i-1]), f.index(order[i]); a < 0 || b < 0 || a > b {
			t.Errorf("%q (at %d) must come before %q (at %d)", order[i-1], a, order[i], b)
		}
	}
	var res jsonReplicate
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Bytes != uint64(len(stream)) || len(res.Steps) != 1 || res.Steps[0].Bytes != uint64(len(stream)) ||
		!slices.Equal(res.Steps[0].Bookmarks, []string{"tank/vol#" + zdn(3), "tank/vol#dmsnap-last-sent"}) {
		t.Errorf("json %s", out)
	}
	// Progress went to stderr as JSON lines (not a terminal), ending done.
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	var last jsonTransferProgress
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || !last.Done || last.Bytes != int64(len(stream)) ||
		last.EstimatedBytes != 90000 || last.MessageType != "replicate_progress" {
		t.Errorf("progress %q: %v", errs, err)
	}
}

// A bookmark that ingest already made for the snapshot is fine when it
// has the snapshot's guid, and an error when it has another.
func TestReplicateExistingBookmark(t *testing.T) {
	for _, tc := range []struct {
		guid string
		ok   bool
	}{{"103", true}, {"999", false}} {
		f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(2), 102, 7, 0}))
		f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 10))
		f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zok("S"))
		f.on("zfs receive -s -u backup/vol", zok(""))
		f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
		expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
		f.script["zfs bookmark "+zsnap(3)+" tank/vol#"+zdn(3)] = []fakeZFSReply{zfail("cannot create bookmark 'tank/vol#" + zdn(3) + "': bookmark exists\n")}
		f.on(zfsGetKey("tank/vol#"+zdn(3), "guid"), zok("guid\t"+tc.guid+"\n"))
		_, _, err := runReplicateFake(t, f, false, replicateOptions{})
		if tc.ok != (err == nil) {
			t.Errorf("existing bookmark guid %s: err %v", tc.guid, err)
		}
		if !tc.ok && f.called("zfs destroy tank/vol#dmsnap-last-sent") {
			t.Errorf("moved #dmsnap-last-sent despite a foreign bookmark")
		}
	}
}

// TestReplicateGUIDMismatchFailsLoudly: a receiver whose copy has another
// guid gets no bookmark or record.
func TestReplicateGUIDMismatchFailsLoudly(t *testing.T) {
	f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(2), 102, 7, 0}))
	f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 10))
	f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zok("S"))
	f.on("zfs receive -s -u backup/vol", zok(""))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t777\n"))
	_, _, err := runReplicateFake(t, f, false, replicateOptions{})
	if !errors.Is(err, errReplicaGUID) || !strings.Contains(err.Error(), "has guid 777 but the sent "+zsnap(3)+" has 103") {
		t.Fatalf("err %v", err)
	}
	for _, m := range f.mutations() {
		if strings.Contains(m, "bookmark") || strings.Contains(m, " set ") {
			t.Errorf("ran %q after a guid mismatch", m)
		}
	}
}

// TestReplicateFullIntoNewTarget: no target → full send of the newest
// snapshot, received without -F.
func TestReplicateFullIntoNewTarget(t *testing.T) {
	f := replicaFake(t, zfsVersion232, "")
	f.on("zfs send -nvP "+zsnap(3), zestimate("", zsnap(3), 1070704))
	f.on("zfs send "+zsnap(3), zok("FULL"))
	f.on("zfs receive -s -u backup/vol", zok(""))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
	if _, errs, err := runReplicateFake(t, f, false, replicateOptions{}); err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	// A missing parent is refused before anything is sent.
	f = newFakeZFS(t)
	f.on("zfs version -j", zok(zfsVersion232))
	f.on(zfsListKey("tank/vol"), zok(replSenderListing()))
	f.on(zfsGetKey("backup/a/vol", "receive_resume_token"), zfail("cannot open 'backup/a/vol': dataset does not exist\n"))
	f.on(zfsGetKey("backup/a", "guid"), zfail("cannot open 'backup/a': dataset does not exist\n"))
	_, _, err := runReplicateFake(t, f, false, replicateOptions{Dataset: "tank/vol", Target: "backup/a/vol"})
	if !errors.Is(err, zfs.ErrDatasetNotFound) || !strings.Contains(err.Error(), "parent backup/a") || len(f.mutations()) != 0 {
		t.Errorf("missing parent: %v, ran %q", err, f.mutations())
	}
}

// TestReplicateResume: a receiver with a token is resumed first (send
// -t), checked against the token's toguid and bookmarked; with --resume
// that is all, without it the plan goes on from the new state.
func TestReplicateResume(t *testing.T) {
	tokenInfo := "resume token contents:\nnvlist version: 0\n\tfromguid = 0x65\n\tobject = 0x1\n\toffset = 0x20000\n" +
		"\tbytes = 0x21000\n\ttoguid = 0x66\n\ttoname = " + zsnap(2) + "\nincremental\t" + zsnap(1) + "\t" + zsnap(2) + "\t4096\nsize\t4096\n"
	setup := func() *fakeZFS {
		f := replicaFake(t, zfsVersion232, "")
		f.script[zfsGetKey("backup/vol", "receive_resume_token")] = []fakeZFSReply{zok("receive_resume_token\t1-abc-de\n"), zok("receive_resume_token\t-\n")}
		f.on(zfsListKey("backup/vol"), zok(zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0})), zok(zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0}, zpt{"backup/vol@" + zdn(2), 102, 9, 0})))
		f.on("zfs send -nvP -t 1-abc-de", zok(tokenInfo))
		f.on("zfs send -t 1-abc-de", zok("REST"))
		f.on("zfs receive -s -u backup/vol", zok(""))
		f.on(zfsGetKey("backup/vol@"+zdn(2), "guid"), zok("guid\t102\n"))
		expectReplRecord(f, zsnap(2), "102 backup/vol", "backup/vol")
		return f
	}

	f := setup()
	out, _, err := runReplicateFake(t, f, false, replicateOptions{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.stdin["zfs receive -s -u backup/vol"] != "REST" || !f.called("zfs bookmark "+zsnap(2)+" tank/vol#dmsnap-last-sent") {
		t.Errorf("resume did not run or bookmark: %q", f.calls)
	}
	if f.called("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3)) || !strings.Contains(out, "resumed: backup/vol now has "+zdn(2)) {
		t.Errorf("--resume went on past the resumed receive:\n%s", out)
	}

	// Without --resume: resume, say so, replan, send s2 → s3.
	f = setup()
	f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 10))
	f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zok("NEXT"))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
	out, errs, err := runReplicateFake(t, f, true, replicateOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if !strings.Contains(errs, "has an interrupted receive of "+zsnap(2)+"; resuming it first") {
		t.Errorf("stderr %q", errs)
	}
	var res jsonReplicate
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Resumed || len(res.Steps) != 2 || res.Steps[0].Kind != "resume" || res.Steps[1].To != zsnap(3) {
		t.Errorf("json %s %v", out, err)
	}

	// --resume without a token is an error and changes nothing.
	f = replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0}))
	if _, _, err := runReplicateFake(t, f, false, replicateOptions{Resume: true}); !errors.Is(err, errNothingToResume) || len(f.mutations()) != 0 {
		t.Errorf("--resume without token: %v, ran %q", err, f.mutations())
	}
}

// A token zfs rejects is aborted (receive -A) and the plan made again,
// when it names a snapshot of DATASET; with --resume it is an error
// instead, with nothing changed. A token of another dataset, or one zfs
// cannot decode, is left alone.
func TestReplicateRejectedToken(t *testing.T) {
	contents := func(toname string) string {
		return "resume token contents:\nnvlist version: 0\n\tfromguid = 0x65\n\tobject = 0x1\n\toffset = 0x0\n\tbytes = 0x0\n" +
			"\ttoguid = 0x99\n\ttoname = " + toname + "\n"
	}
	gone := "cannot resume send: '" + zsnap(2) + "' used in the initial send no longer exists\n"
	setup := func(reply fakeZFSReply) *fakeZFS {
		f := replicaFake(t, zfsVersion232, "")
		f.script[zfsGetKey("backup/vol", "receive_resume_token")] = []fakeZFSReply{zok("receive_resume_token\t1-old\n"), zok("receive_resume_token\t-\n")}
		f.on(zfsListKey("backup/vol"), zok(zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0})))
		f.on("zfs send -nvP -t 1-old", reply)
		return f
	}
	stale := fakeZFSReply{stdout: contents("tank/vol@gone"), stderr: gone, fail: errFakeZFSExit}
	f := setup(stale)
	_, _, err := runReplicateFake(t, f, false, replicateOptions{Resume: true})
	if !errors.Is(err, zfs.ErrResumeTokenInvalid) || len(f.mutations()) != 0 {
		t.Errorf("--resume, rejected token: %v, ran %q", err, f.mutations())
	}
	for _, tc := range []struct {
		reply fakeZFSReply
		text  string
	}{
		{zfail("cannot resume send: resume token is corrupt (incorrect checksum)\n"), "does not say whose it is"},
		{fakeZFSReply{stdout: contents("tank/other@x"), stderr: gone, fail: errFakeZFSExit}, "not of tank/vol"},
		// A good token of another dataset is not resumed either.
		{zok(contents("tank/other@x") + "full\ttank/other@x\t10\nsize\t10\n"), "dmsnap replicate tank/other backup/vol --resume"},
	} {
		f := setup(tc.reply)
		_, _, err := runReplicateFake(t, f, false, replicateOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.text) || len(f.mutations()) != 0 {
			t.Errorf("%q: %v, ran %q", tc.text, err, f.mutations())
		}
	}

	f = setup(stale)
	f.on("zfs receive -A backup/vol", zok(""))
	f.on("zfs send -nvP -I "+zsnap(1)+" "+zsnap(3), zestimate(zsnap(1), zsnap(3), 10))
	f.on("zfs send -I "+zsnap(1)+" "+zsnap(3), zok("S"))
	f.on("zfs receive -s -u backup/vol", zok(""))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
	_, errs, err := runReplicateFake(t, f, false, replicateOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if a, b := f.index("zfs receive -A backup/vol"), f.index("zfs send -I "+zsnap(1)+" "+zsnap(3)); a < 0 || b < a {
		t.Errorf("abort at %d, send at %d", a, b)
	}
	if !strings.Contains(errs, "the interrupted receive of tank/vol@gone into backup/vol cannot be resumed") {
		t.Errorf("stderr %q", errs)
	}
}

// TestReplicateKnownBadVersionUsesChain: userland 2.3.2 on kmod 2.3.1
// warns and sends s1→s2→s3 as -i steps, never -I.
func TestReplicateKnownBadVersionUsesChain(t *testing.T) {
	f := replicaFake(t, zfsVersion231, zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0}))
	f.on("zfs send -nvP -i "+zsnap(1)+" "+zsnap(2), zestimate(zsnap(1), zsnap(2), 10))
	f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 20))
	out, errs, err := runReplicateFake(t, f, false, replicateOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errs, "zfs send -I fails with userland 2.3.2 on kernel module 2.3.1") || strings.Contains(out, "-I") ||
		!strings.Contains(out, "would run 2/2: zfs send -i "+zsnap(2)+" "+zsnap(3)) {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errs)
	}
}

// TestReplicateDiverged: receiver snapshots newer than the base are
// refused; --force-rollback names them and receives with -F.
func TestReplicateDiverged(t *testing.T) {
	rcv := zlisting(zpt{"backup/vol@" + zdn(1), 101, 7, 0}, zpt{"backup/vol@local", 555, 8, 0})
	f := replicaFake(t, zfsVersion232, rcv)
	_, _, err := runReplicateFake(t, f, false, replicateOptions{})
	if !errors.Is(err, zfs.ErrReceiverDiverged) || !strings.Contains(err.Error(), "backup/vol@local") || len(f.mutations()) != 0 {
		t.Fatalf("err %v, ran %q", err, f.mutations())
	}
	f = replicaFake(t, zfsVersion232, rcv)
	f.on("zfs send -nvP -I "+zsnap(1)+" "+zsnap(3), zestimate(zsnap(1), zsnap(3), 10))
	f.on("zfs send -I "+zsnap(1)+" "+zsnap(3), zok("S"))
	f.on("zfs receive -s -u -F backup/vol", zok(""))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
	out, _, err := runReplicateFake(t, f, false, replicateOptions{ForceRollback: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--force-rollback: zfs receive -F destroys on backup/vol: backup/vol@local") {
		t.Errorf("output:\n%s", out)
	}
	if strings.Index(out, "destroys on") > strings.Index(out, "step 1/1") {
		t.Errorf("the destroyed snapshots must be printed before the step:\n%s", out)
	}
}

// --allow-full --force-rollback overwrites unrelated history: the target's
// snapshots are destroyed first, then a full receive -F.
func TestReplicateAllowFull(t *testing.T) {
	f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@x", 901, 7, 0}))
	f.on("zfs send -nvP "+zsnap(3), zestimate("", zsnap(3), 10))
	f.on("zfs destroy backup/vol@x", zok(""))
	f.on("zfs send "+zsnap(3), zok("FULL"))
	f.on("zfs receive -s -u -F backup/vol", zok(""))
	f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
	out, _, err := runReplicateFake(t, f, false, replicateOptions{AllowFull: true, ForceRollback: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := f.index("zfs destroy backup/vol@x"), f.index("zfs receive -s -u -F backup/vol"); a < 0 || b < a {
		t.Errorf("destroy at %d, receive at %d", a, b)
	}
	if !strings.Contains(out, "the full receive first destroys on backup/vol: backup/vol@x") {
		t.Errorf("output:\n%s", out)
	}
}

// TestReplicateReceiveFails: a receive refused by zfs stops the sender and
// explains; a saved partial state is pointed at --resume.
func TestReplicateReceiveFails(t *testing.T) {
	for _, tty := range []bool{false, true} {
		f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(2), 102, 7, 0}))
		f.script[zfsGetKey("backup/vol", "receive_resume_token")] = []fakeZFSReply{zok("receive_resume_token\t-\n"), zok("receive_resume_token\t1-partial\n")}
		f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 10))
		f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zok(strings.Repeat("x", 1<<20)))
		// The receiver gives up at once: the sender, blocked on the
		// pipe, must be stopped rather than hang.
		r := zfail("cannot receive incremental stream: destination backup/vol has been modified\nsince most recent snapshot\n")
		r.noRead = true
		f.on("zfs receive -s -u backup/vol", r)
		gopts, _, _ := zfsTestGopts(t, false)
		env := fakeZFSEnv(f)
		env.isTTY = tty
		err := runReplicate(context.Background(), replicateOptions{Dataset: "tank/vol", Target: "backup/vol"}, gopts, env)
		if !errors.Is(err, zfs.ErrDestinationModified) || !strings.Contains(err.Error(), "--force-rollback discards those changes") ||
			!strings.Contains(err.Error(), "dmsnap replicate tank/vol backup/vol --resume continues it") {
			t.Errorf("tty=%v: err %v", tty, err)
		}
		if f.called("zfs destroy tank/vol#dmsnap-last-sent") {
			t.Error("bookmarked after a failed receive")
		}
	}
}

// TestReplicateToHost: the receiver side runs as "ssh -o BatchMode=yes
// DEST zfs ...", each argument separate; names a remote shell would reinterpret are usage
// errors.
func TestReplicateToHost(t *testing.T) {
	f := newFakeZFS(t)
	f.on("zfs version -j", zok(zfsVersion232))
	f.on("ssh -o BatchMode=yes root@backup1 zfs version -j", zok(zfsVersion232))
	f.on(zfsListKey("tank/vol"), zok(replSenderListing()))
	f.on("ssh -o BatchMode=yes root@backup1 "+zfsGetKey("backup/vol", "receive_resume_token"), zfail("cannot open 'backup/vol': dataset does not exist\n"))
	f.on("ssh -o BatchMode=yes root@backup1 zfs get -Hp -o property,value guid backup", zok("guid\t5\n"))
	f.on("zfs send -nvP "+zsnap(3), zestimate("", zsnap(3), 10))
	f.on("zfs send "+zsnap(3), zok("FULL"))
	f.on("ssh -o BatchMode=yes root@backup1 zfs receive -s -u backup/vol", zok(""))
	f.on("ssh -o BatchMode=yes root@backup1 zfs get -Hp -o property,value guid backup/vol@"+zdn(3), zok("guid\t103\n"))
	expectReplRecord(f, zsnap(3), "103 root@backup1:backup/vol", "root@backup1:backup/vol")
	out, errs, err := runReplicateFake(t, f, false, replicateOptions{Dataset: "tank/vol", Target: "backup/vol", ToHost: "root@backup1"})
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if f.stdin["ssh -o BatchMode=yes root@backup1 zfs receive -s -u backup/vol"] != "FULL" ||
		!strings.Contains(out, "| ssh -o BatchMode=yes root@backup1 zfs receive -s -u backup/vol") {
		t.Errorf("calls %q\n%s", f.calls, out)
	}

	e := newCLIEnv(t)
	for _, args := range [][]string{
		{"replicate", "tank/vol", "backup/vol", "--to-host", "-oProxyCommand=sh"},
		{"replicate", "tank/vol", "backup/vol", "--to-host", "host;reboot"},
		{"replicate", "tank/vol", "backup/v%l", "--to-host", "backup1"},
		{"replicate", "tank/vol", "backup/vol@s"},
		{"replicate", "tank/vol", "tank/vol"},
		{"replicate", "tank/vol"},
		{"replicate", "tank/vol", "backup/vol", "--resume", "--force-rollback"},
	} {
		if code, _, errs := e.run(args...); code != exitUsage {
			t.Errorf("%q: exit %d (%s), want 2", args, code, errs)
		}
	}
}

// Environment failures say which: not installed, module not loaded,
// missing sender dataset; each before anything is sent.
func TestReplicateEnvironmentErrors(t *testing.T) {
	gopts, _, _ := zfsTestGopts(t, false)
	opts := replicateOptions{Dataset: "tank/vol", Target: "backup/vol"}
	err := runReplicate(context.Background(), opts, gopts, zfsEnv{local: &zfs.Runner{ZFS: "/nonexistent/zfs"}})
	if !errors.Is(err, zfs.ErrZFSNotInstalled) || !strings.Contains(err.Error(), "zfs is not installed") {
		t.Errorf("not installed: %v", err)
	}
	f := newFakeZFS(t)
	f.on("zfs version -j", zfail("The ZFS modules cannot be auto-loaded.\nTry running 'modprobe zfs' as root to manually load them.\n"))
	if _, _, err := runReplicateFake(t, f, false, opts); !errors.Is(err, zfs.ErrNoModule) || !strings.Contains(err.Error(), "modprobe zfs") {
		t.Errorf("no module: %v", err)
	}
	f = newFakeZFS(t)
	f.on("zfs version -j", zok(zfsVersion232))
	f.on("ssh -o BatchMode=yes backup1 zfs version -j", zfail("bash: line 1: zfs: command not found\n"))
	f.on("ssh -o BatchMode=yes backup1 zfs version", zfail("bash: line 1: zfs: command not found\n"))
	// The fake cannot exit 127; the remote stderr is quoted instead.
	if _, _, err := runReplicateFake(t, f, false, replicateOptions{Dataset: "tank/vol", Target: "backup/vol", ToHost: "backup1"}); err == nil ||
		!strings.Contains(err.Error(), "receiver backup1: ") {
		t.Errorf("remote without zfs: %v", err)
	}
	f = newFakeZFS(t)
	f.on("zfs version -j", zok(zfsVersion232))
	f.on(zfsListKey("tank/vol"), zfail("cannot open 'tank/vol': dataset does not exist\n"))
	if _, _, err := runReplicateFake(t, f, false, opts); !errors.Is(err, zfs.ErrDatasetNotFound) || !strings.Contains(err.Error(), "sender dataset tank/vol does not exist") {
		t.Errorf("missing sender: %v", err)
	}
}

// An up-to-date target sends nothing and only makes sure the base is
// bookmarked and recorded (#dmsnap-last-sent is created if missing).
func TestReplicateUpToDate(t *testing.T) {
	f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(3), 103, 7, 0}))
	f.on("zfs bookmark "+zsnap(3)+" tank/vol#"+zdn(3), zok(""))
	f.on("zfs set "+sentProp("backup/vol")+"=103 backup/vol tank/vol", zok(""))
	f.on("zfs destroy tank/vol#dmsnap-last-sent", zok(""))
	f.on("zfs bookmark "+zsnap(3)+" tank/vol#dmsnap-last-sent", zok(""))
	out, _, err := runReplicateFake(t, f, false, replicateOptions{})
	if err != nil || !strings.Contains(out, "backup/vol is up to date with tank/vol") {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, m := range f.mutations() {
		if strings.Contains(m, "send") || strings.Contains(m, "receive") {
			t.Errorf("ran %q", m)
		}
	}
}

// Progress: a bar (mpb) when stderr is a terminal, nothing with --quiet;
// the result on stdout is the same.
func TestReplicateProgressModes(t *testing.T) {
	for _, tc := range []struct {
		tty, quiet bool
		want       string // in stderr; "" means stderr stays empty
	}{{tty: true, want: "1/1 " + zdn(3)}, {quiet: true}} {
		f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(2), 102, 7, 0}))
		f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 4096))
		f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zok(strings.Repeat("s", 4096)))
		f.on("zfs receive -s -u backup/vol", zok(""))
		f.on(zfsGetKey("backup/vol@"+zdn(3), "guid"), zok("guid\t103\n"))
		expectReplRecord(f, zsnap(3), "103 backup/vol", "backup/vol")
		gopts, out, errb := zfsTestGopts(t, false)
		gopts.Quiet = tc.quiet
		env := fakeZFSEnv(f)
		env.isTTY = tc.tty
		if err := runReplicate(context.Background(), replicateOptions{Dataset: "tank/vol", Target: "backup/vol"}, gopts, env); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "sent 4.0 KiB in") {
			t.Errorf("tty=%v quiet=%v stdout:\n%s", tc.tty, tc.quiet, out)
		}
		switch {
		case tc.want == "" && errb.Len() != 0:
			t.Errorf("quiet stderr %q", errb)
		case tc.want != "" && (!strings.Contains(errb.String(), tc.want) || strings.Contains(errb.String(), "message_type")):
			t.Errorf("tty stderr %q", errb)
		}
	}
}

// A sender that fails first is the error reported (the receive's failure
// on the truncated stream comes second).
func TestReplicateSendFails(t *testing.T) {
	f := replicaFake(t, zfsVersion232, zlisting(zpt{"backup/vol@" + zdn(2), 102, 7, 0}))
	f.script[zfsGetKey("backup/vol", "receive_resume_token")] = []fakeZFSReply{zok("receive_resume_token\t-\n")}
	f.on("zfs send -nvP -i "+zsnap(2)+" "+zsnap(3), zestimate(zsnap(2), zsnap(3), 10))
	f.on("zfs send -i "+zsnap(2)+" "+zsnap(3), zfail("cannot open '"+zsnap(2)+"': dataset does not exist\n"))
	f.on("zfs receive -s -u backup/vol", zfail("cannot receive: failed to read from stream\n"))
	_, _, err := runReplicateFake(t, f, false, replicateOptions{})
	if !errors.Is(err, zfs.ErrDatasetNotFound) || !strings.HasPrefix(err.Error(), "-i "+zsnap(2)+" "+zsnap(3)+": zfs send: ") {
		t.Errorf("err %v", err)
	}
	if exitCode(err) != exitError {
		t.Errorf("exit %d", exitCode(err))
	}
}
