package pool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/pool"
)

// imagePool creates a pool named after the test on two 32 MiB image
// files and returns a Host that knows them as hints (and scans an empty
// device directory, so that no other pool is seen).
func imagePool(t *testing.T) (*pool.Host, string) {
	t.Helper()
	dir := t.TempDir()
	name := testutil.UniqueName(t)
	var paths []string
	var disks []lvm.Disk
	for _, f := range []string{"a.img", "b.img"} {
		p := filepath.Join(dir, f)
		if err := lvm.CreateImage(p, 32<<20/512); err != nil {
			t.Fatal(err)
		}
		d, err := lvm.OpenDisk(p, true)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		paths = append(paths, p)
		disks = append(disks, d)
	}
	if _, err := lvm.Create(name, disks, lvm.CreateOptions{ExtentSize: 2048}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"dev", "lock"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := &pool.Host{DevDir: filepath.Join(dir, "dev"), LockDir: filepath.Join(dir, "lock"),
		ImageHints: func() (map[string][]string, error) { return map[string][]string{name: paths}, nil }}
	return h, name
}

// removeVolume removes every device of the volume, top first.
func removeVolume(t *testing.T, s *pool.Session, volume string) {
	t.Helper()
	v := s.Store.Pool.Volume(volume)
	if v == nil {
		t.Fatalf("no volume %s", volume)
	}
	devs, err := pool.VolumeDevices(s.Kernel, s.Store.Pool.UUID, v.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.RemoveDevices(s.Kernel, devs); err != nil {
		t.Fatal(err)
	}
}

// TestSessionSnapshotKernel drives the library the way the CLI does:
// discover image files, lock and open a session, add and activate a
// volume, snapshot it, extend and remove the snapshot, and deactivate.
func TestSessionSnapshotKernel(t *testing.T) {
	testutil.RequireKernel(t)
	ctx := context.Background()
	h, name := imagePool(t)

	d, err := h.Discover(nil)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := d.ByName(name)
	if err != nil || fp == nil || len(fp.Sources) != 2 {
		t.Fatalf("discover %s: %+v, %v", name, fp, err)
	}

	s, err := h.Session(name, pool.SessionOptions{Mode: lock.Exclusive, Kernel: true, AttachPVs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The lock is held: a second exclusive session is refused at once.
	if s2, err := h.Session(name, pool.SessionOptions{Mode: lock.Exclusive}); err == nil {
		s2.Close()
		t.Fatal("second exclusive session on a locked pool was granted")
	} else if !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("second session: %v, want lock.ErrLocked", err)
	}

	next, err := s.Store.Pool.AddVolume("base", 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store.Commit(next); err != nil {
		t.Fatal(err)
	}
	_, _, nodes, err := s.Activate(ctx, map[string]bool{"base": true}, lvm.ActivateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	baseName := lvm.DMName(name, "base", lvm.LayerNone)
	if _, err := s.Kernel.Info(baseName); err != nil || nodes["base"] == "" {
		t.Fatalf("base after Activate: info %v, nodes %v", err, nodes)
	}
	defer func() { _ = dm.RemoveNode(baseName) }()

	if _, err := s.CreateSnapshot(ctx, lvm.SnapshotSpec{Name: "snap", Origin: "base", COWExtents: 2, Store: dm.Persistent, ChunkSize: 8}); err != nil {
		removeVolume(t, s, "base")
		t.Fatal(err)
	}
	snapName := lvm.DMName(name, "snap", lvm.LayerNone)
	if _, err := s.Kernel.Info(snapName); err != nil {
		t.Fatalf("snapshot device after CreateSnapshot: %v", err)
	}
	to, err := s.ExtendSnapshot(ctx, "snap", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(3 * 2048 * 512); to != want {
		t.Errorf("ExtendSnapshot: COW is %d bytes, want %d", to, want)
	}
	res, err := s.RemoveSnapshot(ctx, "snap", false)
	if err != nil {
		t.Fatal(err)
	}
	if res.FreedBytes != 3*2048*512 {
		t.Errorf("RemoveSnapshot freed %d bytes, want %d", res.FreedBytes, 3*2048*512)
	}
	if _, err := s.Kernel.Info(snapName); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("snapshot device after RemoveSnapshot: %v, want not found", err)
	}
	if s.Store.Pool.Volume("snap") != nil {
		t.Error("snapshot still in the metadata after RemoveSnapshot")
	}
	removeVolume(t, s, "base")
	if _, err := s.Kernel.Info(baseName); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("base after removing its devices: %v, want not found", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The metadata reached the disks: a new session reads it back, and
	// the lock is free again.
	s3, err := h.Session(name, pool.SessionOptions{Mode: lock.Shared})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if v := s3.Store.Pool.Volume("base"); v == nil || v.Extents() != 8 {
		t.Errorf("reopened pool: base = %+v, want 8 extents", v)
	}
}

// TestSessionMissingPool: a pool no disk carries is reported as such,
// and the lock taken for it is released.
func TestSessionMissingPool(t *testing.T) {
	h, _ := imagePool(t)
	_, err := h.Session("nosuchpool", pool.SessionOptions{Mode: lock.Exclusive})
	if !errors.Is(err, lvm.ErrNotFound) {
		t.Fatalf("Session(nosuchpool): %v, want lvm.ErrNotFound", err)
	}
	l, err := h.Lock("nosuchpool", lock.Exclusive)
	if err != nil {
		t.Fatalf("lock after a failed Session: %v (the session leaked it)", err)
	}
	l.Close()
}
