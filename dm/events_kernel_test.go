//go:build linux

package dm_test

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// quietFor fails if w signals within d; it returns the wake-up count.
func quietFor(t *testing.T, w *dm.EventWatcher, d time.Duration, what string) uint64 {
	t.Helper()
	select {
	case <-w.C():
		t.Fatalf("%s: unexpected event signal (wake-ups %d)", what, w.Wakeups())
	case <-time.After(d):
	}
	return w.Wakeups()
}

// settle consumes signals until w has been quiet for d (the second
// global event of an ioctl may or may not coalesce with the first,
// depending on when the watcher re-arms), and returns the wake-up count.
func settle(t *testing.T, w *dm.EventWatcher, d time.Duration, what string) uint64 {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-w.C():
			if !ok {
				t.Fatalf("%s: watcher stopped: %v", what, w.Err())
			}
		case <-time.After(d):
			return w.Wakeups()
		case <-deadline:
			t.Fatalf("%s: still signalling after 5 s (wake-ups %d)", what, w.Wakeups())
		}
	}
}

// wantWake waits up to 5 s for a signal and then for d of quiet, and
// checks that the watcher woke 1 to most times.
func wantWake(t *testing.T, w *dm.EventWatcher, before, most uint64, d time.Duration, what string) uint64 {
	t.Helper()
	start := time.Now()
	select {
	case _, ok := <-w.C():
		if !ok {
			t.Fatalf("%s: watcher stopped: %v", what, w.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no event signal in 5 s", what)
	}
	latency := time.Since(start)
	n := settle(t, w, d, what)
	if n < before+1 || n > before+most {
		t.Errorf("%s: %d wake-ups, want 1 to %d", what, n-before, most)
	}
	t.Logf("%s: signalled after %s, %d wake-ups", what, latency.Round(time.Microsecond), n-before)
	return n
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestEventWatcher
//   - a P snapshot with a 1 MiB COW; a watcher started afterwards stays
//     quiet while nothing happens
//   - 2 MiB written to the origin invalidate the snapshot: exactly one
//     wake-up, and the signal comes once
//   - renaming the snapshot and renaming it back: one or two wake-ups
//     each, since a rename raises two global events (the device's table
//     event in dm_hash_rename, and the ioctl's IOCTL_FLAGS_ISSUE_GLOBAL_EVENT
//     in ctl_ioctl), which coalesce when they come before the re-arm
//   - Close returns within 100 ms, closes C, leaves no goroutine and no
//     descriptor behind; a second Close returns the same nil
func TestEventWatcher(t *testing.T) {
	c := testutil.Client(t)
	s := newSnapStack(t, c, mib, "P", "")
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	w, err := c.WatchEvents()
	if err != nil {
		t.Fatal(err)
	}
	n := quietFor(t, w, 300*time.Millisecond, "idle")
	if n != 0 {
		t.Fatalf("%d wake-ups while idle", n)
	}

	testutil.MustWriteDirect(t, s.base.BlockPath(), 0, testutil.Pattern(0x55, 2*mib))
	n = wantWake(t, w, n, 1, 300*time.Millisecond, "invalidation")
	wantStatus(t, c, s.snap.Name, snapLine("Invalid"))

	renamed := testutil.UniqueName(t)
	if err := c.Rename(s.snap.Name, renamed); err != nil {
		t.Fatal(err)
	}
	n = wantWake(t, w, n, 2, 300*time.Millisecond, "rename")
	if err := c.Rename(renamed, s.snap.Name); err != nil {
		t.Fatal(err)
	}
	wantWake(t, w, n, 2, 300*time.Millisecond, "rename back")

	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Close took %s", d)
	}
	if _, ok := <-w.C(); ok {
		t.Error("C is open after Close")
	}
	if err := w.Close(); err != nil || w.Err() != nil {
		t.Errorf("second Close = %v, Err = %v", err, w.Err())
	}
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Errorf("%d goroutines after Close, %d before WatchEvents", g, goroutines)
	}
	if f := openFDs(t); f != fds {
		t.Errorf("%d descriptors after Close, %d before WatchEvents", f, fds)
	}
}

// TestEventWatcherCloseIdle: a watcher closed without any event, and two
// watchers at once, each see their own lifecycle.
func TestEventWatcherCloseIdle(t *testing.T) {
	c := testutil.Client(t)
	a, err := c.WatchEvents()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.WatchEvents()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.C():
		t.Fatal("closing a watcher signalled another")
	case <-time.After(100 * time.Millisecond):
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
