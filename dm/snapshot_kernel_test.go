//go:build linux

package dm_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

const (
	originSectors = 131072   // 64 MiB
	originBytes   = 64 << 20 // origin loop device
	mib           = 1 << 20
)

// snapStack is origin-real (linear over a loop device), a snapshot of it
// and the snapshot-origin device on top, built in LVM's order of
// resumption: real, snapshot, origin.
type snapStack struct {
	real, snap, base dm.Info
	cow              dm.DevNum
	snapParams       string
	old              []byte // the origin's first 8 MiB before any snapshot write
}

// newSnapStack zeroes the first 4 KiB of a fresh COW loop device of
// cowBytes (a reused COW would reload the old header), fills the origin
// with a known pattern, and loads "snapshot <real> <cow> <store> 8[
// <features>]".
func newSnapStack(t *testing.T, c *dm.Client, cowBytes int64, store, features string) *snapStack {
	t.Helper()
	lo := scratch(t, originBytes)
	cow, cowPath := testutil.ScratchDev(t, cowBytes)
	testutil.MustWriteDirect(t, cowPath, 0, make([]byte, 4096))

	s := &snapStack{cow: cow, old: testutil.Pattern(0x11, 8*mib)}
	s.real = create(t, c, "", line(0, originSectors, "linear", lo.String()+" 0"))
	testutil.MustWriteDirect(t, s.real.BlockPath(), 0, s.old)
	s.snapParams = fmt.Sprintf("%v %v %s 8", s.real.Dev, cow, store)
	if features != "" {
		s.snapParams += " " + features
	}
	s.snap = create(t, c, "", line(0, originSectors, "snapshot", s.snapParams))
	s.base = create(t, c, "", line(0, originSectors, "snapshot-origin", s.real.Dev.String()))
	return s
}

func snapLine(params string) dm.TargetLine { return line(0, originSectors, "snapshot", params) }

// TestSnapshotPersistent
//   - snapshot-origin table is "<real>", its status empty
//   - fresh P snapshot, chunk 8, 16 MiB COW: status "16/32768 16"
//   - 1 MiB written to the origin = 256 exceptions = area 0 full:
//     next_free 259 (chunk 258 is area 1) -> "2072/32768 24"
//   - 8 MiB in all = 2048 exceptions in 8 full areas: next_free 2058 ->
//     "16464/32768 80"
//   - the snapshot still reads the old bytes, the origin the new ones
//   - no table event fires; a message to the snapshot target is EINVAL
func TestSnapshotPersistent(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, 16*mib, "P", "")

	g := newGolden(t, "snapshot-origin")
	g.add("table", wantTable(t, c, s.base.Name, line(0, originSectors, "snapshot-origin", s.real.Dev.String())))
	g.add("status", wantStatus(t, c, s.base.Name, line(0, originSectors, "snapshot-origin", "")))

	g = newGolden(t, "snapshot-P-fresh")
	g.add("table", wantTable(t, c, s.snap.Name, snapLine(s.snapParams)))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("16/32768 16")))

	g = newGolden(t, "snapshot-P-writes")
	g.comment("1 MiB written to the origin")
	testutil.MustWriteDirect(t, s.base.BlockPath(), 0, testutil.Pattern(0x22, mib))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("2072/32768 24")))
	if testutil.HashDirect(t, s.snap.BlockPath(), 0, mib) != testutil.Hash(s.old[:mib]) {
		t.Fatal("snapshot does not read the old bytes after 1 MiB of origin writes")
	}
	g.comment("8 MiB written to the origin")
	newer := testutil.Pattern(0x33, 8*mib)
	testutil.MustWriteDirect(t, s.base.BlockPath(), 0, newer)
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("16464/32768 80")))
	if testutil.HashDirect(t, s.snap.BlockPath(), 0, 8*mib) != testutil.Hash(s.old) {
		t.Fatal("snapshot does not read the old bytes after 8 MiB of origin writes")
	}
	if testutil.HashDirect(t, s.base.BlockPath(), 0, 8*mib) != testutil.Hash(newer) {
		t.Fatal("origin does not read the new bytes")
	}
	if info, _ := c.Info(s.snap.Name); info.EventNr != 0 {
		t.Fatalf("snapshot event_nr %d after writes, want 0", info.EventNr)
	}

	_, err := c.Message(s.snap.Name, 0, "hello")
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Message to a snapshot: %v", err)
	}
	if got, want := err.Error(), "dm message "+s.snap.Name+": invalid argument"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

// TestSnapshotTransient
//   - N snapshot: status "0/32768 0" fresh (no header, no metadata)
//   - 1 MiB origin writes = 256 chunks of 8 sectors: "2048/32768 0"
func TestSnapshotTransient(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, 16*mib, "N", "")
	g := newGolden(t, "snapshot-N")
	g.add("table", wantTable(t, c, s.snap.Name, snapLine(s.snapParams)))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("0/32768 0")))
	testutil.MustWriteDirect(t, s.base.BlockPath(), 0, testutil.Pattern(0x22, mib))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("2048/32768 0")))
	if testutil.HashDirect(t, s.snap.BlockPath(), 0, mib) != testutil.Hash(s.old[:mib]) {
		t.Fatal("transient snapshot does not read the old bytes")
	}
}

// TestSnapshotOverflow
//   - PO snapshot with a 1 MiB COW (2048 sectors, room for 253 data chunks): "16/2048 16"
//   - writing 2 MiB to the snapshot device fails (EIO) and the status becomes "Overflow"
//   - no table event fires for an overflow; reads of the snapshot still work
func TestSnapshotOverflow(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, mib, "PO", "")
	g := newGolden(t, "snapshot-PO")
	g.add("table", wantTable(t, c, s.snap.Name, snapLine(s.snapParams)))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("16/2048 16")))
	err := testutil.WriteDirect(t, s.snap.BlockPath(), 0, testutil.Pattern(0x44, 2*mib))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("overflowing write: %v, want EIO", err)
	}
	g.comment("after 2 MiB written to the snapshot")
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("Overflow")))
	if info, _ := c.Info(s.snap.Name); info.EventNr != 0 {
		t.Fatalf("event_nr %d after overflow, want 0", info.EventNr)
	}
	testutil.HashDirect(t, s.snap.BlockPath(), 4*mib, 4096) // must not fail
}

// TestSnapshotInvalid
//   - P snapshot with a 1 MiB COW; a Wait for its next event runs meanwhile
//   - 2 MiB written to the ORIGIN cannot be copied out: the snapshot is
//     invalidated ("Invalid"), the origin write itself succeeds
//   - the invalidation is a table event: Wait returns with event_nr 1
func TestSnapshotInvalid(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, mib, "P", "")
	g := newGolden(t, "snapshot-P-invalid")
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("16/2048 16")))

	type result struct {
		info dm.Info
		err  error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		info, err := c.Wait(ctx, s.snap.Name, 0)
		done <- result{info, err}
	}()
	time.Sleep(200 * time.Millisecond) // let Wait arm
	testutil.MustWriteDirect(t, s.base.BlockPath(), 0, testutil.Pattern(0x55, 2*mib))
	g.comment("after 2 MiB written to the origin")
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("Invalid")))
	r := <-done
	if r.err != nil || r.info.EventNr != 1 {
		t.Fatalf("Wait = %+v, %v; want event_nr 1", r.info, r.err)
	}
}

// TestSnapshotDiscardFeatures
//   - "P 8 2 discard_zeroes_cow discard_passdown_origin" and "P 8 1 discard_zeroes_cow" load and are reported back verbatim
//   - discard_passdown_origin alone is rejected (EINVAL)
func TestSnapshotDiscardFeatures(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, 16*mib, "P", "2 discard_zeroes_cow discard_passdown_origin")
	g := newGolden(t, "snapshot-discard")
	g.add("table", wantTable(t, c, s.snap.Name, snapLine(s.snapParams)))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("16/32768 16")))

	one := newSnapStack(t, c, 16*mib, "P", "1 discard_zeroes_cow")
	g.add("table", wantTable(t, c, one.snap.Name, snapLine(one.snapParams)))

	lo := scratch(t, 16*mib)
	_, err := c.CreateAndLoad(s.snap.Name+"-bad", "", []dm.TargetLine{
		snapLine(fmt.Sprintf("%v %v P 8 1 discard_passdown_origin", s.real.Dev, lo)),
	}, dm.LoadOptions{})
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("passdown without zeroes: %v", err)
	}
}

// usage parses "<allocated>/<total> <metadata>".
func usage(t *testing.T, params string) (allocated, metadata uint64) {
	t.Helper()
	var total uint64
	if n, _ := fmt.Sscanf(params, "%d/%d %d", &allocated, &total, &metadata); n != 3 {
		t.Fatalf("status %q is not a usage line", params)
	}
	return allocated, metadata
}

// TestSnapshotMerge
//   - P snapshot, 8 MiB written to the origin: "16464/32768 80"
//   - handover (vm.md pitfall 7): load "snapshot-merge <real> <cow> P 8" into
//     the origin's inactive slot; suspend the snapshot; suspend the origin;
//     resume the origin; resume the snapshot (nested WithSuspended)
//   - the origin's table is now snapshot-merge; status is polled (merges
//     raise no event) until allocated == metadata: "16/32768 16"
//   - the old snapshot reports "Invalid"; the origin reads the old bytes again
func TestSnapshotMerge(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, 16*mib, "P", "")
	g := newGolden(t, "snapshot-merge")
	testutil.MustWriteDirect(t, s.base.BlockPath(), 0, testutil.Pattern(0x66, 8*mib))
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("16464/32768 80")))

	merge := line(0, originSectors, "snapshot-merge", s.snapParams)
	if err := c.Load(s.base.Name, []dm.TargetLine{merge}, dm.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err := c.WithSuspended(ctx, s.snap.Name, dm.SuspendOptions{}, func() error {
		return c.WithSuspended(ctx, s.base.Name, dm.SuspendOptions{}, func() error { return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	g.add("table", wantTable(t, c, s.base.Name, merge))

	deadline := time.Now().Add(60 * time.Second)
	var seen []string
	for {
		st, info, err := c.Status(s.base.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 || st[0].Type != "snapshot-merge" {
			t.Fatalf("merge status %q", st)
		}
		if len(seen) == 0 || seen[len(seen)-1] != st[0].Params {
			seen = append(seen, st[0].Params)
			g.add("status", st)
		}
		if a, m := usage(t, st[0].Params); a == m {
			if st[0].Params != "16/32768 16" || info.EventNr != 0 {
				t.Fatalf("merge done at %q, event_nr %d; want \"16/32768 16\", 0", st[0].Params, info.EventNr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("merge did not finish: %q", seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("merge progress: %q", seen)
	g.comment("old snapshot after the handover")
	g.add("status", wantStatus(t, c, s.snap.Name, snapLine("Invalid")))
	if testutil.HashDirect(t, s.base.BlockPath(), 0, 8*mib) != testutil.Hash(s.old) {
		t.Fatal("origin does not read the pre-snapshot bytes after the merge")
	}
}
