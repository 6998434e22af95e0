package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// einvalReader fails every read as a device refusing O_DIRECT does.
type einvalReader struct{}

func (einvalReader) ReadAt([]byte, int64) (int, error) { return 0, sys.EINVAL }

// TestDirectReaderStrict: where O_DIRECT reads fail with EINVAL, ingest's
// strict source fails naming the device and errNoDirect (it fell back to
// buffered reads silently, which a stale page cache could make
// under-copy); inspect's source still falls back and says so.
func TestDirectReaderStrict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cow")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	strict := &cowSource{path: path, size: int64(len(data)), direct: true, dio: einvalReader{}, strict: true}
	b := make([]byte, 100)
	n, err := (&directReader{s: strict}).ReadAt(b, 10)
	if n != 0 || !errors.Is(err, errNoDirect) || !errors.Is(err, sys.EINVAL) || !bytes.Contains([]byte(err.Error()), []byte(path)) {
		t.Errorf("strict ReadAt = %d, %v; want errNoDirect naming %s", n, err, path)
	}
	if strict.fallback != nil || !strict.direct {
		t.Error("strict source fell back to buffered reads")
	}

	lax := &cowSource{path: path, size: int64(len(data)), direct: true, dio: einvalReader{}}
	defer lax.Close()
	lax.f, _ = os.Open(path)
	n, err = (&directReader{s: lax}).ReadAt(b, 10)
	if err != nil || n != len(b) || !bytes.Equal(b, data[10:110]) {
		t.Errorf("lax ReadAt = %d, %v", n, err)
	}
	if lax.fallback == nil || lax.direct {
		t.Error("lax source did not fall back, or did not say so")
	}
}
