package blockdev

import (
	"os"
	"sync"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// Writer writes a block device (a zvol, a volume being restored). Zero
// deallocates a range (fallocate PUNCH_HOLE|KEEP_SIZE, which a zvol turns
// into a free and a dm device into a discard); where the device refuses
// that it writes zeros, which ZFS with compression on (the zvol default)
// stores as holes as well. WriteAt and Zero may be called from several
// goroutines at once: pwrite and fallocate on one descriptor are safe,
// and mu guards the rest.
type Writer struct {
	f       *os.File
	mu      sync.Mutex
	noPunch bool
	punched int64 // bytes deallocated by Zero
	zeros   []byte
}

// OpenWriter opens the block device at path for writing.
func OpenWriter(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|sys.OpenFlagsCloexec, 0)
	if err != nil {
		return nil, err
	}
	return NewWriter(f), nil
}

// NewWriter writes through f, which the Writer then owns.
func NewWriter(f *os.File) *Writer { return &Writer{f: f} }

// WriteAt writes b at off.
func (w *Writer) WriteAt(b []byte, off int64) (int, error) { return w.f.WriteAt(b, off) }

// Zero makes [off, off+n) read as zeros, deallocating it where it can.
func (w *Writer) Zero(off, n int64) error {
	w.mu.Lock()
	noPunch := w.noPunch
	w.mu.Unlock()
	if !noPunch {
		ok, err := sys.PunchHole(w.f, off, n)
		if err != nil {
			return err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if ok {
			w.punched += n
			return nil
		}
		w.noPunch = true
	} else {
		w.mu.Lock()
		defer w.mu.Unlock()
	}
	// Without hole punching, zeros are written under mu: rare (a device
	// without discard), and it keeps the shared buffer simple.
	if w.zeros == nil {
		w.zeros = make([]byte, 1<<20)
	}
	for n > 0 {
		m := min(n, int64(len(w.zeros)))
		if _, err := w.f.WriteAt(w.zeros[:m], off); err != nil {
			return err
		}
		off, n = off+m, n-m
	}
	return nil
}

// Punched is how many bytes Zero deallocated rather than wrote.
func (w *Writer) Punched() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.punched
}

// Sync flushes the device's write cache.
func (w *Writer) Sync() error { return w.f.Sync() }

// Close closes the device.
func (w *Writer) Close() error { return w.f.Close() }
