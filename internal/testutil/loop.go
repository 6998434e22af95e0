package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/dmsnap/dmsnap/internal/loop"
)

// DMNamePrefix starts the name of every device-mapper device a test
// creates; TestMain leak checks look for it.
const DMNamePrefix = "dmsnaptest-"

// ScratchLoop creates a sparse file of sizeBytes in t.TempDir, attaches it
// as a loop device and detaches it in t.Cleanup. It returns the device
// path (/dev/loopN) and the device; dev.Dev() gives major and minor for
// tables.
func ScratchLoop(t testing.TB, sizeBytes int64) (path string, dev *loop.Device) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "scratch.img")
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	dev, err = loop.Attach(file, loop.Options{AutoClear: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("detach %s: %v", dev.Path(), err)
		}
	})
	return dev.Path(), dev
}

// UniqueName returns a device-mapper name unique to this call:
// DMNamePrefix plus 8 random hex digits. It does not create anything.
func UniqueName(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return DMNamePrefix + hex.EncodeToString(b[:])
}
