package cow

import (
	"encoding/binary"
	"errors"
	"testing"
)

// putRecord overwrites record idx of area on d (chunk size C sectors).
func putRecord(t *testing.T, d *memDev, c uint32, area, idx int, e Exception) {
	t.Helper()
	b, _ := e.AppendBinary(nil)
	off := int64(AreaLocation(c, area))*int64(c)*512 + int64(idx)*16
	if _, err := d.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func putHeaderField(t *testing.T, d *memDev, off int64, v uint32) {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, v)
	if _, err := d.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestHeaderErrors(t *testing.T) {
	base := func(t *testing.T) *memDev {
		w, d := mustCreate(t, 1<<20, 8)
		mustAdd(t, w, 5)
		return d
	}
	for _, tc := range []struct {
		name   string
		field  int64 // byte offset in the header
		value  uint32
		dec    Decoder
		want   error
		header bool // error carries the header
	}{
		{"bad magic", 0, 0x12345678, Decoder{}, ErrBadMagic, true},
		{"version 2", 8, 2, Decoder{}, ErrUnsupportedVersion, true},
		{"version 0", 8, 0, Decoder{}, ErrUnsupportedVersion, true},
		{"invalidated", 4, 0, Decoder{}, ErrInvalidated, true},
		{"chunk 0", 12, 0, Decoder{}, ErrBadChunkSize, true},
		{"chunk 12", 12, 12, Decoder{}, ErrBadChunkSize, true},
		{"chunk 1<<22", 12, 1 << 22, Decoder{}, ErrBadChunkSize, true},
		{"chunk mismatch", 12, 8, Decoder{ExpectChunkSectors: 16}, ErrChunkSizeMismatch, true},
		// The kernel checks the chunk size before the version.
		{"bad chunk beats version", 12, 3, Decoder{}, ErrBadChunkSize, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := base(t)
			putHeaderField(t, d, tc.field, tc.value)
			if tc.name == "bad chunk beats version" {
				putHeaderField(t, d, 8, 7)
			}
			s, err := tc.dec.Open(d, d.size)
			if s != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want nil, %v", s, err, tc.want)
			}
			var he *HeaderError
			if errors.As(err, &he) != tc.header {
				t.Fatalf("error %v: *HeaderError %v, want %v", err, !tc.header, tc.header)
			}
			if tc.header {
				raw, _ := ReadHeader(d)
				if he.Header != raw {
					t.Errorf("HeaderError.Header = %+v, want %+v", he.Header, raw)
				}
			}
			if _, err := tc.dec.Walk(d, d.size, nil); !errors.Is(err, tc.want) {
				t.Errorf("Walk: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRecordErrors(t *testing.T) {
	// C=1: E=32; areas at chunks 1, 34, 67, 100. Device of 200 chunks.
	const c = 1
	build := func(t *testing.T, n int) *memDev {
		w, d := mustCreate(t, 200*512, c)
		for i := range n {
			mustAdd(t, w, Chunk(1000+i))
		}
		return d
	}
	for _, tc := range []struct {
		name      string
		n         int
		area, idx int
		e         Exception
		want      error
		wantArea  int // where the error is reported
		wantIndex int
	}{
		{"new past end", 5, 0, 3, Exception{Old: 1, New: 200}, ErrOutOfRange, 0, 3},
		{"new far past end", 5, 0, 0, Exception{Old: 1, New: 1 << 62}, ErrOutOfRange, 0, 0},
		{"new is area 0", 5, 0, 2, Exception{Old: 1, New: 1}, ErrMetadataChunk, 0, 2},
		{"new is area 1", 40, 1, 4, Exception{Old: 1, New: 34}, ErrMetadataChunk, 1, 4},
		{"new is area 5", 5, 0, 4, Exception{Old: 1, New: 166}, ErrMetadataChunk, 0, 4},
		{"duplicate old", 10, 0, 7, Exception{Old: 1002, New: 9}, ErrDuplicateOld, 0, 7},
		{"duplicate old across areas", 40, 1, 2, Exception{Old: 1000, New: 37}, ErrDuplicateOld, 1, 2},
		{"duplicate new", 10, 0, 8, Exception{Old: 5, New: 3}, ErrDuplicateNew, 0, 8},
		{"duplicate new unsorted", 40, 1, 5, Exception{Old: 5, New: 2}, ErrDuplicateNew, 1, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := build(t, tc.n)
			putRecord(t, d, c, tc.area, tc.idx, tc.e)
			s, err := Open(d, d.size)
			if s != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want nil, %v", s, err, tc.want)
			}
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is no *RecordError", err)
			}
			if re.Area != tc.wantArea || re.Index != tc.wantIndex {
				t.Errorf("error at area %d record %d, want %d %d (%v)", re.Area, re.Index, tc.wantArea, tc.wantIndex, err)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	// C=1: E=32, area 1 at chunk 34.
	w, d := mustCreate(t, 200*512, 1)
	for i := range 32 { // exactly one full area: the reader needs area 1
		mustAdd(t, w, Chunk(i))
	}
	for _, tc := range []struct {
		name       string
		size       int64
		readerSize int64 // bytes the reader really has, if smaller
	}{
		{"empty device", 0, 0},
		{"15 bytes", 15, 0},
		{"inside header chunk", 300, 0},
		{"inside area 0", 512 + 100, 0},
		{"before area 1", 34 * 512, 0},
		{"inside area 1", 34*512 + 511, 0},
		{"reader shorter than size", 200 * 512, 34*512 + 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.clone()
			if tc.readerSize != 0 {
				r.size = tc.readerSize
			} else {
				r.size = tc.size
			}
			s, err := Open(r, tc.size)
			if s != nil || !errors.Is(err, ErrTruncated) {
				t.Fatalf("Open = %v, %v; want nil, ErrTruncated", s, err)
			}
		})
	}
	if _, err := Open(d, 35*512); err != nil {
		t.Errorf("device ending right after area 1: %v", err)
	}
	// A fresh store needs room for the header and area 0.
	if _, err := (Decoder{ExpectChunkSectors: 8}).Open(newMemDev(4096), 4096); !errors.Is(err, ErrTruncated) {
		t.Errorf("fresh 1-chunk device: %v, want ErrTruncated", err)
	}
	if _, err := (Decoder{ExpectChunkSectors: 6}).Open(newMemDev(1<<20), 1<<20); !errors.Is(err, ErrBadChunkSize) {
		t.Errorf("fresh with ExpectChunkSectors 6: %v, want ErrBadChunkSize", err)
	}
}

func TestFreshStore(t *testing.T) {
	d := newMemDev(1 << 20)
	s, err := Decoder{ExpectChunkSectors: 16}.Open(d, d.size)
	if err != nil || !s.Fresh() || s.Len() != 0 || len(s.ChangedExtents()) != 0 {
		t.Fatalf("Open fresh: %v %v", s, err)
	}
	w, err := NewWriter(d, s)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, w, 3)
	s = mustOpen(t, d)
	if s.Fresh() || s.ChunkSectors() != 16 || s.Len() != 1 || s.Usage().String() != "48/2048 32" {
		t.Errorf("after NewWriter on fresh store: fresh %v chunk %d len %d usage %s", s.Fresh(), s.ChunkSectors(), s.Len(), s.Usage())
	}
	if _, err := NewWriter(d, mustOpen(t, newMemDev(1<<20))); !errors.Is(err, ErrBadChunkSize) {
		t.Errorf("NewWriter on fresh store of unknown chunk size: %v, want ErrBadChunkSize", err)
	}
}

func TestWriterNoSpace(t *testing.T) {
	// 16 MiB COW, C=8: chunks 0..4095; areas at 1+257k for k=0..15, the
	// last (3856) never fills, so chunks 2..4095 minus 15 areas are data.
	w, d := mustCreate(t, 16<<20, 8)
	n := 0
	for {
		_, err := w.Add(Chunk(n), nil)
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 4079 {
		t.Errorf("fitted %d exceptions, want 4079", n)
	}
	if got := mustOpen(t, d).Usage().String(); got != "32768/32768 136" {
		t.Errorf("full store usage %q, want \"32768/32768 136\"", got)
	}

	// C=1, 67 chunks: area 2 would be at chunk 67, past the end, so the
	// record that fills area 1 is refused (the kernel would invalidate).
	w, d = mustCreate(t, 67*512, 1)
	n = 0
	for ; ; n++ {
		if _, err := w.Add(Chunk(n), nil); err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatal(err)
			}
			break
		}
	}
	if n != 63 {
		t.Errorf("fitted %d exceptions, want 63", n)
	}
	if s := mustOpen(t, d); s.Len() != 63 {
		t.Errorf("store has %d exceptions, want 63", s.Len())
	}

	if _, err := Create(newMemDev(4096), 4096, 8); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Create on a 1-chunk device: %v, want ErrNoSpace", err)
	}
	if _, err := Create(newMemDev(1<<20), 1<<20, 24); !errors.Is(err, ErrBadChunkSize) {
		t.Errorf("Create C=24: %v, want ErrBadChunkSize", err)
	}
	w, _ = mustCreate(t, 1<<20, 8)
	if _, err := w.Add(1, make([]byte, 100)); err == nil {
		t.Error("Add with 100 bytes of data for a 4 KiB chunk succeeded")
	}
}

func TestWriterStickyError(t *testing.T) {
	d := newMemDev(1 << 20)
	w, err := Create(d, d.size, 8)
	if err != nil {
		t.Fatal(err)
	}
	w.w = failWriter{}
	if _, err := w.Add(1, nil); !errors.Is(err, errWrite) {
		t.Fatalf("Add with failing area write: %v", err)
	}
	w.w = d
	if _, err := w.Add(2, nil); !errors.Is(err, errWrite) {
		t.Errorf("Add after a failed commit: %v, want the sticky error", err)
	}
}

var errWrite = errors.New("injected write error")

type failWriter struct{}

func (failWriter) WriteAt([]byte, int64) (int, error) { return 0, errWrite }
