package restore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs/sendstream"
)

// Sentinels.
var (
	// ErrStreamMismatch: the send stream is not `zfs send -i @SNAP @LAST`
	// of this zvol (other snapshots, a full stream, another volblocksize).
	ErrStreamMismatch = errors.New("send stream does not match the restore")
	// ErrBadInput: a size, block size or chunk size is zero, negative or
	// not a multiple of 512 bytes, or the chunk extents do not fit.
	ErrBadInput = errors.New("bad restore input")
)

// Input is what a differential restore plan is computed from.
type Input struct {
	// SizeBytes is the volume size; it equals SNAP's volsize.
	SizeBytes int64
	// BlockBytes is the zvol's volblocksize.
	BlockBytes int64
	// CursorExtents are the changed chunks of the current ingest cursor's
	// COW ([cow.Store.ChangedExtents]), of ChunkSectors each: the origin's
	// writes since the last ingest.
	CursorExtents []cow.Extent
	ChunkSectors  uint32
	// SnapGUID and LastGUID identify SNAP (the restore point) and LAST
	// (the last ingest snapshot, the lineage's GUID).
	SnapGUID, LastGUID uint64
	// Stream is the parsed `zfs send -i @SNAP @LAST` of the zvol; nil
	// when SNAP is LAST (nothing changed in ZFS since).
	Stream *sendstream.Substream
}

// Plan is a restore's copy plan: Ranges of SNAP, ascending and disjoint
// within [0, SizeBytes), are copied onto the volume. Sparse ranges
// (disjoint from Ranges) are zero on the volume: there only SNAP's
// non-zero blocks are written.
type Plan struct {
	// Differential is false for a full copy.
	Differential bool
	SizeBytes    int64
	BlockBytes   int64
	Ranges       []ingest.Range
	// Sparse are the whole blocks the stream frees (DRR_FREE: zero in
	// LAST) that the origin did not write since: the volume holds zeros
	// there, so the copy reads SNAP and writes only its non-zero blocks.
	// ZFS lists every hole under a changed indirect block, not only the
	// changed ones (send_holes_without_birth_time=1, module/zfs/
	// dmu_traverse.c), so on a sparse zvol this is most of its holes;
	// reading a hole of SNAP costs no disk I/O.
	Sparse []ingest.Range
	// Reason says why the plan is full or differential.
	Reason string
	// The sources of a differential plan, each widened to BlockBytes:
	// bytes of the cursor's changed chunks (CursorChunks of them) and
	// bytes of the stream's written ranges and partly freed blocks
	// (StreamRanges of them); they overlap where both changed a block.
	CursorChunks uint64
	CursorBytes  int64
	StreamRanges int
	StreamBytes  int64
}

// Bytes returns the number of bytes the plan copies unconditionally.
func (p Plan) Bytes() int64 { return total(p.Ranges) }

// SparseBytes returns the bytes of Sparse: read from SNAP, written only
// where SNAP is not zero.
func (p Plan) SparseBytes() int64 { return total(p.Sparse) }

func total(rs []ingest.Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

func checkSize(what string, n int64) error {
	if n <= 0 || n%cow.SectorSize != 0 {
		return fmt.Errorf("%s %d: not a positive multiple of %d: %w", what, n, cow.SectorSize, ErrBadInput)
	}
	return nil
}

// Full returns the plan of a full copy of a volume of sizeBytes, with the
// reason (e.g. "--full", "target is not the zvol's ingest origin",
// "lineage does not match: ...").
func Full(sizeBytes int64, reason string) (Plan, error) {
	if err := checkSize("volume size", sizeBytes); err != nil {
		return Plan{}, err
	}
	return Plan{SizeBytes: sizeBytes, Ranges: []ingest.Range{{Off: 0, Len: sizeBytes}}, Reason: reason}, nil
}

// Differential returns the differential plan of in. Errors:
// [ErrStreamMismatch] when the stream is not the increment SNAP..LAST (or
// missing while SNAP is not LAST, or present while it is), [ErrBadInput],
// and [ingest.ErrOutOfRange] for a COW chunk past the end of the volume.
func Differential(in Input) (Plan, error) {
	if err := checkSize("volume size", in.SizeBytes); err != nil {
		return Plan{}, err
	}
	if err := checkSize("volblocksize", in.BlockBytes); err != nil {
		return Plan{}, err
	}
	if in.SnapGUID == 0 || in.LastGUID == 0 {
		return Plan{}, fmt.Errorf("snapshot guids %#x, %#x: zero: %w", in.SnapGUID, in.LastGUID, ErrBadInput)
	}
	if err := checkStream(in); err != nil {
		return Plan{}, err
	}
	cursor, err := ingest.IncrementalPlan(in.CursorExtents, in.ChunkSectors, in.SizeBytes)
	if err != nil {
		if errors.Is(err, ingest.ErrBadSize) {
			return Plan{}, fmt.Errorf("cursor COW: %w: %w", err, ErrBadInput)
		}
		return Plan{}, fmt.Errorf("cursor COW: %w", err)
	}
	if cursor, err = cursor.AlignTo(in.BlockBytes); err != nil {
		return Plan{}, err
	}
	// The stream's writes are copied; its frees are copied where they
	// cover part of a block (the rest of the block holds data), and are
	// sparse where they cover whole blocks.
	stream := ingest.Plan{SizeBytes: in.SizeBytes}
	var freed []ingest.Range
	if in.Stream != nil {
		for _, r := range in.Stream.Written {
			stream.Ranges = appendClipped(stream.Ranges, r, in.SizeBytes)
		}
		for _, r := range in.Stream.Freed {
			r, ok := clip(r, in.SizeBytes)
			if !ok {
				continue
			}
			start := (r.Off + in.BlockBytes - 1) / in.BlockBytes * in.BlockBytes
			end := r.End() / in.BlockBytes * in.BlockBytes
			if r.End() == in.SizeBytes {
				end = in.SizeBytes
			}
			if start >= end {
				stream.Ranges = append(stream.Ranges, r)
				continue
			}
			if start > r.Off {
				stream.Ranges = append(stream.Ranges, ingest.Range{Off: r.Off, Len: start - r.Off})
			}
			if end < r.End() {
				stream.Ranges = append(stream.Ranges, ingest.Range{Off: end, Len: r.End() - end})
			}
			freed = append(freed, ingest.Range{Off: start, Len: end - start})
		}
		if stream, err = stream.AlignTo(in.BlockBytes); err != nil {
			return Plan{}, err
		}
	}
	union := ingest.Plan{SizeBytes: in.SizeBytes, Ranges: append(append([]ingest.Range(nil), cursor.Ranges...), stream.Ranges...)}
	if union, err = union.AlignTo(in.BlockBytes); err != nil { // merges
		return Plan{}, err
	}
	sparse := ingest.Plan{SizeBytes: in.SizeBytes, Ranges: freed}
	if sparse, err = sparse.AlignTo(in.BlockBytes); err != nil { // merges; already aligned
		return Plan{}, err
	}
	p := Plan{
		Differential: true,
		SizeBytes:    in.SizeBytes,
		BlockBytes:   in.BlockBytes,
		Ranges:       union.Ranges,
		Sparse:       subtract(sparse.Ranges, union.Ranges),
		CursorChunks: cursor.ChangedChunks,
		CursorBytes:  cursor.Bytes(),
		StreamRanges: len(stream.Ranges),
		StreamBytes:  stream.Bytes(),
	}
	if p.Ranges == nil {
		p.Ranges = []ingest.Range{}
	}
	if in.Stream == nil {
		p.Reason = "the volume is the zvol's ingest origin and SNAP is its last ingest snapshot: only the origin's writes since differ"
	} else {
		p.Reason = "the volume is the zvol's ingest origin: the origin's writes since the last ingest and ZFS's changes from SNAP to the last ingest snapshot differ"
	}
	return p, nil
}

// clip returns the part of r within [0, size).
func clip(r sendstream.Range, size int64) (ingest.Range, bool) {
	end := min(r.End, uint64(size))
	if r.Off >= end {
		return ingest.Range{}, false
	}
	return ingest.Range{Off: int64(r.Off), Len: int64(end - r.Off)}, true
}

func appendClipped(rs []ingest.Range, r sendstream.Range, size int64) []ingest.Range {
	if c, ok := clip(r, size); ok {
		rs = append(rs, c)
	}
	return rs
}

// subtract returns a minus b; both ascending and disjoint.
func subtract(a, b []ingest.Range) []ingest.Range {
	var out []ingest.Range
	j := 0
	for _, r := range a {
		off, end := r.Off, r.End()
		for j < len(b) && b[j].End() <= off {
			j++
		}
		for k := j; k < len(b) && b[k].Off < end; k++ {
			if b[k].Off > off {
				out = append(out, ingest.Range{Off: off, Len: b[k].Off - off})
			}
			off = max(off, b[k].End())
		}
		if off < end {
			out = append(out, ingest.Range{Off: off, Len: end - off})
		}
	}
	return out
}

func checkStream(in Input) error {
	s := in.Stream
	switch {
	case s == nil && in.SnapGUID != in.LastGUID:
		return fmt.Errorf("no send stream, but SNAP (guid %#x) is not the last ingest snapshot (guid %#x): %w", in.SnapGUID, in.LastGUID, ErrStreamMismatch)
	case s == nil:
		return nil
	case in.SnapGUID == in.LastGUID:
		return fmt.Errorf("a send stream, but SNAP is the last ingest snapshot (guid %#x): %w", in.SnapGUID, ErrStreamMismatch)
	case !s.Incremental():
		return fmt.Errorf("send stream of %s is a full stream, want zfs send -i: %w", s.ToName, ErrStreamMismatch)
	case s.FromGUID != in.SnapGUID:
		return fmt.Errorf("send stream is incremental from guid %#x, SNAP is guid %#x: %w", s.FromGUID, in.SnapGUID, ErrStreamMismatch)
	case s.ToGUID != in.LastGUID:
		return fmt.Errorf("send stream is of guid %#x (%s), the last ingest snapshot is guid %#x: %w", s.ToGUID, s.ToName, in.LastGUID, ErrStreamMismatch)
	case s.ObjsetType != sendstream.ObjsetZvol:
		return fmt.Errorf("send stream of %s is not a zvol's: %w", s.ToName, ErrStreamMismatch)
	case s.Features&sendstream.FeatureResuming != 0 || s.Features&sendstream.FeatureRedacted != 0 || len(s.Redacted) > 0:
		return fmt.Errorf("send stream of %s is resumed or redacted: it does not describe the whole increment: %w", s.ToName, ErrStreamMismatch)
	case s.BlockSize != 0 && int64(s.BlockSize) != in.BlockBytes:
		return fmt.Errorf("send stream says volblocksize %d, the zvol has %d: %w", s.BlockSize, in.BlockBytes, ErrStreamMismatch)
	}
	return nil
}

// Describe returns the --dry-run text of p: full or differential, the
// bytes to copy and why.
func (p Plan) Describe() string {
	var b strings.Builder
	pct := 0.0
	if p.SizeBytes > 0 {
		pct = 100 * float64(p.Bytes()) / float64(p.SizeBytes)
	}
	kind := "full"
	if p.Differential {
		kind = "differential"
	}
	fmt.Fprintf(&b, "%s restore: copy %d bytes (%.1f%% of %d) in %d ranges\n", kind, p.Bytes(), pct, p.SizeBytes, len(p.Ranges))
	fmt.Fprintf(&b, "  why: %s\n", p.Reason)
	if p.Differential {
		fmt.Fprintf(&b, "  origin writes since the last ingest: %d chunks, %d bytes (cursor COW)\n", p.CursorChunks, p.CursorBytes)
		fmt.Fprintf(&b, "  ZFS changes SNAP..last ingest: %d ranges, %d bytes (zfs send -i)\n", p.StreamRanges, p.StreamBytes)
		fmt.Fprintf(&b, "  freed since SNAP (zero on the volume, only SNAP's non-zero blocks written): %d ranges, %d bytes\n", len(p.Sparse), p.SparseBytes())
		fmt.Fprintf(&b, "  widened to volblocksize %d\n", p.BlockBytes)
	}
	return b.String()
}
