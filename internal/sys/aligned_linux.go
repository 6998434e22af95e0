package sys

import "golang.org/x/sys/unix"

// AllocAligned returns n bytes of page-aligned anonymous memory, as
// O_DIRECT needs for its buffers; free it with [FreeAligned]. Go's heap
// gives no alignment guarantee for a slice.
func AllocAligned(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	return b, WrapErr(err)
}

// FreeAligned releases memory from [AllocAligned].
func FreeAligned(b []byte) error { return WrapErr(unix.Munmap(b)) }
