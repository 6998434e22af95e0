package dm

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// EventWatcher reports that some device-mapper event happened, on any
// device: a snapshot invalidated, a device renamed or removed. It owns
// one control descriptor armed with DM_DEV_ARM_POLL, and one goroutine
// that sleeps in the runtime's netpoller until the kernel's global event
// counter moves, with no periodic wake-up. Create it with
// [Client.WatchEvents] and Close it when done.
//
// Signals are hints: besides table events (drivers/md/dm.c
// event_callback), the kernel raises a global event after every create,
// remove, rename, suspend and resume ioctl (dm-ioctl.c ctl_ioctl,
// IOCTL_FLAGS_ISSUE_GLOBAL_EVENT) and table swap (dm.c dm_swap_table), so
// a receiver re-reads what it watches and compares. Merge progress, merge
// completion and PO overflow raise no event
// (drivers/md/dm-snap.c sets those states without dm_table_event); poll
// [Client.Status] for them.
type EventWatcher struct {
	ctl     *sys.Control
	c       chan struct{}
	done    chan struct{}
	err     error // set before done closes
	wakeups atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// WatchEvents opens a second control descriptor, arms it, and starts the
// watcher's goroutine. Events from the moment WatchEvents returns on are
// reported: a caller that reads the devices it cares about after
// WatchEvents and again after each signal on [EventWatcher.C] misses none.
//
// Errors: [ErrNotSupported] (an *[UnsupportedFeatureError]) before ioctl
// interface 4.36 (Linux 4.13), where DM_DEV_ARM_POLL is missing, or when
// the runtime cannot poll the control node; the errors of [Open]
// otherwise.
func (c *Client) WatchEvents() (*EventWatcher, error) {
	if !c.version.AtLeast(v4_36) {
		return nil, &OpError{Op: "watch events", Err: &UnsupportedFeatureError{Name: "DM_DEV_ARM_POLL", MinKernel: "dm ioctl " + v4_36.String()}}
	}
	ctl, err := sys.OpenControl()
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = os.NewSyscallError("open", pe.Err)
		}
		return nil, &OpError{Op: "watch events", Device: sys.ControlPath, Err: err}
	}
	// A descriptor outside the netpoller (os.OpenFile could not register
	// it with epoll) cannot be waited on without a timeout.
	if err := ctl.SetEventDeadline(time.Time{}); err != nil {
		return nil, errors.Join(&OpError{Op: "watch events", Device: sys.ControlPath,
			Err: &UnsupportedFeatureError{Name: "poll(2) on " + sys.ControlPath + " (" + err.Error() + ")", MinKernel: "dm ioctl " + v4_36.String()}}, ctl.Close())
	}
	if err := armPoll(ctl); err != nil {
		return nil, errors.Join(err, ctl.Close())
	}
	w := &EventWatcher{ctl: ctl, c: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// armPoll records the current global event counter in ctl: poll(2) then
// reports POLLIN until the next arm once any DM event happened after it
// (drivers/md/dm-ioctl.c dev_arm_poll, dm_poll).
func armPoll(ctl *sys.Control) error {
	if _, err := ctl.Do(&sys.DMRequest{Cmd: sys.DM_DEV_ARM_POLL_CMD, Version: v4_36.triple()}); err != nil {
		return opErr("arm poll", "", err)
	}
	return nil
}

// run waits for events until Close. It re-arms before it signals: an
// event after the re-arm wakes the next wait, and one before it happened
// before the signal, so the receiver's re-read sees it.
func (w *EventWatcher) run() {
	defer close(w.done)
	defer close(w.c)
	for {
		if err := w.ctl.AwaitEvent(); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				w.err = opErr("wait for events", "", err)
			}
			return
		}
		w.wakeups.Add(1)
		if err := armPoll(w.ctl); err != nil {
			w.err = err
			return
		}
		select {
		case w.c <- struct{}{}:
		default: // one signal is pending already: coalesce
		}
	}
}

// C returns the channel that receives a value after device-mapper events.
// Signals coalesce: one value may stand for many events. The channel is
// closed when the watcher stops, after Close or on an error that
// [EventWatcher.Err] then returns.
func (w *EventWatcher) C() <-chan struct{} { return w.c }

// Err returns the error that stopped the watcher, or nil while it runs
// and after Close.
func (w *EventWatcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Wakeups returns how many times the watcher's goroutine woke up for
// events so far.
func (w *EventWatcher) Wakeups() uint64 { return w.wakeups.Load() }

// Close stops the goroutine, waits for it and closes the descriptor. It
// is idempotent and safe to call concurrently with receives on C. The
// goroutine is interrupted with a past deadline: closing the descriptor
// alone would not wake a parked poll.
func (w *EventWatcher) Close() error {
	w.closeOnce.Do(func() {
		err := w.ctl.SetEventDeadline(time.Unix(1, 0))
		<-w.done
		w.closeErr = errors.Join(err, w.ctl.Close())
	})
	return w.closeErr
}
