package cow

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// On-disk constants of the persistent exception store
// (drivers/md/dm-snap-persistent.c).
const (
	// Magic is SNAP_MAGIC, stored little-endian as the bytes "SnAp".
	Magic uint32 = 0x70416e53
	// DiskVersion is SNAPSHOT_DISK_VERSION, the only version the kernel
	// loads.
	DiskVersion uint32 = 1
	// HeaderSize is the size in bytes of the header fields at the start of
	// chunk 0. The rest of chunk 0 is zero.
	HeaderSize = 16
	// ExceptionSize is the size in bytes of one on-disk exception record
	// (struct disk_exception).
	ExceptionSize = 16
	// SectorSize is the size in bytes of the sector unit used for chunk
	// sizes.
	SectorSize = 512
	// MaxChunkSectors is the largest power-of-two chunk size the kernel
	// accepts: dm_exception_store_set_chunk_size rejects anything above
	// INT_MAX >> SECTOR_SHIFT.
	MaxChunkSectors uint32 = 1 << 21
	// hdrChunks is NUM_SNAPSHOT_HDR_CHUNKS.
	hdrChunks = 1
	// minWipeBytes is how much of a COW device LVM's wipe_lv clears.
	minWipeBytes = 4096
)

// Chunk is the index of a chunk on the origin or on the COW device. The byte
// offset of chunk c is c times the chunk size in bytes.
type Chunk uint64

// Header is the 16-byte header at the start of chunk 0.
//
//	off 0  magic          SNAP_MAGIC, or 0 for a store never used
//	off 4  valid          1 usable, 0 invalidated (never recoverable)
//	off 8  version        SNAPSHOT_DISK_VERSION (1)
//	off 12 chunk_size     in 512-byte sectors
type Header struct {
	Magic        uint32
	Valid        uint32
	Version      uint32
	ChunkSectors uint32
}

// NewHeader returns the header the kernel writes when it formats a store
// with chunks of chunkSectors sectors: magic, valid=1, version=1.
func NewHeader(chunkSectors uint32) Header {
	return Header{Magic: Magic, Valid: 1, Version: DiskVersion, ChunkSectors: chunkSectors}
}

// IsFresh reports whether h has a zero magic, which the kernel treats as a
// store that was never used and formats on load.
func (h Header) IsFresh() bool { return h.Magic == 0 }

// ChunkBytes returns the chunk size in bytes.
func (h Header) ChunkBytes() int64 { return int64(h.ChunkSectors) * SectorSize }

// PerArea returns E, the number of exception records in one metadata area
// (exceptions_per_area).
func (h Header) PerArea() int { return int(h.ChunkBytes() / ExceptionSize) }

// String formats h for humans.
func (h Header) String() string {
	return fmt.Sprintf("magic %#08x valid %d version %d chunk %d sectors", h.Magic, h.Valid, h.Version, h.ChunkSectors)
}

// AppendBinary appends the 16 little-endian header bytes to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint32(b, h.Magic)
	b = binary.LittleEndian.AppendUint32(b, h.Valid)
	b = binary.LittleEndian.AppendUint32(b, h.Version)
	return binary.LittleEndian.AppendUint32(b, h.ChunkSectors), nil
}

// MarshalBinary returns the 16 header bytes.
func (h Header) MarshalBinary() ([]byte, error) { return h.AppendBinary(make([]byte, 0, HeaderSize)) }

// UnmarshalBinary decodes the first 16 bytes of b without judging them. It
// returns [ErrTruncated] if b is shorter than [HeaderSize].
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("header: %d bytes: %w", len(b), ErrTruncated)
	}
	h.Magic = binary.LittleEndian.Uint32(b[0:])
	h.Valid = binary.LittleEndian.Uint32(b[4:])
	h.Version = binary.LittleEndian.Uint32(b[8:])
	h.ChunkSectors = binary.LittleEndian.Uint32(b[12:])
	return nil
}

// Exception maps origin chunk Old to COW chunk New (struct disk_exception:
// old_chunk then new_chunk, both 64-bit little-endian).
type Exception struct {
	Old Chunk
	New Chunk
}

// AppendBinary appends the 16-byte record to b.
func (e Exception) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint64(b, uint64(e.Old))
	return binary.LittleEndian.AppendUint64(b, uint64(e.New)), nil
}

func putException(b []byte, e Exception) {
	binary.LittleEndian.PutUint64(b[0:], uint64(e.Old))
	binary.LittleEndian.PutUint64(b[8:], uint64(e.New))
}

func getException(b []byte) Exception {
	return Exception{
		Old: Chunk(binary.LittleEndian.Uint64(b[0:])),
		New: Chunk(binary.LittleEndian.Uint64(b[8:])),
	}
}

// CheckChunkSectors validates a chunk size the way
// dm_exception_store_set_chunk_size does: a power of two no larger than
// [MaxChunkSectors]. It returns [ErrBadChunkSize] otherwise.
func CheckChunkSectors(chunkSectors uint32) error {
	if bits.OnesCount32(chunkSectors) != 1 || chunkSectors > MaxChunkSectors {
		return fmt.Errorf("chunk size %d sectors: %w", chunkSectors, ErrBadChunkSize)
	}
	return nil
}

// AreaLocation returns the COW chunk holding metadata area i for chunks of
// chunkSectors sectors: 1 + (E+1)*i (area_location).
func AreaLocation(chunkSectors uint32, i int) Chunk {
	e := uint64(chunkSectors) * SectorSize / ExceptionSize
	return Chunk(hdrChunks + (e+1)*uint64(i))
}

// IsMetadata reports whether COW chunk c holds the header or a metadata
// area for chunks of chunkSectors sectors.
func IsMetadata(chunkSectors uint32, c Chunk) bool {
	stride := uint64(chunkSectors)*SectorSize/ExceptionSize + 1
	return c == 0 || uint64(c)%stride == hdrChunks
}

// ReadHeader reads and decodes the 16 header bytes at offset 0 of r without
// judging them, so that a caller can show the header of a store that
// [Open] rejects. It returns [ErrTruncated] if r ends early.
func ReadHeader(r io.ReaderAt) (Header, error) {
	var b [HeaderSize]byte
	if err := readFull(r, b[:], 0); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = ErrTruncated
		}
		return Header{}, fmt.Errorf("read header: %w", err)
	}
	var h Header
	_ = h.UnmarshalBinary(b[:])
	return h, nil
}

// writeHeaderChunk writes chunk 0 the way write_header does: the whole
// chunk zeroed, then the 16 header bytes.
func writeHeaderChunk(w io.WriterAt, h Header) error {
	buf := make([]byte, h.ChunkBytes())
	_, _ = h.AppendBinary(buf[:0])
	if _, err := w.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	return nil
}

// Format writes a fresh store with chunks of chunkSectors sectors, byte for
// byte as the kernel does when it loads a COW whose magic is zero: chunk 0
// holds the header (magic, valid=1, version=1, chunk size) and is otherwise
// zero, and chunk 1 (metadata area 0) is zeroed. Data chunks are not
// touched. It returns [ErrBadChunkSize] for an invalid chunk size.
//
// Format must not be used on a COW device that a loaded table uses.
func Format(w io.WriterAt, chunkSectors uint32) error {
	if err := CheckChunkSectors(chunkSectors); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	h := NewHeader(chunkSectors)
	if err := writeHeaderChunk(w, h); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	if err := zeroChunk(w, chunkSectors, AreaLocation(chunkSectors, 0)); err != nil {
		return fmt.Errorf("format: area 0: %w", err)
	}
	return syncIfPossible(w)
}

// Zero clears the start of a COW device so that the next activation formats
// it afresh, as LVM's wipe_lv does before attaching a COW: the first 4 KiB,
// or the whole first chunk if chunkSectors is larger. chunkSectors may be 0
// if the chunk size is unknown.
func Zero(w io.WriterAt, chunkSectors uint32) error {
	n := max(int64(minWipeBytes), int64(chunkSectors)*SectorSize)
	if _, err := w.WriteAt(make([]byte, n), 0); err != nil {
		return fmt.Errorf("zero header: %w", err)
	}
	return syncIfPossible(w)
}

// Invalidate rewrites chunk 0 with valid=0, as the kernel's drop_snapshot
// does when a snapshot overflows or a COW write fails. The kernel never
// loads the exceptions of an invalidated store again. It returns
// [ErrBadChunkSize] for an invalid chunk size.
func Invalidate(w io.WriterAt, chunkSectors uint32) error {
	if err := CheckChunkSectors(chunkSectors); err != nil {
		return fmt.Errorf("invalidate: %w", err)
	}
	h := NewHeader(chunkSectors)
	h.Valid = 0
	if err := writeHeaderChunk(w, h); err != nil {
		return fmt.Errorf("invalidate: %w", err)
	}
	return syncIfPossible(w)
}

func zeroChunk(w io.WriterAt, chunkSectors uint32, c Chunk) error {
	n := int64(chunkSectors) * SectorSize
	_, err := w.WriteAt(make([]byte, n), int64(c)*n)
	return err
}

// syncer is implemented by *os.File. When the writer offers it, the store
// code uses it where the kernel issues REQ_PREFLUSH/REQ_FUA.
type syncer interface{ Sync() error }

func syncIfPossible(w io.WriterAt) error {
	if s, ok := w.(syncer); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	return nil
}
