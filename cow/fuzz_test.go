package cow

import (
	"bytes"
	"errors"
	"testing"
)

var sentinels = []error{
	ErrBadMagic, ErrUnsupportedVersion, ErrInvalidated, ErrBadChunkSize,
	ErrChunkSizeMismatch, ErrTruncated, ErrOutOfRange, ErrMetadataChunk,
	ErrDuplicateOld, ErrDuplicateNew,
}

// fuzzSeed returns a store image of C=1 (E=32) with n sequential
// exceptions on a device of chunks chunks.
func fuzzSeed(tb testing.TB, n, chunks int) []byte {
	w, d := mustCreate(tb, int64(chunks)*512, 1)
	for i := range n {
		mustAdd(tb, w, Chunk(3*i+1))
	}
	return d.read(tb, 0, d.size)
}

// FuzzDecode feeds arbitrary device images to Open. Invariants: exactly one
// of store and error is nil; every error is one of the package's sentinels
// (the reader itself never fails); Walk agrees with Open; and a store that
// decodes re-encodes to the same bytes, except for non-zero bytes after the
// 16 header bytes, which the kernel's write_header clears, and bytes of the
// current area past the 1 MiB piece holding its terminator, which the
// reader does not keep.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 4096))
	f.Add(fuzzSeed(f, 0, 4))
	f.Add(fuzzSeed(f, 5, 10))
	f.Add(fuzzSeed(f, 32, 40))
	f.Add(fuzzSeed(f, 33, 40))
	f.Add(fuzzSeed(f, 32, 35))
	f.Add(fuzzSeed(f, 70, 80))
	w, d := mustCreate(f, 64<<10, 8)
	for i := range 10 {
		mustAdd(f, w, Chunk(100-i))
	}
	f.Add(d.read(f, 0, d.size))
	for _, name := range goldenNames(f) {
		if img, _ := loadGolden(f, name); len(img) <= 1<<20 {
			f.Add(img)
		}
	}

	f.Fuzz(func(t *testing.T, img []byte) {
		size := int64(len(img))
		s, err := Open(bytes.NewReader(img), size)
		if (s == nil) == (err == nil) {
			t.Fatalf("Open = %v, %v: want exactly one nil", s, err)
		}
		st, werr := Walk(bytes.NewReader(img), size, nil)
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
		if uint64(s.Len()) != st.Count {
			t.Fatalf("Len %d, Count %d", s.Len(), st.Count)
		}
		if s.Fresh() {
			return
		}
		want := memDevFrom(img)
		pad := make([]byte, s.Header().ChunkBytes()-HeaderSize)
		if _, err := want.WriteAt(pad, HeaderSize); err != nil {
			t.Fatal(err)
		}
		// Past the piece holding its terminator, the current area is
		// kept and written back as zeros.
		if cb := s.Header().ChunkBytes(); cb > areaPieceBytes {
			st := s.State()
			base := int64(AreaLocation(st.ChunkSectors, st.CurrentArea)) * cb
			from := (int64(st.CurrentCommitted)*ExceptionSize/areaPieceBytes + 1) * areaPieceBytes
			if from < cb {
				if _, err := want.WriteAt(make([]byte, cb-from), base+from); err != nil {
					t.Fatal(err)
				}
			}
		}
		got := memDevFrom(img)
		if err := Encode(got, s); err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if !got.equal(want) {
			t.Fatal("Encode of a decoded store changed its metadata")
		}
		_ = s.ChangedExtents()
	})
}
