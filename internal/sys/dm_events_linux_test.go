package sys

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestAwaitEventPipe runs AwaitEvent on a pipe, which the netpoller
// handles like the control node: it parks until the pipe is readable, and
// a past deadline set from another goroutine interrupts it at once.
func TestAwaitEventPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := &Control{f: r}
	defer c.Close()

	done := make(chan error, 1)
	go func() { done <- c.AwaitEvent() }()
	select {
	case err := <-done:
		t.Fatalf("AwaitEvent returned %v on an idle pipe", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AwaitEvent did not return on a readable pipe")
	}

	// Drain the byte; the next AwaitEvent parks until the deadline.
	if _, err := r.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	go func() { done <- c.AwaitEvent() }()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := c.SetEventDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("AwaitEvent after the deadline = %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline did not interrupt AwaitEvent")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("interrupt took %s", d)
	}
	// The deadline is sticky: a later call returns at once.
	if err := c.AwaitEvent(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("AwaitEvent with a past deadline = %v", err)
	}
}
