package cow

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// allocated returns the bytes fn allocates (runtime TotalAlloc delta).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func putHeader(tb testing.TB, d *memDev, h Header) {
	tb.Helper()
	b, _ := h.MarshalBinary()
	if _, err := d.WriteAt(b, 0); err != nil {
		tb.Fatal(err)
	}
}

func putRecords(tb testing.TB, d *memDev, off int64, es ...Exception) {
	tb.Helper()
	var b []byte
	for _, e := range es {
		b, _ = e.AppendBinary(b)
	}
	if _, err := d.WriteAt(b, off); err != nil {
		tb.Fatal(err)
	}
}

// TestHugeChunksBounded: a header naming 1 GiB chunks (the kernel's
// maximum) no longer makes the reader allocate a 1 GiB area buffer: Open
// and Walk stay under 2 MiB, with and without records.
func TestHugeChunksBounded(t *testing.T) {
	chunkBytes := int64(MaxChunkSectors) * SectorSize
	for _, n := range []int{0, 3} {
		d := newMemDev(4 * chunkBytes)
		putHeader(t, d, NewHeader(MaxChunkSectors))
		var es []Exception
		for i := range n {
			es = append(es, Exception{Old: Chunk(10 + i), New: Chunk(2 + i%2)})
		}
		if n > 0 {
			es[2].New = 0 // terminator with a non-zero old chunk, kept raw
		}
		putRecords(t, d, chunkBytes, es...)
		var s *Store
		var err error
		if got := allocated(func() { s, err = Open(d, d.size) }); got > 2<<20 {
			t.Errorf("%d records: Open allocated %d bytes", n, got)
		}
		if err != nil {
			t.Fatalf("%d records: %v", n, err)
		}
		if want := max(n-1, 0); s.Len() != want || s.State().CurrentCommitted != want {
			t.Errorf("%d records: Len %d, state %+v", n, s.Len(), s.State())
		}
		if got := allocated(func() { _, err = Walk(d, d.size, nil) }); got > 2<<20 || err != nil {
			t.Errorf("%d records: Walk allocated %d bytes, %v", n, got, err)
		}
	}
}

// TestHugeChunksTruncated: the current area is checked to its end even
// though the walk stops at its terminating record, as the kernel's read of
// the whole area would fail.
func TestHugeChunksTruncated(t *testing.T) {
	chunkBytes := int64(MaxChunkSectors) * SectorSize
	d := newMemDev(4 * chunkBytes)
	putHeader(t, d, NewHeader(MaxChunkSectors))
	short := &shortReader{r: d, size: chunkBytes + 1<<20}
	if _, err := Open(short, d.size); !errors.Is(err, ErrTruncated) {
		t.Errorf("area readable for 1 MiB of 1 GiB: %v, want ErrTruncated", err)
	}
}

// shortReader is r cut at size, for a device smaller than it claims.
type shortReader struct {
	r    *memDev
	size int64
}

func (s *shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.size {
		n, _ := s.r.ReadAt(p[:max(s.size-off, 0)], off)
		return n, io.ErrUnexpectedEOF
	}
	return s.r.ReadAt(p, off)
}

// TestTailAcrossPieces: with 2 MiB chunks an area is read in two pieces;
// a current area whose terminator lies in the second one decodes, and
// re-encodes (records, terminator and the raw bytes after it) to the same
// bytes, and a Writer continues it.
func TestTailAcrossPieces(t *testing.T) {
	const c = 4096 // sectors: 2 MiB chunks
	chunkBytes := int64(c) * SectorSize
	n := areaPieceBytes/ExceptionSize + 5
	size := int64(n+8) * chunkBytes
	d := newMemDev(size)
	putHeader(t, d, NewHeader(c))
	es := make([]Exception, n)
	for i := range es {
		es[i] = Exception{Old: Chunk(3 * i), New: Chunk(2 + i)}
	}
	putRecords(t, d, chunkBytes, es...)
	// The terminator and the records after it carry old chunks but no
	// new chunk: raw bytes the kernel keeps and writes back.
	putRecords(t, d, chunkBytes+int64(n)*ExceptionSize, Exception{Old: 77}, Exception{Old: 0xa5a5}, Exception{Old: 0x5a5a})
	s, err := Open(d, size)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != n || s.State().CurrentCommitted != n || s.State().CurrentArea != 0 {
		t.Fatalf("Len %d, state %+v", s.Len(), s.State())
	}
	got := newMemDev(size)
	if err := Encode(got, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.read(t, chunkBytes, chunkBytes), d.read(t, chunkBytes, chunkBytes)) {
		t.Error("Encode changed the current area")
	}
	w, err := NewWriter(got, s)
	if err != nil {
		t.Fatal(err)
	}
	e, err := w.Add(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(got, size); err != nil || s2.Len() != n+1 || s2.Exceptions()[n] != e {
		t.Errorf("after Add: %v, %v", s2, err)
	}
}

// FuzzReadStore reads whole COW devices through Open and Walk: hdr is the
// start of chunk 0, areas is laid out from chunk 1 (metadata area 0, then
// data chunks and later areas), and the device is sizeChunks%4096 chunks
// long (at least the input), sparse, whatever chunk size the header
// names. Invariants: exactly one of store and error is nil, every error is
// a sentinel, Walk agrees with Open, and neither allocates more than 2 MiB
// plus 64 bytes per input byte.
func FuzzReadStore(f *testing.F) {
	split := func(img []byte, chunkBytes int) {
		f.Add(img[:chunkBytes], img[chunkBytes:], uint16(len(img)/chunkBytes))
	}
	for _, n := range []int{0, 5, 32, 33, 70} {
		split(fuzzSeed(f, n, 80), 512)
	}
	w, d := mustCreate(f, 64<<10, 8)
	for i := range 10 {
		mustAdd(f, w, Chunk(100-i))
	}
	split(d.read(f, 0, d.size), 4096)
	hb, _ := NewHeader(MaxChunkSectors).MarshalBinary()
	rb, _ := Exception{Old: 9, New: 2}.AppendBinary(nil)
	f.Add(hb, rb, uint16(4))
	f.Add(hb, []byte{}, uint16(2))
	f.Fuzz(func(t *testing.T, hdr, areas []byte, sizeChunks uint16) {
		chunkBytes := int64(SectorSize)
		var h Header
		if h.UnmarshalBinary(hdr) == nil && CheckChunkSectors(h.ChunkSectors) == nil {
			chunkBytes = h.ChunkBytes()
		}
		size := max(int64(len(hdr)), chunkBytes+int64(len(areas)), int64(sizeChunks%4096)*chunkBytes)
		dev := newMemDev(size)
		dev.WriteAt(hdr, 0)
		dev.WriteAt(areas, chunkBytes)
		bound := uint64(2<<20 + 64*(len(hdr)+len(areas)))
		var s *Store
		var err, werr error
		var st State
		if n := allocated(func() { s, err = Open(dev, size) }); n > bound {
			t.Fatalf("Open allocated %d bytes (%d-byte chunks, %d input bytes)", n, chunkBytes, len(hdr)+len(areas))
		}
		if n := allocated(func() { st, werr = Walk(dev, size, nil) }); n > bound {
			t.Fatalf("Walk allocated %d bytes (%d-byte chunks, %d input bytes)", n, chunkBytes, len(hdr)+len(areas))
		}
		if (s == nil) == (err == nil) {
			t.Fatalf("Open = %v, %v: want exactly one nil", s, err)
		}
		if err != nil {
			known := false
			for _, e := range sentinels {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("Open error %v is no sentinel", err)
			}
			if werr == nil && !errors.Is(err, ErrDuplicateOld) && !errors.Is(err, ErrDuplicateNew) {
				t.Fatalf("Open failed with %v but Walk succeeded", err)
			}
			return
		}
		if werr != nil || st != s.State() {
			t.Fatalf("Walk = %+v, %v; Open state %+v", st, werr, s.State())
		}
	})
}
