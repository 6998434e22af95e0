package pool

import (
	"errors"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
)

// Session is one pool opened for a command: its lock, its metadata store
// loaded from the PVs, and optionally a device-mapper client and the PVs'
// device numbers (loop devices attached or held). Close releases all of
// them in reverse order; every field may be nil.
type Session struct {
	Name string
	Lock *lock.Lock
	*Opened
	Kernel *dm.Client
	PVs    *AttachedPVs
	// Logf, if set, gets the snapshot operations' step log.
	Logf func(format string, args ...any)
}

// SessionOptions says what a Session opens beyond the lock and the store.
type SessionOptions struct {
	// Mode is the pool lock's mode; lock.Exclusive also loads the store
	// read-write.
	Mode lock.Mode
	// Kernel opens a device-mapper client.
	Kernel bool
	// AttachPVs resolves the PVs' device numbers, attaching image files
	// through loop devices (exclusive sessions only).
	AttachPVs bool
	// Removing also opens a pool whose removal is pending.
	Removing bool
	// Extra names files or devices to scan besides the host's.
	Extra []string
	// Warn, if set, gets the store's warnings as soon as it is loaded,
	// before the kernel is asked anything.
	Warn func(msgs ...string)
}

// Session locks the pool called name and opens it as opts asks. With
// the lock already taken, use SessionLocked.
func (h *Host) Session(name string, opts SessionOptions) (*Session, error) {
	l, err := h.Lock(name, opts.Mode)
	if err != nil {
		return nil, err
	}
	return h.SessionLocked(name, l, opts)
}

// SessionLocked is Session with the pool's lock l already taken; it owns
// l from then on (closed with the session, or at once on error).
func (h *Host) SessionLocked(name string, l *lock.Lock, opts SessionOptions) (*Session, error) {
	s := &Session{Name: name, Lock: l}
	var err error
	writable := opts.Mode == lock.Exclusive
	if opts.Removing {
		s.Opened, err = h.OpenRemoving(name, writable, opts.Extra)
	} else {
		s.Opened, err = h.Open(name, writable, opts.Extra)
	}
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if opts.Warn != nil {
		opts.Warn(s.Warnings...)
	}
	if opts.Kernel {
		if s.Kernel, err = dm.Open(); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	if opts.AttachPVs {
		if !writable {
			return nil, errors.Join(fmt.Errorf("pool %s: PVs are attached only under an exclusive lock", name), s.Close())
		}
		if s.PVs, err = AttachPVs(s.Opened, false); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// SnapshotEnv is the kernel and PV device numbers of the session, for
// the snapshot operations of package lvm.
func (s *Session) SnapshotEnv() lvm.SnapshotEnv {
	env := lvm.SnapshotEnv{Kernel: s.Kernel, Logf: s.Logf}
	if s.PVs != nil {
		env.Devs = s.PVs.Devs
	}
	return env
}

// Close releases the attached PVs, the device-mapper client, the disks
// and the lock, in that order, and returns every error it met.
func (s *Session) Close() error {
	var errs []error
	if s.PVs != nil {
		errs = append(errs, s.PVs.Release())
		s.PVs = nil
	}
	if s.Kernel != nil {
		errs = append(errs, s.Kernel.Close())
		s.Kernel = nil
	}
	if s.Opened != nil {
		errs = append(errs, s.Opened.Close())
		s.Opened = nil
	}
	if s.Lock != nil {
		errs = append(errs, s.Lock.Close())
		s.Lock = nil
	}
	return errors.Join(errs...)
}
