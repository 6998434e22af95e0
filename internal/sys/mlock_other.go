//go:build !linux

package sys

import "errors"

// Mlockall returns errors.ErrUnsupported outside Linux.
func Mlockall() error { return errors.ErrUnsupported }

// Munlockall returns errors.ErrUnsupported outside Linux.
func Munlockall() error { return errors.ErrUnsupported }
