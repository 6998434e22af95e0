//go:build !linux

package sys

import (
	"errors"
	"os"
)

// Loop flags from <linux/loop.h>.
const (
	LO_FLAGS_READ_ONLY = 1
	LO_FLAGS_AUTOCLEAR = 4
	LO_FLAGS_PARTSCAN  = 8
	LO_FLAGS_DIRECT_IO = 16
)

// LoopControlPath is the loop control node.
const LoopControlPath = "/dev/loop-control"

// OpenFlagsCloexec is 0 outside Linux (Go sets close-on-exec itself).
const OpenFlagsCloexec = 0

// OpenFlagsDirect is 0 outside Linux.
const OpenFlagsDirect = 0

// LoopCtlGetFree returns errors.ErrUnsupported outside Linux.
func LoopCtlGetFree(*os.File) (int, error) { return 0, errors.ErrUnsupported }

// LoopConfigure returns errors.ErrUnsupported outside Linux.
func LoopConfigure(_, _ *os.File, _ uint32) error { return errors.ErrUnsupported }

// LoopSetFd returns errors.ErrUnsupported outside Linux.
func LoopSetFd(_, _ *os.File) error { return errors.ErrUnsupported }

// LoopSetStatus64 returns errors.ErrUnsupported outside Linux.
func LoopSetStatus64(*os.File, uint32) error { return errors.ErrUnsupported }

// LoopSetDirectIO returns errors.ErrUnsupported outside Linux.
func LoopSetDirectIO(*os.File, bool) error { return errors.ErrUnsupported }

// LoopGetFlags returns errors.ErrUnsupported outside Linux.
func LoopGetFlags(*os.File) (uint32, error) { return 0, errors.ErrUnsupported }

// LoopClrFd returns errors.ErrUnsupported outside Linux.
func LoopClrFd(*os.File) error { return errors.ErrUnsupported }
