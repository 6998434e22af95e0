package dm

import (
	"errors"
	"os"
	"syscall"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// Sentinels of the kernel half. Each is paired with an errno: an error
// from a [Client] method answers errors.Is both for the sentinel and for
// the errno itself (errors.Is(err, ErrBusy) and errors.Is(err, unix.EBUSY)),
// so callers above dm never need golang.org/x/sys/unix.
var (
	// ErrNotFound: no such device (ENXIO) or no such target type.
	ErrNotFound = errors.New("device not found")
	// ErrBusy: the device is open or otherwise in use (EBUSY).
	ErrBusy = errors.New("device busy")
	// ErrExist: a device with that name or uuid exists. The kernel
	// reports this as EBUSY from create, rename and set-uuid (dm-ioctl.c
	// dm_hash_insert, dm_hash_rename), so for those operations ErrExist
	// matches EBUSY as well as EEXIST (and ErrBusy still matches too).
	ErrExist = errors.New("device already exists")
	// ErrPermission: the caller lacks CAP_SYS_ADMIN (EPERM, EACCES).
	ErrPermission = errors.New("permission denied")
	// ErrNotSupported: the kernel or OS lacks a feature (see
	// [UnsupportedFeatureError]).
	ErrNotSupported = errors.New("not supported")
	// ErrNoDeviceMapper: /dev/mapper/control does not exist, i.e. the
	// dm-mod module is not loaded or the OS has no device-mapper.
	ErrNoDeviceMapper = errors.New("device-mapper not available (no /dev/mapper/control)")
)

// sentinelErrnos pairs each sentinel with the errnos that imply it.
var sentinelErrnos = map[error][]syscall.Errno{
	ErrNotFound:       {sys.ENXIO},
	ErrBusy:           {sys.EBUSY},
	ErrExist:          {sys.EEXIST},
	ErrPermission:     {sys.EPERM, sys.EACCES},
	ErrNotSupported:   {sys.ENOTTY, sys.ENOSYS},
	ErrNoDeviceMapper: {},
}

// OpError is a failed device-mapper operation: the operation ("create",
// "suspend", "load", ...), the device name (or a path for "open"), and the
// cause, usually an *os.SyscallError wrapping the errno. It is shaped like
// os.PathError and prints as "dm suspend vg0-base: device or resource
// busy".
type OpError struct {
	Op     string
	Device string
	Err    error
}

func (e *OpError) Error() string {
	msg := "dm " + e.Op
	if e.Device != "" {
		msg += " " + e.Device
	}
	cause := e.Err
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err
	}
	if cause == nil {
		return msg
	}
	return msg + ": " + cause.Error()
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel paired with the errno inside
// e (errno matching itself goes through Unwrap).
func (e *OpError) Is(target error) bool {
	errnos, ok := sentinelErrnos[target]
	if !ok {
		return false
	}
	switch target {
	case ErrNoDeviceMapper:
		// No node (ENOENT), or a node whose driver is not loaded: a
		// /dev/mapper/control left behind by lvm or dmsetup on a host
		// without dm-mod opens with ENODEV (ENXIO on some kernels).
		return e.Op == "open" && (errors.Is(e.Err, sys.ENOENT) || errors.Is(e.Err, sys.ENODEV) || errors.Is(e.Err, sys.ENXIO))
	case ErrExist:
		switch e.Op {
		case "create", "rename", "set-uuid":
			if errors.Is(e.Err, sys.EBUSY) {
				return true
			}
		}
	case ErrNotSupported:
		if errors.Is(e.Err, errors.ErrUnsupported) {
			return true
		}
	}
	for _, errno := range errnos {
		if errors.Is(e.Err, errno) {
			return true
		}
	}
	return false
}

// UnsupportedFeatureError reports a kernel feature dmsnap needs but the
// running kernel lacks. It answers errors.Is(err, ErrNotSupported).
type UnsupportedFeatureError struct {
	// Name of the feature, e.g. "DM_GET_TARGET_VERSION".
	Name string
	// MinKernel is the first version providing it, e.g. "dm ioctl 4.41.0".
	MinKernel string
}

func (e *UnsupportedFeatureError) Error() string {
	return e.Name + " not supported (requires " + e.MinKernel + ")"
}

// Is reports whether target is ErrNotSupported.
func (e *UnsupportedFeatureError) Is(target error) bool { return target == ErrNotSupported }

// Unavailable reports whether err means device-mapper cannot be used at
// all here: no /dev/mapper/control ([ErrNoDeviceMapper]), no privileges
// ([ErrPermission]) or an OS without device-mapper ([ErrNotSupported]
// from [Open]). A CLI prints a one-line explanation for these.
func Unavailable(err error) bool {
	return errors.Is(err, ErrNoDeviceMapper) || errors.Is(err, ErrPermission) || errors.Is(err, errors.ErrUnsupported)
}

// opErr wraps err from the ioctl of op on device into an *OpError. Errors
// that carry an errno get an os.SyscallError naming the ioctl.
func opErr(op, device string, err error) error {
	if err == nil {
		return nil
	}
	if sys.IsErrno(err) {
		err = os.NewSyscallError("ioctl", err)
	}
	return &OpError{Op: op, Device: device, Err: err}
}
