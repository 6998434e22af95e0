package blockdev

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// einvalReader fails every read as a device refusing O_DIRECT does.
type einvalReader struct{}

func (einvalReader) ReadAt([]byte, int64) (int, error) { return 0, sys.EINVAL }

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dev")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDirectReaderStrict: where O_DIRECT reads fail with EINVAL, a strict
// reader fails naming the device and ErrNoDirect (falling back silently
// could under-copy through a stale page cache); a lax one falls back and
// says so.
func TestDirectReaderStrict(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	path := writeFile(t, data)
	strict := &Reader{path: path, size: int64(len(data)), block: true, direct: true, dio: einvalReader{}, strict: true}
	strict.r = directReader{strict}
	b := make([]byte, 100)
	n, err := strict.ReadAt(b, 10)
	if n != 0 || !errors.Is(err, ErrNoDirect) || !errors.Is(err, sys.EINVAL) || !bytes.Contains([]byte(err.Error()), []byte(path)) {
		t.Errorf("strict ReadAt = %d, %v; want ErrNoDirect naming %s", n, err, path)
	}
	if strict.fallback != nil || !strict.Direct() {
		t.Error("strict reader fell back to buffered reads")
	}

	lax := &Reader{path: path, size: int64(len(data)), block: true, direct: true, dio: einvalReader{}}
	lax.r = directReader{lax}
	lax.f, _ = os.Open(path)
	defer lax.Close()
	n, err = lax.ReadAt(b, 10)
	if err != nil || n != len(b) || !bytes.Equal(b, data[10:110]) {
		t.Errorf("lax ReadAt = %d, %v", n, err)
	}
	if lax.fallback == nil || lax.Direct() {
		t.Error("lax reader did not fall back, or did not say so")
	}
}

// TestDirectReaderAlignment: unaligned offsets and lengths, reads that
// span the bounce buffer, and the end of the device come back exactly as
// the data, with io.EOF past the end.
func TestDirectReaderAlignment(t *testing.T) {
	data := make([]byte, 3<<20+1234)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	path := writeFile(t, data)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &Reader{path: path, f: f, size: int64(len(data)), block: true, direct: true, dio: f}
	r.r = directReader{r}
	defer r.Close()
	for _, c := range []struct{ off, n int64 }{{0, 1}, {1, 4095}, {4095, 2}, {12345, 1<<20 + 3}, {1<<20 - 7, 2<<20 + 11}, {int64(len(data)) - 5, 5}} {
		b := make([]byte, c.n)
		n, err := r.ReadAt(b, c.off)
		if err != nil || int64(n) != c.n || !bytes.Equal(b, data[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; or wrong data", c.n, c.off, n, err)
		}
	}
	b := make([]byte, 10)
	if n, err := r.ReadAt(b, int64(len(data))-4); n != 4 || err != io.EOF || !bytes.Equal(b[:4], data[len(data)-4:]) {
		t.Errorf("ReadAt across the end = %d, %v", n, err)
	}
}

// TestOpenFile: a regular file is read as it is, not as a block device;
// a directory is refused naming it.
func TestOpenFile(t *testing.T) {
	data := []byte("hello, image")
	path := writeFile(t, data)
	r, err := Open(path, Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Block() || r.Direct() || r.Size() != int64(len(data)) {
		t.Errorf("Open(file): block %v direct %v size %d", r.Block(), r.Direct(), r.Size())
	}
	b := make([]byte, 5)
	if _, err := r.ReadAt(b, 7); err != nil || string(b) != "image" {
		t.Errorf("ReadAt = %q, %v", b, err)
	}
	dir := t.TempDir()
	if _, err := Open(dir, Options{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte(dir)) {
		t.Errorf("Open(dir) = %v, want an error naming it", err)
	}
}

// TestWriterZero: Zero makes the range read as zeros and leaves the rest,
// by punching a hole where the file system can.
func TestWriterZero(t *testing.T) {
	data := bytes.Repeat([]byte{0xaa}, 64<<10)
	path := writeFile(t, data)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(f)
	if err := w.Zero(4096, 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte{1, 2, 3}, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	punched := w.Punched()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	copy(want, []byte{1, 2, 3})
	clear(want[4096 : 4096+8192])
	if !bytes.Equal(got, want) {
		t.Error("content after Zero and WriteAt differs")
	}
	if punched != 0 && punched != 8192 {
		t.Errorf("Punched = %d, want 0 (no hole punching here) or 8192", punched)
	}
}
