package sys

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// MknodBlock creates a block device node at path for major:minor with the
// given permission bits (umask applies).
func MknodBlock(path string, perm os.FileMode, major, minor uint32) error {
	err := unix.Mknod(path, unix.S_IFBLK|uint32(perm.Perm()), int(unix.Mkdev(major, minor)))
	if err != nil {
		return &os.PathError{Op: "mknod", Path: path, Err: WrapErr(err)}
	}
	return nil
}

// BlockDevNum returns the device number of the block device node fi
// describes, and false if fi is not a block device.
func BlockDevNum(fi os.FileInfo) (major, minor uint32, ok bool) {
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, false
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), true //nolint:unconvert // Rdev is uint32 on some arches
}
