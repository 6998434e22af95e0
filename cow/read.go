package cow

import (
	"errors"
	"fmt"
	"io"
)

// Decoder reads persistent exception stores. The zero Decoder accepts any
// store the kernel would load; its fields add checks or relax one.
type Decoder struct {
	// ExpectChunkSectors, if not 0, is the chunk size the caller expects
	// (the table's chunk size). A header with another size fails with
	// [ErrChunkSizeMismatch]; the kernel only warns and uses the header's.
	// For a fresh store it supplies the chunk size the kernel would format
	// with, so that [State.Usage] is meaningful.
	ExpectChunkSectors uint32
	// AllowInvalidated makes the decoder read the exceptions of a store
	// whose valid field is 0 instead of failing with [ErrInvalidated]. The
	// kernel never does this; it is for inspection.
	AllowInvalidated bool
}

// State is what the kernel knows about a store after read_exceptions: the
// header, the position of the first non-full metadata area and the first
// free chunk.
type State struct {
	// Header is the header as read from chunk 0.
	Header Header
	// ChunkSectors is the effective chunk size: the header's, or for a
	// fresh store [Decoder.ExpectChunkSectors] (0 if unknown).
	ChunkSectors uint32
	// SizeBytes is the size of the COW device.
	SizeBytes int64
	// Fresh is true when the magic is 0: the kernel formats such a store on
	// load, and it holds no exceptions.
	Fresh bool
	// Count is the number of exception records.
	Count uint64
	// CurrentArea is the index of the first metadata area that is not
	// full (current_area).
	CurrentArea int
	// CurrentCommitted is the number of records in CurrentArea
	// (current_committed).
	CurrentCommitted int
	// NextFree is the next COW chunk the kernel would allocate (next_free).
	NextFree Chunk
}

// Usage is the kernel's status triple for a persistent snapshot,
// "<allocated>/<total> <metadata>", all in 512-byte sectors.
type Usage struct {
	// AllocatedSectors is next_free * chunk; it counts metadata chunks.
	AllocatedSectors uint64
	// TotalSectors is the size of the COW device.
	TotalSectors uint64
	// MetadataSectors is (current_area + 2) * chunk: the header and the
	// metadata areas 0..current_area.
	MetadataSectors uint64
}

// String formats u as the kernel's snapshot status does.
func (u Usage) String() string {
	return fmt.Sprintf("%d/%d %d", u.AllocatedSectors, u.TotalSectors, u.MetadataSectors)
}

// Usage returns the numbers the kernel's persistent_usage reports for a
// snapshot loaded from this state (§ STATUSTYPE_INFO). For a fresh store
// they are those after the kernel formats it, 2*chunk/total 2*chunk, and 0
// for the chunk terms if the chunk size is unknown. For an invalidated store
// the kernel reports "Invalid" instead.
func (s State) Usage() Usage {
	c := uint64(s.ChunkSectors)
	return Usage{
		AllocatedSectors: uint64(s.NextFree) * c,
		TotalSectors:     uint64(s.SizeBytes) / SectorSize,
		MetadataSectors:  (uint64(s.CurrentArea) + 2) * c,
	}
}

// PerArea returns E, the number of records in one metadata area, or 0 if
// the chunk size is unknown.
func (s State) PerArea() int { return int(uint64(s.ChunkSectors) * SectorSize / ExceptionSize) }

// Walk is [Decoder.Walk] with the zero Decoder.
func Walk(r io.ReaderAt, sizeBytes int64, fn func(area int, e Exception) error) (State, error) {
	return Decoder{}.Walk(r, sizeBytes, fn)
}

// Walk decodes the store on r, whose device is sizeBytes long, and calls fn
// for every exception record in on-disk order without keeping them. It
// reads the header and then one metadata area at a time, never data
// chunks, following the kernel's read_exceptions: the table ends at the
// first record whose new chunk is 0, and a full area continues in the next
// one. fn may be nil; an error from fn stops the walk and is returned
// as is.
//
// Walk checks every record on its own ([ErrOutOfRange], [ErrMetadataChunk],
// in a [*RecordError]) but not for duplicates, which need all records; use
// [Decoder.Open] for that. Header problems come as a [*HeaderError]
// wrapping [ErrBadMagic], [ErrBadChunkSize], [ErrChunkSizeMismatch],
// [ErrUnsupportedVersion] or [ErrInvalidated]. A device that ends inside the
// header or a needed area gives [ErrTruncated], as the kernel's read would
// fail. A fresh store (magic 0) is no error: the State has Fresh set.
func (d Decoder) Walk(r io.ReaderAt, sizeBytes int64, fn func(area int, e Exception) error) (State, error) {
	st, _, err := d.walk(r, sizeBytes, fn)
	return st, err
}

// areaPieceBytes is the most of a metadata area Walk reads at a time.
// Areas are a chunk long, up to 1 GiB; reading them in pieces keeps a
// header naming huge chunks from costing that much memory.
const areaPieceBytes = 1 << 20

// walk is Walk that also returns the raw bytes of the current area from
// its terminating record to the end of the piece holding it: the kernel
// keeps the whole area in memory (ps->area) and writes it back on the next
// commit, and the records before the terminator are rebuilt from the
// exceptions (see [Store.currentArea]).
func (d Decoder) walk(r io.ReaderAt, sizeBytes int64, fn func(area int, e Exception) error) (State, []byte, error) {
	st, err := d.header(r, sizeBytes)
	if err != nil || st.Fresh {
		return st, nil, err
	}

	c := st.ChunkSectors
	chunkBytes := st.Header.ChunkBytes()
	sizeChunks := Chunk(sizeBytes / chunkBytes)
	if sizeChunks < 1 {
		return st, nil, fmt.Errorf("header chunk: %d-byte device: %w", sizeBytes, ErrTruncated)
	}
	perArea := st.PerArea()
	stride := Chunk(perArea) + 1
	buf := make([]byte, min(chunkBytes, areaPieceBytes))
	nextFree := Chunk(hdrChunks + 1)
	var tail []byte
	read := func(b []byte, off int64, area int, loc Chunk) error {
		if err := readFull(r, b, off); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: %w", ErrTruncated, err)
			}
			return fmt.Errorf("read area %d at chunk %d: %w", area, loc, err)
		}
		return nil
	}
	for area := 0; tail == nil; area++ {
		loc := AreaLocation(c, area)
		if loc >= sizeChunks {
			return st, nil, fmt.Errorf("area %d at chunk %d: %d-chunk device: %w", area, loc, sizeChunks, ErrTruncated)
		}
		base := int64(loc) * chunkBytes
		for piece := int64(0); piece < chunkBytes && tail == nil; piece += int64(len(buf)) {
			if err := read(buf, base+piece, area, loc); err != nil {
				return st, nil, err
			}
			for j := 0; j < len(buf)/ExceptionSize; j++ {
				i := int(piece/ExceptionSize) + j
				e := getException(buf[j*ExceptionSize:])
				if e.New == 0 {
					st.CurrentArea, st.CurrentCommitted = area, i
					tail = buf[j*ExceptionSize:] // buf is not read into again
					break
				}
				switch {
				case e.New >= sizeChunks:
					return st, nil, &RecordError{Area: area, Index: i, Exception: e, Err: ErrOutOfRange}
				case e.New%stride == hdrChunks:
					return st, nil, &RecordError{Area: area, Index: i, Exception: e, Err: ErrMetadataChunk}
				}
				if nextFree <= e.New {
					nextFree = e.New + 1
				}
				st.Count++
				if fn != nil {
					if err := fn(area, e); err != nil {
						return st, nil, err
					}
				}
			}
		}
		// The kernel reads the whole current area: it must be readable
		// to its end even where this walk stopped early.
		if end := base + chunkBytes - 1; tail != nil && int64(len(buf)) < chunkBytes {
			if err := read(make([]byte, 1), end, area, loc); err != nil {
				return st, nil, err
			}
		}
	}
	// skip_metadata
	if nextFree%stride == hdrChunks {
		nextFree++
	}
	st.NextFree = nextFree
	return st, tail, nil
}

// header reads and classifies the header in the kernel's order: magic
// (read_header), chunk size (dm_exception_store_set_chunk_size), version
// and valid (persistent_read_metadata).
func (d Decoder) header(r io.ReaderAt, sizeBytes int64) (State, error) {
	st := State{SizeBytes: sizeBytes, NextFree: hdrChunks + 1}
	if sizeBytes < HeaderSize {
		return st, fmt.Errorf("header: %d-byte device: %w", sizeBytes, ErrTruncated)
	}
	h, err := ReadHeader(r)
	if err != nil {
		return st, err
	}
	st.Header = h
	if h.IsFresh() {
		st.Fresh = true
		if c := d.ExpectChunkSectors; c != 0 {
			if err := CheckChunkSectors(c); err != nil {
				return st, fmt.Errorf("expected %w", err)
			}
			st.ChunkSectors = c
			if sizeBytes/(int64(c)*SectorSize) < 2 {
				return st, fmt.Errorf("fresh store: %d-byte device has no room for area 0: %w", sizeBytes, ErrTruncated)
			}
		}
		return st, nil
	}
	if h.Magic != Magic {
		return st, &HeaderError{Header: h, Err: ErrBadMagic}
	}
	if err := CheckChunkSectors(h.ChunkSectors); err != nil {
		return st, &HeaderError{Header: h, Err: ErrBadChunkSize}
	}
	if d.ExpectChunkSectors != 0 && d.ExpectChunkSectors != h.ChunkSectors {
		return st, &HeaderError{Header: h, Err: fmt.Errorf("expected %d sectors: %w", d.ExpectChunkSectors, ErrChunkSizeMismatch)}
	}
	st.ChunkSectors = h.ChunkSectors
	if h.Version != DiskVersion {
		return st, &HeaderError{Header: h, Err: ErrUnsupportedVersion}
	}
	if h.Valid == 0 && !d.AllowInvalidated {
		return st, &HeaderError{Header: h, Err: ErrInvalidated}
	}
	return st, nil
}

// readFull is ReaderAt.ReadAt that accepts io.EOF with a full buffer, which
// the io.ReaderAt contract allows at the end of the input.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) && err == io.EOF {
		return nil
	}
	return err
}
