package dm

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/dmsnap/dmsnap/internal/sys"
)

func TestOpErrorSentinels(t *testing.T) {
	for _, c := range []struct {
		errno    syscall.Errno
		sentinel error
		text     string
	}{
		{sys.EBUSY, ErrBusy, "dm suspend vg0-base: device or resource busy"},
		{sys.ENXIO, ErrNotFound, "dm suspend vg0-base: no such device or address"},
		{sys.EEXIST, ErrExist, "dm suspend vg0-base: file exists"},
		{sys.EPERM, ErrPermission, "dm suspend vg0-base: operation not permitted"},
		{sys.EACCES, ErrPermission, "dm suspend vg0-base: permission denied"},
		{sys.ENOTTY, ErrNotSupported, "dm suspend vg0-base: inappropriate ioctl for device"},
	} {
		err := opErr("suspend", "vg0-base", sys.WrapErr(c.errno))
		if !errors.Is(err, c.sentinel) {
			t.Errorf("%v: not errors.Is %v", c.errno, c.sentinel)
		}
		if !errors.Is(err, c.errno) {
			t.Errorf("%v: not errors.Is the errno", c.errno)
		}
		if got := err.Error(); got != c.text {
			t.Errorf("Error() = %q, want %q", got, c.text)
		}
		var se *os.SyscallError
		if !errors.As(err, &se) || se.Syscall != "ioctl" {
			t.Errorf("%v: no os.SyscallError inside", c.errno)
		}
		for _, other := range []error{ErrBusy, ErrNotFound, ErrExist, ErrPermission, ErrNotSupported, ErrNoDeviceMapper} {
			if other != c.sentinel && errors.Is(err, other) {
				t.Errorf("%v also matches %v", c.errno, other)
			}
		}
	}
	// A non-errno failure carries no SyscallError and matches no sentinel.
	err := opErr("status", "x", sys.ErrMalformed)
	if errors.Is(err, ErrBusy) || !errors.Is(err, sys.ErrMalformed) {
		t.Fatalf("decode error: %v", err)
	}
	if opErr("x", "y", nil) != nil {
		t.Fatal("opErr(nil) != nil")
	}
}

func TestOpenErrorsAreUnavailable(t *testing.T) {
	noDM := &OpError{Op: "open", Device: sys.ControlPath, Err: os.NewSyscallError("open", sys.WrapErr(sys.ENOENT))}
	if !errors.Is(noDM, ErrNoDeviceMapper) || !Unavailable(noDM) || !errors.Is(noDM, fs.ErrNotExist) {
		t.Fatal("ENOENT on open is not ErrNoDeviceMapper")
	}
	if got, want := noDM.Error(), "dm open /dev/mapper/control: no such file or directory"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	for _, errno := range []error{sys.ENODEV, sys.ENXIO} {
		stale := &OpError{Op: "open", Device: sys.ControlPath, Err: os.NewSyscallError("open", sys.WrapErr(errno))}
		if !errors.Is(stale, ErrNoDeviceMapper) || !Unavailable(stale) {
			t.Fatalf("%v on open (control node without dm-mod) is not ErrNoDeviceMapper", errno)
		}
	}
	perm := &OpError{Op: "open", Device: sys.ControlPath, Err: os.NewSyscallError("open", sys.WrapErr(sys.EACCES))}
	if !errors.Is(perm, ErrPermission) || !Unavailable(perm) || errors.Is(perm, ErrNoDeviceMapper) {
		t.Fatal("EACCES on open is not ErrPermission")
	}
	// ENXIO from an ioctl is a missing device, not a missing subsystem.
	if Unavailable(opErr("info", "x", sys.WrapErr(sys.ENXIO))) {
		t.Fatal("ENXIO counted as unavailable")
	}
	unsupported := &UnsupportedFeatureError{Name: "DM_GET_TARGET_VERSION", MinKernel: "dm ioctl 4.41.0"}
	if !errors.Is(&OpError{Op: "target-version", Err: unsupported}, ErrNotSupported) {
		t.Fatal("UnsupportedFeatureError is not ErrNotSupported")
	}
}

// TestOpenWithoutDeviceMapper runs on hosts whose kernel lacks
// device-mapper (like the development host): Open must say so.
func TestOpenWithoutDeviceMapper(t *testing.T) {
	if _, err := os.Stat(sys.ControlPath); err == nil {
		t.Skip("device-mapper present")
	}
	c, err := Open()
	if err == nil {
		c.Close()
		t.Fatal("Open succeeded without /dev/mapper/control")
	}
	if !errors.Is(err, ErrNoDeviceMapper) || !Unavailable(err) {
		t.Fatalf("Open: %v, want ErrNoDeviceMapper", err)
	}
}

func TestInfoFromFlags(t *testing.T) {
	r := &sys.DMReply{
		Name: "n", UUID: "u", Dev: sys.HugeEncodeDev(254, 3), OpenCount: 2, EventNr: 5, TargetCount: 1,
		Flags: sys.DM_SUSPEND_FLAG | sys.DM_ACTIVE_PRESENT_FLAG | sys.DM_INACTIVE_PRESENT_FLAG | sys.DM_DEFERRED_REMOVE,
	}
	got := infoFrom(r)
	want := Info{Name: "n", UUID: "u", Dev: DevNum{254, 3}, OpenCount: 2, EventNr: 5, TargetCount: 1,
		Suspended: true, ActivePresent: true, InactivePresent: true, DeferredRemove: true}
	if got != want {
		t.Fatalf("infoFrom = %+v, want %+v", got, want)
	}
	if p := got.BlockPath(); p != "/dev/dm-3" {
		t.Fatalf("BlockPath = %s", p)
	}
}

func TestVersion(t *testing.T) {
	v := Version{4, 47, 0}
	for _, c := range []struct {
		o    Version
		want bool
	}{{v4_0, true}, {v4_41, true}, {Version{4, 47, 0}, true}, {Version{4, 47, 1}, false}, {Version{4, 48, 0}, false}, {Version{5, 0, 0}, false}} {
		if got := v.AtLeast(c.o); got != c.want {
			t.Errorf("%v.AtLeast(%v) = %v", v, c.o, got)
		}
	}
	if v.String() != "4.47.0" {
		t.Fatal(v.String())
	}
}

func TestNodeNames(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "control", "a/b"} {
		if checkNodeName(bad) == nil {
			t.Errorf("checkNodeName(%q) accepted", bad)
		}
	}
	if DevicePath("vg0-base") != "/dev/mapper/vg0-base" {
		t.Fatal(DevicePath("vg0-base"))
	}
}

func TestExistIsEBUSYOnCreate(t *testing.T) {
	busy := sys.WrapErr(sys.EBUSY)
	if !errors.Is(opErr("create", "x", busy), ErrExist) || !errors.Is(opErr("rename", "x", busy), ErrExist) {
		t.Fatal("EBUSY from create/rename is not ErrExist")
	}
	if errors.Is(opErr("remove", "x", busy), ErrExist) {
		t.Fatal("EBUSY from remove is ErrExist")
	}
}
