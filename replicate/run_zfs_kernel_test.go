//go:build linux

package replicate_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/replicate"
	"github.com/dmsnap/dmsnap/zfs"
)

// events is a replicate.Observer that keeps what it was told.
type events struct {
	steps, done, transfers, dry int
	upToDate                    bool
	streamed                    int64
}

func (e *events) Versions(zfs.Versions, zfs.Guard)   {}
func (e *events) Warn(string)                        {}
func (e *events) Base(zfs.Point, zfs.Point)          {}
func (e *events) UpToDate()                          { e.upToDate = true }
func (e *events) Destroys(string)                    {}
func (e *events) StepStart(replicate.Step, int, int) { e.steps++ }
func (e *events) TransferStart(zfs.Send, uint64, int, int) io.Writer {
	e.transfers++
	return writerFunc(func(b []byte) (int, error) { e.streamed += int64(len(b)); return len(b), nil })
}
func (e *events) TransferEnd(bool)                       {}
func (e *events) StepDone(replicate.Step, time.Duration) { e.done++ }
func (e *events) Resumed(string)                         {}
func (e *events) DryRunDone(uint64, int)                 { e.dry++ }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestRunZFS calls replicate.Run against real OpenZFS, dataset to dataset
// in one pool:
//   - s1, Run: one full step; the target's s1 has the sender's guid; the
//     sender has the bookmark #s1, #dmsnap-last-sent and the record
//     property of the target; the observer saw the stream's bytes;
//   - s2, s3, Run: one step (-I s1 s3, or -i steps if the guard forbids
//     -I) ending at s3 with s3's guid on the target;
//   - s4, a dry run: one planned step with an estimate, nothing received;
//   - Run again after the real one: up to date, no step.
func TestRunZFS(t *testing.T) {
	testutil.RequireZFSTier(t)
	pool := testutil.ScratchZpool(t, 256<<20)
	src, dst := pool+"/src", pool+"/dst"
	testutil.ZFS(t, "create", "-V", "8M", src)
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	snap := func(seq uint64) string {
		name := zfs.SnapshotFullName(src, zfs.SnapshotName(t0, seq))
		testutil.ZFS(t, "snapshot", name)
		return name
	}
	r := &zfs.Runner{}
	run := func(dry bool) (replicate.Result, *events) {
		t.Helper()
		ev := &events{}
		res, err := replicate.Run(t.Context(), replicate.Request{Dataset: src, Target: dst, Sender: r, DryRun: dry, Observer: ev})
		if err != nil {
			t.Fatal(err)
		}
		return res, ev
	}
	guid := func(name string) string { return testutil.ZFS(t, "get", "-Hpo", "value", "guid", name) }
	short := func(name string) string { return name[strings.IndexByte(name, '@')+1:] }

	s1 := snap(1)
	res, ev := run(false)
	if len(res.Steps) != 1 || res.Steps[0].Kind != "full" || res.Steps[0].To != s1 || res.Bytes == 0 || ev.done != 1 || ev.streamed != int64(res.Bytes) {
		t.Fatalf("first Run: %+v, events %+v", res, ev)
	}
	if g := guid(dst + "@" + short(s1)); g != guid(s1) {
		t.Errorf("target's s1 guid %s, sender's %s", g, guid(s1))
	}
	if g := guid(zfs.BookmarkFullName(src, zfs.LastSentBookmark)); g != guid(s1) {
		t.Errorf("#dmsnap-last-sent guid %s, want s1's", g)
	}
	if v := testutil.ZFS(t, "get", "-Hpo", "value", replicate.RecordProperty(replicate.TargetID("", dst)), src); v != guid(s1)+" "+dst {
		t.Errorf("record %q, want %q", v, guid(s1)+" "+dst)
	}
	if g := guid(zfs.BookmarkFor(s1)); g != guid(s1) {
		t.Errorf("bookmark #s1 guid %s", g)
	}

	snap(2)
	s3 := snap(3)
	res, _ = run(false)
	if n := len(res.Steps); n == 0 || res.Steps[n-1].To != s3 || res.Steps[0].Kind != "package" && res.Steps[0].Kind != "incremental" {
		t.Fatalf("incremental Run: %+v", res.Steps)
	}
	if g := guid(dst + "@" + short(s3)); g != guid(s3) {
		t.Errorf("target's s3 guid %s, sender's %s", g, guid(s3))
	}

	s4 := snap(4)
	before := testutil.ZFS(t, "list", "-Hpo", "name", "-t", "snapshot", "-r", dst)
	res, ev = run(true)
	if len(res.Steps) != 1 || res.Steps[0].To != s4 || res.Steps[0].EstimatedBytes == 0 || res.Bytes != 0 || ev.dry != 1 || ev.transfers != 0 {
		t.Errorf("dry run: %+v, events %+v", res, ev)
	}
	if after := testutil.ZFS(t, "list", "-Hpo", "name", "-t", "snapshot", "-r", dst); after != before {
		t.Errorf("the dry run changed the target:\n%s\nwas\n%s", after, before)
	}
	run(false)
	if res, ev = run(false); !res.UpToDate || len(res.Steps) != 0 || !ev.upToDate {
		t.Errorf("Run with nothing new: %+v", res)
	}
}
