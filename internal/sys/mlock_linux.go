package sys

import "golang.org/x/sys/unix"

// Mlockall locks the process's current and future pages in memory
// (mlockall(2) with MCL_CURRENT|MCL_FUTURE), as LVM2 does around a
// suspend: a page fault that needs I/O to a suspended device would
// block forever.
func Mlockall() error {
	return WrapErr(unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE))
}

// Munlockall undoes [Mlockall] (munlockall(2)).
func Munlockall() error { return WrapErr(unix.Munlockall()) }
