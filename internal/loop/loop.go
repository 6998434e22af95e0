package loop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// Options select how a backing file is attached.
type Options struct {
	// ReadOnly attaches read-only (the backing file is opened O_RDONLY).
	ReadOnly bool
	// AutoClear makes the kernel detach the device at its last close.
	AutoClear bool
	// DirectIO makes the loop driver bypass the page cache of the backing
	// file. The backing file must allow O_DIRECT (not tmpfs).
	DirectIO bool
}

// getFreeRetries bounds the LOOP_CTL_GET_FREE / bind race: another process
// may bind the free device between the two calls, which we see as EBUSY.
const getFreeRetries = 16

// Device is an attached loop device. Close detaches it.
type Device struct {
	path         string
	major, minor uint32
	f            *os.File

	closeOnce sync.Once
	closeErr  error
}

// Attach binds the file at backing to a free loop device, using
// LOOP_CONFIGURE and falling back to LOOP_SET_FD + LOOP_SET_STATUS64 on
// kernels without it (EINVAL or ENOTTY). It retries a bounded number of
// times when another process takes the free device first (EBUSY).
func Attach(backing string, opts Options) (*Device, error) {
	mode := os.O_RDWR
	if opts.ReadOnly {
		mode = os.O_RDONLY
	}
	bf, err := os.OpenFile(backing, mode|sys.OpenFlagsCloexec, 0)
	if err != nil {
		return nil, fmt.Errorf("loop attach: %w", err)
	}
	defer bf.Close() // the loop driver holds its own reference once bound

	ctl, err := os.OpenFile(sys.LoopControlPath, os.O_RDWR|sys.OpenFlagsCloexec, 0)
	if err != nil {
		return nil, fmt.Errorf("loop attach %s: %w", backing, err)
	}
	defer ctl.Close()

	var flags uint32
	if opts.ReadOnly {
		flags |= sys.LO_FLAGS_READ_ONLY
	}
	if opts.AutoClear {
		flags |= sys.LO_FLAGS_AUTOCLEAR
	}
	if opts.DirectIO {
		flags |= sys.LO_FLAGS_DIRECT_IO
	}

	var lastErr error
	for range getFreeRetries {
		n, err := sys.LoopCtlGetFree(ctl)
		if err != nil {
			return nil, fmt.Errorf("loop attach %s: get free: %w", backing, err)
		}
		d, err := bind(fmt.Sprintf("/dev/loop%d", n), bf, mode, flags, opts)
		if errors.Is(err, sys.EBUSY) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("loop attach %s: %w", backing, err)
		}
		return d, nil
	}
	return nil, fmt.Errorf("loop attach %s: %d races for a free device: %w", backing, getFreeRetries, lastErr)
}

func bind(path string, backing *os.File, mode int, flags uint32, opts Options) (*Device, error) {
	f, err := os.OpenFile(path, mode|sys.OpenFlagsCloexec, 0)
	if err != nil {
		return nil, err
	}
	err = sys.LoopConfigure(f, backing, flags)
	if errors.Is(err, sys.EINVAL) || errors.Is(err, sys.ENOTTY) {
		err = legacyBind(f, backing, flags, opts)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &Device{path: path, f: f}
	fi, err := f.Stat()
	if err == nil {
		var ok bool
		if d.major, d.minor, ok = sys.BlockDevNum(fi); !ok {
			err = fmt.Errorf("%s is not a block device", path)
		}
	}
	if err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// legacyBind is the pre-5.8 sequence. The read-only mode follows from how
// the backing file was opened.
func legacyBind(f, backing *os.File, flags uint32, opts Options) error {
	if err := sys.LoopSetFd(f, backing); err != nil {
		return err
	}
	err := sys.LoopSetStatus64(f, flags&sys.LO_FLAGS_AUTOCLEAR)
	if err == nil && opts.DirectIO {
		err = sys.LoopSetDirectIO(f, true)
	}
	if err != nil {
		return errors.Join(err, sys.LoopClrFd(f))
	}
	return nil
}

// Path returns the device node, e.g. /dev/loop0.
func (d *Device) Path() string { return d.path }

// Dev returns the block device number.
func (d *Device) Dev() (major, minor uint32) { return d.major, d.minor }

// Close detaches the device and closes its descriptor. If someone else
// still holds the device open (a dm table, say), the kernel defers the
// detach to their last close. Close is idempotent; ENXIO (already
// detached, e.g. by AutoClear) is not an error.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		err := sys.LoopClrFd(d.f)
		if errors.Is(err, sys.ENXIO) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("loop detach %s: %w", d.path, err)
		}
		d.closeErr = errors.Join(err, d.f.Close())
	})
	return d.closeErr
}

// Find returns the loop devices (/dev/loopN) whose backing file is the
// given path, as /sys/block/loopN/loop/backing_file reports it.
func Find(backing string) ([]string, error) {
	abs, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	matches, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.TrimSuffix(string(b), "\n") == abs {
			name := filepath.Base(filepath.Dir(filepath.Dir(m)))
			if _, err := strconv.Atoi(strings.TrimPrefix(name, "loop")); err == nil {
				out = append(out, "/dev/"+name)
			}
		}
	}
	return out, nil
}

// ErrNotBound: a loop device is no longer bound to the expected file.
var ErrNotBound = errors.New("loop device not bound to the file")

// Hold opens the loop device dev (a path from [Find]) and checks, once
// it is open, that it is still bound to backing. While the returned file
// is open the kernel cannot auto-clear the device: a process that found
// an image already attached (held only by dm tables) must hold it, or
// removing the last such table detaches it under the process's feet and
// a table loaded afterwards maps a device of size 0. Closing the file
// lets an autoclear device go once nothing else holds it.
func Hold(dev, backing string) (*os.File, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|sys.OpenFlagsCloexec, 0)
	if err != nil {
		return nil, fmt.Errorf("loop hold: %w", err)
	}
	found, err := Find(backing)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("loop hold %s: %w", dev, err), f.Close())
	}
	for _, p := range found {
		if p == dev {
			return f, nil
		}
	}
	return nil, errors.Join(fmt.Errorf("loop hold %s (%s): %w", dev, backing, ErrNotBound), f.Close())
}

// Backing returns the backing file of the loop device dev, "" if it has
// none (not attached) or the file is gone.
func Backing(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	f := strings.TrimSuffix(string(b), "\n")
	if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return f
}
