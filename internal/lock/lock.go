package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultDir holds the lock files.
const DefaultDir = "/run/dmsnap"

// Mode is the kind of lock.
type Mode int

// Lock modes.
const (
	Shared    Mode = iota // readers
	Exclusive             // one writer
)

// String returns "shared" or "exclusive".
func (m Mode) String() string {
	if m == Exclusive {
		return "exclusive"
	}
	return "shared"
}

var (
	// ErrLocked: another process holds a conflicting lock.
	ErrLocked = errors.New("locked by another process")
	// ErrNotSupported: file locks are not available on this platform.
	ErrNotSupported = errors.New("file locks not supported")
	// ErrUnsafe: a lock file or its directory could be replaced or
	// redirected by another user (see [CheckDir]), or the lock file is a
	// symbolic link.
	ErrUnsafe = errors.New("unsafe lock or config location")
)

// CheckDir checks that dir (after symbolic links) is a directory only
// root or this process's effective user can change: owned by uid 0 or
// the euid, and not writable by group or others. Otherwise another user
// could swap a lock file for a symlink to a file of ours, or replace the
// state file. The error names dir and wraps [ErrUnsafe]; a dir that
// cannot be examined gives the stat error.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	switch uid, ok := fileOwner(fi); {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory: %w", dir, ErrUnsafe)
	case ok && uid != 0 && uid != os.Geteuid():
		return fmt.Errorf("directory %s is owned by uid %d, want root (or uid %d): %w", dir, uid, os.Geteuid(), ErrUnsafe)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("directory %s is writable by group or others (mode %#o), want at most 0755: %w", dir, fi.Mode().Perm(), ErrUnsafe)
	}
	return nil
}

// Path returns the lock file of pool in dir ([DefaultDir] when empty).
func Path(dir, pool string) string {
	if dir == "" {
		dir = DefaultDir
	}
	return filepath.Join(dir, pool+".lock")
}

// Lock is a held lock. It owns its file; Close releases both.
type Lock struct {
	f    *os.File
	mode Mode
}

// Mode returns the mode the lock was taken in.
func (l *Lock) Mode() Mode { return l.mode }

// Close releases the lock. It is idempotent.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last fd drops the flock
	l.f = nil
	return err
}

// TryAcquire takes the lock at path in mode without waiting, creating the
// file (0600) and its directory (0700) as needed. A conflicting holder gives
// an error wrapping [ErrLocked]. The directory must pass [CheckDir], and
// the lock file is opened without following a symbolic link; both fail
// with [ErrUnsafe].
func TryAcquire(path string, mode Mode) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := CheckDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|oNoFollow, 0o600)
	if isSymlinkErr(err) {
		return nil, fmt.Errorf("lock %s is a symbolic link, which dmsnap does not follow: %w", path, ErrUnsafe)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("lock %s is not a regular file: %w", path, ErrUnsafe)
	}
	if err := flock(f, mode); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s (%s): %w", path, mode, err)
	}
	return &Lock{f: f, mode: mode}, nil
}

// Acquire takes the lock like [TryAcquire], retrying every poll interval
// while another process holds it, until ctx is done (the error then wraps
// both [ErrLocked] and the context error).
func Acquire(ctx context.Context, path string, mode Mode) (*Lock, error) {
	const poll = 50 * time.Millisecond
	for {
		l, err := TryAcquire(path, mode)
		if !errors.Is(err, ErrLocked) {
			return l, err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
