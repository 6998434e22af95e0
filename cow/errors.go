package cow

import (
	"errors"
	"fmt"
)

// Sentinel errors. Test for them with errors.Is; they arrive wrapped in
// context (and, for header and record problems, in [*HeaderError] or
// [*RecordError]).
var (
	// ErrBadMagic: the magic is neither 0 nor SNAP_MAGIC. The kernel fails
	// the load with "Invalid or corrupt snapshot" (-ENXIO).
	ErrBadMagic = errors.New("bad magic")
	// ErrUnsupportedVersion: the version is not 1 (-EINVAL in the kernel).
	ErrUnsupportedVersion = errors.New("unsupported version")
	// ErrInvalidated: valid is 0. The kernel loads the snapshot as Invalid
	// and ignores its exceptions.
	ErrInvalidated = errors.New("snapshot invalidated")
	// ErrBadChunkSize: the chunk size is zero, not a power of two, or above
	// MaxChunkSectors.
	ErrBadChunkSize = errors.New("bad chunk size")
	// ErrChunkSizeMismatch: the header's chunk size differs from the one
	// the caller expected.
	ErrChunkSizeMismatch = errors.New("chunk size mismatch")
	// ErrTruncated: the device ends inside the header or inside a metadata
	// area the reader needs; the kernel's read of it would fail.
	ErrTruncated = errors.New("truncated exception store")
	// ErrOutOfRange: a chunk lies outside its device (a new chunk past the
	// end of the COW device, or an old chunk past the end of the origin).
	ErrOutOfRange = errors.New("chunk out of range")
	// ErrMetadataChunk: a new chunk points at the header or a metadata area.
	ErrMetadataChunk = errors.New("new chunk is a metadata chunk")
	// ErrDuplicateOld: two records name the same origin chunk.
	ErrDuplicateOld = errors.New("duplicate old chunk")
	// ErrDuplicateNew: two records name the same COW chunk.
	ErrDuplicateNew = errors.New("duplicate new chunk")
	// ErrNoSpace: a Writer has no free COW chunk left (-ENOSPC in
	// persistent_prepare_exception).
	ErrNoSpace = errors.New("no space left in exception store")
)

// HeaderError reports a header the decoder rejects, together with the
// decoded header so that callers can still show it.
type HeaderError struct {
	Header Header
	Err    error
}

// Error formats the header and the reason it was rejected.
func (e *HeaderError) Error() string { return fmt.Sprintf("header (%v): %v", e.Header, e.Err) }

// Unwrap returns the underlying sentinel.
func (e *HeaderError) Unwrap() error { return e.Err }

// RecordError reports a bad exception record and where it is: metadata area
// Area, record Index within the area.
type RecordError struct {
	Area      int
	Index     int
	Exception Exception
	Err       error
}

// Error formats the record, its position and the problem.
func (e *RecordError) Error() string {
	return fmt.Sprintf("area %d record %d (old %d new %d): %v", e.Area, e.Index, e.Exception.Old, e.Exception.New, e.Err)
}

// Unwrap returns the underlying sentinel.
func (e *RecordError) Unwrap() error { return e.Err }
