package cow

import (
	"errors"
	"fmt"
	"io"
)

// Writer appends exceptions to a store exactly as the kernel's persistent
// store allocates and commits them (persistent_prepare_exception,
// persistent_commit_exception), one commit per exception. It is for tests
// and for building stores offline: it must never be used on a COW device
// that a loaded table uses. A Writer is not safe for concurrent use.
//
// If the underlying writer has a Sync method (as *os.File does), Writer
// calls it where the kernel issues REQ_PREFLUSH and REQ_FUA.
type Writer struct {
	w            io.WriterAt
	chunkSectors uint32
	sizeBytes    int64
	perArea      int
	area         []byte // in-memory current area (ps->area)
	currentArea  int
	committed    int
	nextFree     Chunk
	err          error // sticky: a failed metadata write leaves the store unknown
}

// Create formats the COW device w of sizeBytes bytes (see [Format]) and
// returns a Writer for the empty store. It returns [ErrBadChunkSize] for an
// invalid chunk size and [ErrNoSpace] if the device cannot hold the header
// and area 0.
func Create(w io.WriterAt, sizeBytes int64, chunkSectors uint32) (*Writer, error) {
	if err := CheckChunkSectors(chunkSectors); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	if sizeBytes/(int64(chunkSectors)*SectorSize) < 2 {
		return nil, fmt.Errorf("create: %d-byte device: %w", sizeBytes, ErrNoSpace)
	}
	if err := Format(w, chunkSectors); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	cw := newWriter(w, sizeBytes, chunkSectors)
	return cw, nil
}

func newWriter(w io.WriterAt, sizeBytes int64, chunkSectors uint32) *Writer {
	chunkBytes := int64(chunkSectors) * SectorSize
	return &Writer{
		w:            w,
		chunkSectors: chunkSectors,
		sizeBytes:    sizeBytes,
		perArea:      int(chunkBytes / ExceptionSize),
		area:         make([]byte, chunkBytes),
		nextFree:     hdrChunks + 1,
	}
}

// NewWriter returns a Writer that continues the store s, which was decoded
// from the device w writes to. The current area starts from its raw bytes,
// as the kernel's in-memory copy does. A fresh store is formatted first,
// which needs a known chunk size ([Decoder.ExpectChunkSectors]; otherwise
// [ErrBadChunkSize]). An invalidated store gives [ErrInvalidated].
func NewWriter(w io.WriterAt, s *Store) (*Writer, error) {
	st := s.State()
	if st.Fresh {
		return Create(w, st.SizeBytes, st.ChunkSectors)
	}
	if st.Header.Valid == 0 {
		return nil, fmt.Errorf("new writer: %w", ErrInvalidated)
	}
	cw := newWriter(w, st.SizeBytes, st.ChunkSectors)
	s.currentArea(cw.area, 0)
	cw.currentArea, cw.committed, cw.nextFree = st.CurrentArea, st.CurrentCommitted, st.NextFree
	return cw, nil
}

// State returns the state the kernel would load from the store as written
// so far.
func (w *Writer) State() State {
	return State{
		Header:           NewHeader(w.chunkSectors),
		ChunkSectors:     w.chunkSectors,
		SizeBytes:        w.sizeBytes,
		Count:            uint64(w.currentArea)*uint64(w.perArea) + uint64(w.committed),
		CurrentArea:      w.currentArea,
		CurrentCommitted: w.committed,
		NextFree:         w.nextFree,
	}
}

// Add allocates the next free COW chunk for origin chunk old, writes data
// (exactly one chunk, or nil to leave the data chunk untouched) and commits
// the record:
//
//  1. new = next_free; next_free++, skipping a metadata chunk.
//  2. Write the data chunk; if the area becomes full, zero the next area.
//  3. Sync (the kernel's REQ_PREFLUSH), write the area chunk, sync (FUA).
//
// It returns [ErrNoSpace] when the device is full, like the kernel's
// -ENOSPC. Unlike the kernel, which would invalidate the snapshot when the
// area after a full one lies past the end of the device, Add refuses such a
// record with [ErrNoSpace] up front. Add does not check old for duplicates.
func (w *Writer) Add(old Chunk, data []byte) (Exception, error) {
	if w.err != nil {
		return Exception{}, w.err
	}
	chunkBytes := int64(w.chunkSectors) * SectorSize
	if data != nil && int64(len(data)) != chunkBytes {
		return Exception{}, fmt.Errorf("add chunk %d: %d bytes of data for a %d-byte chunk", old, len(data), chunkBytes)
	}
	sizeSectors := uint64(w.sizeBytes) / SectorSize
	if sizeSectors < (uint64(w.nextFree)+1)*uint64(w.chunkSectors) {
		return Exception{}, fmt.Errorf("add chunk %d: %w", old, ErrNoSpace)
	}
	fills := w.committed+1 == w.perArea
	nextArea := AreaLocation(w.chunkSectors, w.currentArea+1)
	if fills && (uint64(nextArea)+1)*uint64(w.chunkSectors) > sizeSectors {
		return Exception{}, fmt.Errorf("add chunk %d: no room for area %d: %w", old, w.currentArea+1, ErrNoSpace)
	}

	e := Exception{Old: old, New: w.nextFree}
	if data != nil {
		if _, err := w.w.WriteAt(data, int64(e.New)*chunkBytes); err != nil {
			return Exception{}, fmt.Errorf("add chunk %d: write data chunk %d: %w", old, e.New, err)
		}
	}
	w.nextFree++
	if w.nextFree%Chunk(w.perArea+1) == hdrChunks {
		w.nextFree++
	}

	putException(w.area[w.committed*ExceptionSize:], e)
	w.committed++
	if err := w.commit(); err != nil {
		w.err = fmt.Errorf("add chunk %d: %w", old, err)
		return Exception{}, w.err
	}
	return e, nil
}

func (w *Writer) commit() error {
	full := w.committed == w.perArea
	if full {
		if err := zeroChunk(w.w, w.chunkSectors, AreaLocation(w.chunkSectors, w.currentArea+1)); err != nil {
			return fmt.Errorf("zero area %d: %w", w.currentArea+1, err)
		}
	}
	if err := syncIfPossible(w.w); err != nil {
		return err
	}
	loc := AreaLocation(w.chunkSectors, w.currentArea)
	if _, err := w.w.WriteAt(w.area, int64(loc)*int64(len(w.area))); err != nil {
		return fmt.Errorf("write area %d: %w", w.currentArea, err)
	}
	if err := syncIfPossible(w.w); err != nil {
		return err
	}
	if full {
		w.committed = 0
		w.currentArea++
		clear(w.area)
	}
	return nil
}

// Encode writes the metadata of s to w: the header chunk (zero-padded, as
// write_header does) and metadata areas 0 through the current area. Full
// areas are rebuilt from the exceptions; the current area from its
// exceptions and the raw bytes read after them, as the kernel would
// (beyond the first MiB piece holding the terminating record, as zeros). For a store written
// by the kernel the result equals the original metadata chunks byte for
// byte. Data chunks are not touched. For a fresh store Encode clears the
// start of the device as [Zero] does.
func Encode(w io.WriterAt, s *Store) error {
	st := s.State()
	if st.Fresh {
		return Zero(w, st.ChunkSectors)
	}
	if err := writeHeaderChunk(w, st.Header); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	per := st.PerArea()
	buf := make([]byte, st.Header.ChunkBytes())
	for area := range st.CurrentArea {
		for i, e := range s.disk[area*per : (area+1)*per] {
			putException(buf[i*ExceptionSize:], e)
		}
		if err := writeArea(w, st.ChunkSectors, area, buf); err != nil {
			return err
		}
	}
	if s.tail == nil {
		return errors.New("encode: store has no current area")
	}
	s.currentArea(buf, 0)
	if err := writeArea(w, st.ChunkSectors, st.CurrentArea, buf); err != nil {
		return err
	}
	return syncIfPossible(w)
}

func writeArea(w io.WriterAt, chunkSectors uint32, area int, b []byte) error {
	loc := AreaLocation(chunkSectors, area)
	if _, err := w.WriteAt(b, int64(loc)*int64(len(b))); err != nil {
		return fmt.Errorf("encode: write area %d: %w", area, err)
	}
	return nil
}
