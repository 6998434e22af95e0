//go:build !linux

package sys

import (
	"errors"
	"os"
)

// MknodBlock returns errors.ErrUnsupported outside Linux.
func MknodBlock(string, os.FileMode, uint32, uint32) error { return errors.ErrUnsupported }

// BlockDevNum reports false outside Linux.
func BlockDevNum(os.FileInfo) (major, minor uint32, ok bool) { return 0, 0, false }
