package sys

import (
	"time"

	"golang.org/x/sys/unix"
)

// AwaitEvent blocks until poll(2) on the control descriptor reports
// POLLIN, i.e. until the global DM event counter differs from the value
// the last DM_DEV_ARM_POLL on this descriptor recorded
// (drivers/md/dm-ioctl.c dm_poll). Unlike [Control.WaitEvent] it has no
// timeout and holds no OS thread: os.OpenFile registered the descriptor
// with the Go runtime's netpoller (the control node implements poll), so
// the goroutine parks there. Every dm_issue_global_event wakes the
// kernel's dm_global_eventq, which the netpoller's edge-triggered epoll
// watch sees.
//
// It returns an error wrapping os.ErrDeadlineExceeded once the deadline
// set with [Control.SetEventDeadline] passes, which is how another
// goroutine interrupts it; closing the Control does not wake a blocked
// poll(2), a deadline does.
func (c *Control) AwaitEvent() error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				perr = WrapErr(err)
				return true
			}
			return n > 0 && fds[0].Revents&unix.POLLIN != 0
		}
	})
	if err != nil {
		return err
	}
	return perr
}

// SetEventDeadline sets the time after which [Control.AwaitEvent] returns
// os.ErrDeadlineExceeded; the zero time removes it. A deadline in the past
// interrupts a blocked AwaitEvent at once. It returns os.ErrNoDeadline if
// the descriptor is not in the netpoller.
func (c *Control) SetEventDeadline(t time.Time) error {
	return c.f.SetReadDeadline(t)
}
