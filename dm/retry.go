package dm

import (
	"context"
	"errors"
	"time"
)

// busyRetry is how [Client.Remove] retries EBUSY. A device that is not
// mounted is still opened for a moment by udev's blkid or a monitoring
// tool after every change event; LVM2 retries such removes too
// (libdm-iface.c, DM_IOCTL_RETRIES=25 at DM_RETRY_USLEEP_DELAY=200ms).
// We back off from 10 ms to 320 ms instead, about 2 s in all, so that a
// brief open costs milliseconds and a real holder (a mount) fails soon.
type busyRetry struct {
	// Tries is the number of attempts, the first included.
	Tries int
	// First is the delay after the first failure; it doubles up to Max.
	First, Max time.Duration
}

var removeRetry = busyRetry{Tries: 11, First: 10 * time.Millisecond, Max: 320 * time.Millisecond}

// delay returns the pause before attempt n (n >= 1 is a retry).
func (b busyRetry) delay(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// do runs fn until it returns anything but [ErrBusy] or the attempts run
// out, sleeping with sleep in between. It takes no context on purpose:
// removes are cleanup and run after cancellation too; the bound keeps it
// short.
func (b busyRetry) do(sleep func(time.Duration), fn func() error) error {
	var err error
	for n := 0; n < max(b.Tries, 1); n++ {
		if n > 0 {
			sleep(b.delay(n))
		}
		if err = fn(); !errors.Is(err, ErrBusy) {
			return err
		}
	}
	return err
}

// RetryBusy runs fn until it returns anything but [ErrBusy], at most
// about 2 s with the backoff of [Client.Remove], and stops waiting when
// ctx is done (returning fn's last error). It is for callers that must
// undo and redo work around each attempt, such as a remove inside a
// suspend window, which should not stay suspended while it waits.
func RetryBusy(ctx context.Context, fn func() error) error {
	sleep := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	var err error
	for n := 0; n < removeRetry.Tries; n++ {
		if n > 0 {
			if sleep(removeRetry.delay(n)); ctx.Err() != nil {
				return err
			}
		}
		if err = fn(); !errors.Is(err, ErrBusy) {
			return err
		}
	}
	return err
}
