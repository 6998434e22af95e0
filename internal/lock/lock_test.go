package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockModes(t *testing.T) {
	path := Path(filepath.Join(t.TempDir(), "run"), "vg0")
	w, err := TryAcquire(path, Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("lock dir mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := TryAcquire(path, Shared); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock while exclusive held: %v, want ErrLocked", err)
	}
	if _, err := TryAcquire(path, Exclusive); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: %v, want ErrLocked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	r1, err := TryAcquire(path, Shared)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := TryAcquire(path, Shared)
	if err != nil {
		t.Fatalf("two readers: %v", err)
	}
	defer r2.Close()
	if _, err := TryAcquire(path, Exclusive); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer while readers hold: %v, want ErrLocked", err)
	}
}

func TestAcquireWaits(t *testing.T) {
	path := Path(t.TempDir(), "vg0")
	w, err := TryAcquire(path, Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, path, Shared); !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire under a held lock: %v, want ErrLocked and DeadlineExceeded", err)
	}
	time.AfterFunc(100*time.Millisecond, func() { w.Close() })
	l, err := Acquire(context.Background(), path, Exclusive)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	l.Close()
}

// TestLockFileSymlink: a lock file that is a symbolic link is refused, and
// the file it points to is left alone (the lock was opened through it, so
// another user's link made dmsnap create or lock any file).
func TestLockFileSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	path := Path(dir, "vg0")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	l, err := TryAcquire(path, Exclusive)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), path) {
		l.Close()
		t.Fatalf("TryAcquire through a symlink: %v; want ErrUnsafe naming %s", err, path)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("symlink target created: %v", err)
	}
}

// TestLockDirChecked: a lock directory writable by group or others, or
// owned by another user, is refused with an error naming it.
func TestLockDirChecked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := TryAcquire(Path(dir, "vg0"), Shared); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "directory "+dir+" is writable") {
		t.Errorf("world-writable dir: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := TryAcquire(Path(dir, "vg0"), Shared)
	if err != nil {
		t.Fatalf("0755 dir of this user: %v", err)
	}
	l.Close()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot give the directory to another user")
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := TryAcquire(Path(dir, "vg0"), Shared); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "directory "+dir+" is owned by uid 65534") {
		t.Errorf("dir of uid 65534: %v", err)
	}
}
