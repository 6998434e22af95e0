package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/sys"
)

// Kernel-tier fixtures shared by the packages that build device stacks
// themselves (dm, merge, cow): one client, scratch devices, removal that
// waits out a just-closed device, and O_DIRECT I/O past the page cache.

// Client skips t outside the kernel tier and opens a device-mapper client
// closed at cleanup.
func Client(t testing.TB) *dm.Client {
	t.Helper()
	RequireKernel(t)
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// ScratchDev is [ScratchLoop] returning the loop device's number, for
// tables, and its path.
func ScratchDev(t testing.TB, sizeBytes int64) (dm.DevNum, string) {
	t.Helper()
	path, d := ScratchLoop(t, sizeBytes)
	major, minor := d.Dev()
	return dm.DevNum{Major: major, Minor: minor}, path
}

// CreateDevice creates, loads and resumes name and removes it at cleanup.
// Cleanups run in reverse, so devices stacked later go first.
func CreateDevice(t testing.TB, c *dm.Client, name, uuid string, lines ...dm.TargetLine) dm.Info {
	t.Helper()
	info, err := c.CreateAndLoad(name, uuid, lines, dm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveRetry(t, c, name) })
	return info
}

// RemoveRetry removes name if it exists, retrying EBUSY for up to 2 s: a
// device a test has just closed can still be held by the kernel (udev, a
// deferred close) for a moment. Any other error fails t.
func RemoveRetry(t testing.TB, c *dm.Client, name string) {
	t.Helper()
	var err error
	for range 100 {
		if err = c.RemoveIfExists(name, dm.RemoveOptions{}); err == nil {
			return
		}
		if !errors.Is(err, dm.ErrBusy) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("remove %s: %v", name, err)
}

// AlignedBuf returns n bytes of page-aligned memory for O_DIRECT, freed at
// cleanup.
func AlignedBuf(t testing.TB, n int) []byte {
	t.Helper()
	b, err := sys.AllocAligned(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sys.FreeAligned(b) })
	return b
}

// Pattern returns n bytes that differ per seed and per 4 KiB block.
func Pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i/4096) ^ byte(i)
	}
	return b
}

// WriteDirect writes data at off of the device at path with O_DIRECT and
// fsyncs; the error is the caller's to assert on (a write to an invalid
// snapshot must fail).
func WriteDirect(t testing.TB, path string, off int64, data []byte) error {
	t.Helper()
	buf := AlignedBuf(t, len(data))
	copy(buf, data)
	f, err := os.OpenFile(path, os.O_WRONLY|sys.OpenFlagsDirect, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, off); err != nil {
		return err
	}
	return f.Sync()
}

// MustWriteDirect is [WriteDirect] failing t on error.
func MustWriteDirect(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	if err := WriteDirect(t, path, off, data); err != nil {
		t.Fatal(err)
	}
}

// ReadDirect reads n bytes at off of the device at path with O_DIRECT,
// past a possibly stale page cache. The result is a fresh copy.
func ReadDirect(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	buf := AlignedBuf(t, n)
	f, err := os.OpenFile(path, os.O_RDONLY|sys.OpenFlagsDirect, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return append([]byte(nil), buf...)
}

// HashDirect is the sha256, in hex, of n bytes at off of the device at
// path, read with O_DIRECT.
func HashDirect(t testing.TB, path string, off int64, n int) string {
	t.Helper()
	return Hash(ReadDirect(t, path, off, n))
}

// Hash is the sha256 of b in hex.
func Hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
