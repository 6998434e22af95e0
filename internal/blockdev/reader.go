package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// ErrNoDirect: a block device that must be read with O_DIRECT cannot be.
var ErrNoDirect = errors.New("O_DIRECT read refused")

// Reader is a block device or an image file opened read-only. A block
// device is read with O_DIRECT through an aligned bounce buffer, so a
// Reader is not safe for concurrent reads.
type Reader struct {
	path     string
	f        *os.File
	r        io.ReaderAt
	size     int64
	block    bool
	direct   bool
	strict   bool
	fallback *os.File // buffered descriptor after O_DIRECT failed
	// dio is what the direct reader reads with O_DIRECT: f (tests
	// replace it).
	dio io.ReaderAt
	buf []byte
}

// Options say how to open a [Reader].
type Options struct {
	// Strict forbids the fallback to buffered reads where a block device
	// refuses O_DIRECT: the read fails with [ErrNoDirect] instead. Ingest
	// and restore need it; an inspection can do without.
	Strict bool
}

// Open opens path, a block device or a regular file, for reading.
func Open(path string, o Options) (*Reader, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	r := &Reader{path: path, block: isBlock(fi), strict: o.Strict}
	if !r.block && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a block device or a regular file", path)
	}
	if r.block && r.strict && sys.OpenFlagsDirect == 0 {
		return nil, fmt.Errorf("%s: %w: this platform has no O_DIRECT", path, ErrNoDirect)
	}
	flags := os.O_RDONLY | sys.OpenFlagsCloexec
	if r.block {
		flags |= sys.OpenFlagsDirect
	}
	if r.f, err = os.OpenFile(path, flags, 0); err != nil {
		return nil, err
	}
	if !r.block {
		r.size, r.r = fi.Size(), r.f
		return r, nil
	}
	if r.size, err = r.f.Seek(0, io.SeekEnd); err != nil {
		r.f.Close()
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	r.direct, r.dio = sys.OpenFlagsDirect != 0, r.f
	r.r = directReader{r}
	return r, nil
}

func isBlock(fi os.FileInfo) bool {
	return fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// Path is the path Open was given.
func (r *Reader) Path() string { return r.path }

// Size is the size of the device or file in bytes.
func (r *Reader) Size() int64 { return r.size }

// Block reports whether r is a block device (not an image file).
func (r *Reader) Block() bool { return r.block }

// Direct reports whether r's reads bypass the page cache: false for an
// image file, or for a lax block device that fell back.
func (r *Reader) Direct() bool { return r.direct }

// ReadAt reads len(p) bytes at off.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) { return r.r.ReadAt(p, off) }

// Close closes the descriptors.
func (r *Reader) Close() error {
	err := r.f.Close()
	if r.fallback != nil {
		err = errors.Join(err, r.fallback.Close())
	}
	return err
}

// directAlign is the alignment of O_DIRECT offsets and lengths: the
// largest logical block size a device has (4 KiB), so any device takes it.
const directAlign = 4096

// directReader reads through an aligned bounce buffer of 1 MiB. Should a
// read still fail with EINVAL (a device with larger blocks, a file system
// that refuses O_DIRECT), a lax reader falls back to a buffered descriptor
// and clears direct; a strict one fails with [ErrNoDirect].
type directReader struct{ r *Reader }

func (d directReader) ReadAt(p []byte, off int64) (int, error) {
	r := d.r
	if r.fallback != nil {
		return r.fallback.ReadAt(p, off)
	}
	if r.buf == nil {
		r.buf = make([]byte, 1<<20) // Go allocates this size page-aligned
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		start := pos &^ (directAlign - 1)
		want := min(int64(len(r.buf)), (pos+int64(len(p)-n)-start+directAlign-1)&^(directAlign-1), r.size-start)
		m, err := r.dio.ReadAt(r.buf[:want], start)
		if err != nil && m == 0 {
			if errors.Is(err, sys.EINVAL) && r.strict {
				return n, fmt.Errorf("read %s with O_DIRECT: %w: %w (a buffered read could miss chunks through a stale page cache)", r.path, err, ErrNoDirect)
			}
			if errors.Is(err, sys.EINVAL) && n == 0 {
				fb, ferr := os.OpenFile(r.path, os.O_RDONLY|sys.OpenFlagsCloexec, 0)
				if ferr != nil {
					return 0, errors.Join(err, ferr)
				}
				r.fallback, r.direct = fb, false
				return fb.ReadAt(p, off)
			}
			return n, err
		}
		if int64(m) <= pos-start {
			return n, io.ErrUnexpectedEOF
		}
		n += copy(p[n:], r.buf[pos-start:m])
	}
	return n, nil
}
