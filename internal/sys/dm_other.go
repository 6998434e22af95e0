//go:build !linux

package sys

import (
	"errors"
	"time"
)

// ControlPath is the device-mapper control node.
const ControlPath = "/dev/mapper/control"

// Control is the device-mapper control descriptor; device-mapper only
// exists on Linux.
type Control struct{}

// OpenControl returns errors.ErrUnsupported outside Linux.
func OpenControl() (*Control, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (c *Control) Close() error { return nil }

// Do returns errors.ErrUnsupported.
func (c *Control) Do(*DMRequest) (*DMReply, error) { return nil, errors.ErrUnsupported }

// WaitEvent returns errors.ErrUnsupported.
func (c *Control) WaitEvent(time.Duration) (bool, error) { return false, errors.ErrUnsupported }

// EncodeTargetSpecs returns errors.ErrUnsupported.
func EncodeTargetSpecs([]TargetSpec) ([]byte, error) { return nil, errors.ErrUnsupported }
