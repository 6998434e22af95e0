package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
