package dm

import (
	"errors"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// TestBusyRetry: EBUSY is retried with doubling delays up to the cap and
// a bounded total; any other outcome ends the loop at once.
func TestBusyRetry(t *testing.T) {
	busy := opErr("remove", "vg-snap", sys.WrapErr(sys.EBUSY))
	var slept []time.Duration
	sleep := func(d time.Duration) { slept = append(slept, d) }

	calls := 0
	err := removeRetry.do(sleep, func() error {
		if calls++; calls < 3 {
			return busy
		}
		return nil
	})
	if err != nil || calls != 3 || len(slept) != 2 || slept[0] != 10*time.Millisecond || slept[1] != 20*time.Millisecond {
		t.Fatalf("busy twice: err %v, %d calls, slept %v", err, calls, slept)
	}

	slept, calls = nil, 0
	err = removeRetry.do(sleep, func() error { calls++; return busy })
	var total time.Duration
	for _, d := range slept {
		total += d
	}
	if !errors.Is(err, ErrBusy) || calls != removeRetry.Tries || total > 3*time.Second || total < time.Second {
		t.Fatalf("always busy: err %v, %d calls, slept %v (%s)", err, calls, slept, total)
	}
	for i := 1; i < len(slept); i++ {
		if slept[i] < slept[i-1] || slept[i] > removeRetry.Max {
			t.Fatalf("delays not a capped backoff: %v", slept)
		}
	}

	slept, calls = nil, 0
	gone := opErr("remove", "vg-snap", sys.WrapErr(sys.ENXIO))
	if err := removeRetry.do(sleep, func() error { calls++; return gone }); !errors.Is(err, ErrNotFound) || calls != 1 || len(slept) != 0 {
		t.Fatalf("not found: err %v, %d calls", err, calls)
	}
	one := busyRetry{Tries: 1}
	calls = 0
	if err := one.do(sleep, func() error { calls++; return busy }); !errors.Is(err, ErrBusy) || calls != 1 {
		t.Fatalf("NoRetry policy: %v, %d calls", err, calls)
	}
}
