package dm

import (
	"context"
	"errors"
)

// WithSuspended is the one guarded way to change a live device: it
// suspends name, runs fn, and always resumes, in a defer, even when fn
// fails or panics or ctx is cancelled meanwhile. A resume failure is joined into the returned
// error, never dropped. If name has an inactive table loaded, the resume
// swaps it in; that is how a table change takes effect.
//
// While fn runs, I/O to the device, and to every device stacked above it,
// blocks. fn must not do such I/O (it would deadlock) and should do no
// slow work: do allocation, parsing and journalling before calling
// WithSuspended. Suspending further devices inside fn (nested
// WithSuspended) is fine; they resume in reverse order.
//
// The process's memory is locked (see [LockMemory]) from before the
// suspend to after the resume. ctx is checked before suspending; fn gets
// the same ctx.
func (c *Client) WithSuspended(ctx context.Context, name string, opts SuspendOptions, fn func() error) (err error) {
	if err := ctx.Err(); err != nil {
		return &OpError{Op: "suspend", Device: name, Err: err}
	}
	// The memory is locked before the suspend and unlocked after the
	// resume; without the lock we go on regardless (see LockMemory).
	unlock, _ := LockMemory()
	defer unlock()
	if err := c.Suspend(name, opts); err != nil {
		return err
	}
	defer func() {
		// The resume ioctl takes no context and cannot be cancelled, so
		// it runs whatever state ctx is in.
		if _, rerr := c.Resume(name); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn()
}
