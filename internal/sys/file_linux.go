//go:build linux

package sys

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// PunchHole deallocates [off, off+n) of f (fallocate PUNCH_HOLE |
// KEEP_SIZE). On a block device the kernel (block/fops.c
// blkdev_fallocate) turns it into REQ_OP_WRITE_ZEROES with unmap, without
// a fallback: a device without it answers EOPNOTSUPP, reported as
// supported == false.
func PunchHole(f *os.File, off, n int64) (supported bool, err error) {
	err = withFd(f, func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	if err != nil {
		return true, os.NewSyscallError("fallocate", err)
	}
	return true, nil
}
