package sys

import (
	"errors"
	"syscall"
)

// Errno values the packages above need to pair with their sentinels. They
// are the plain syscall.Errno values, so errors.Is(err, sys.EBUSY) and
// errors.Is(err, unix.EBUSY) are the same test.
const (
	EACCES = syscall.EACCES
	EBUSY  = syscall.EBUSY
	EEXIST = syscall.EEXIST
	EINVAL = syscall.EINVAL
	ENODEV = syscall.ENODEV
	ENOENT = syscall.ENOENT
	ENOSYS = syscall.ENOSYS
	ENOTTY = syscall.ENOTTY
	ENXIO  = syscall.ENXIO
	EPERM  = syscall.EPERM
)

// errnoError carries an errno from a system call. It is unexported and does
// not unwrap, so the only way to test it is errors.Is(err, unix.EXXX): a
// caller cannot compare it with == by accident.
type errnoError struct {
	errno syscall.Errno
}

func (e *errnoError) Error() string { return e.errno.Error() }

// Is reports whether target is the same errno. It also answers the
// portable fs sentinels (fs.ErrNotExist, fs.ErrPermission, ...) the way
// syscall.Errno does.
func (e *errnoError) Is(target error) bool {
	if t, ok := target.(syscall.Errno); ok {
		return t == e.errno
	}
	return e.errno.Is(target)
}

// wrapErrno returns nil for 0 and an errnoError otherwise.
func wrapErrno(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return &errnoError{errno: errno}
}

// WrapErr converts an error from the syscall or unix packages into the
// wrapped form; errors that carry no errno are returned unchanged.
func WrapErr(err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return wrapErrno(errno)
	}
	return err
}

// IsErrno reports whether err carries an errno returned by a system call
// (as opposed to a validation or decoding error).
func IsErrno(err error) bool {
	var e *errnoError
	return errors.As(err, &e)
}
