//go:build !linux

package sys

import (
	"errors"
	"time"
)

// AwaitEvent is not supported outside Linux.
func (c *Control) AwaitEvent() error { return errors.ErrUnsupported }

// SetEventDeadline is not supported outside Linux.
func (c *Control) SetEventDeadline(time.Time) error { return errors.ErrUnsupported }
