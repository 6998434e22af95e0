//go:build !linux

package sys

import "errors"

// AllocAligned is not supported outside Linux.
func AllocAligned(int) ([]byte, error) { return nil, errors.ErrUnsupported }

// FreeAligned is not supported outside Linux.
func FreeAligned([]byte) error { return errors.ErrUnsupported }
