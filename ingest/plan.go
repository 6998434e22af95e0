package ingest

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dmsnap/dmsnap/cow"
)

// Sentinels.
var (
	// ErrOutOfRange: the cursor's COW names a chunk past the end of the
	// origin, so it does not belong to this origin.
	ErrOutOfRange = errors.New("changed chunk past the end of the origin")
	// ErrBadSize: a size or block size is zero, negative or not a
	// multiple of 512 bytes.
	ErrBadSize = errors.New("bad size")
)

// Range is Len bytes starting at byte Off.
type Range struct {
	Off, Len int64
}

// End returns the byte just past r.
func (r Range) End() int64 { return r.Off + r.Len }

// Plan is what one ingest copies from the new frozen snapshot into the
// zvol: Ranges, ascending and disjoint, within [0, SizeBytes).
type Plan struct {
	// Full is set for a copy of the whole device.
	Full bool
	// SizeBytes is the origin size.
	SizeBytes int64
	// ChangedChunks is the number of chunks the cursor's COW listed (0
	// for a full plan); ChunkBytes their size.
	ChangedChunks uint64
	ChunkBytes    int64
	Ranges        []Range
}

// Bytes returns the number of bytes the plan copies.
func (p Plan) Bytes() int64 {
	var n int64
	for _, r := range p.Ranges {
		n += r.Len
	}
	return n
}

func checkSize(what string, n int64) error {
	if n <= 0 || n%cow.SectorSize != 0 {
		return fmt.Errorf("%s %d: %w", what, n, ErrBadSize)
	}
	return nil
}

// FullPlan returns the plan of a full copy of a device of sizeBytes.
func FullPlan(sizeBytes int64) (Plan, error) {
	if err := checkSize("origin size", sizeBytes); err != nil {
		return Plan{}, err
	}
	return Plan{Full: true, SizeBytes: sizeBytes, Ranges: []Range{{0, sizeBytes}}}, nil
}

// IncrementalPlan turns the changed extents of the cursor's COW (see
// [cow.Store.ChangedExtents]; chunk size chunkSectors) into the byte
// ranges to copy from a device of sizeBytes. The last chunk of an origin
// whose size is not a multiple of the chunk size is clipped at sizeBytes.
// Errors: [ErrOutOfRange] for a chunk at or past the end, [ErrBadSize].
func IncrementalPlan(extents []cow.Extent, chunkSectors uint32, sizeBytes int64) (Plan, error) {
	if err := checkSize("origin size", sizeBytes); err != nil {
		return Plan{}, err
	}
	chunk := int64(chunkSectors) * cow.SectorSize
	if err := checkSize("chunk size", chunk); err != nil {
		return Plan{}, err
	}
	p := Plan{SizeBytes: sizeBytes, ChunkBytes: chunk}
	nChunks := uint64((sizeBytes + chunk - 1) / chunk)
	for _, x := range extents {
		if x.Count == 0 {
			continue
		}
		if uint64(x.Start) >= nChunks || x.Count > nChunks-uint64(x.Start) {
			return Plan{}, fmt.Errorf("chunks %d+%d (chunk size %d): origin is %d bytes: %w", x.Start, x.Count, chunk, sizeBytes, ErrOutOfRange)
		}
		off := int64(x.Start) * chunk
		end := min(int64(x.End())*chunk, sizeBytes)
		p.ChangedChunks += x.Count
		p.Ranges = append(p.Ranges, Range{off, end - off})
	}
	p.Ranges = merge(p.Ranges)
	return p, nil
}

// AlignTo widens every range of p to whole blocks of blockBytes (the
// zvol's volblocksize), merges those that then touch, and clips at
// SizeBytes. Copying the extra bytes from the new frozen snapshot is
// correct (it holds the whole device) and turns partial-block writes,
// which ZFS must read, modify and rewrite, into whole-block writes. A
// chunk size that is a multiple of blockBytes changes nothing.
func (p Plan) AlignTo(blockBytes int64) (Plan, error) {
	if err := checkSize("block size", blockBytes); err != nil {
		return Plan{}, err
	}
	out := p
	out.Ranges = make([]Range, 0, len(p.Ranges))
	for _, r := range p.Ranges {
		start := r.Off / blockBytes * blockBytes
		end := min((r.End()+blockBytes-1)/blockBytes*blockBytes, p.SizeBytes)
		out.Ranges = append(out.Ranges, Range{start, end - start})
	}
	out.Ranges = merge(out.Ranges)
	return out, nil
}

// Aligned reports whether chunks of chunkBytes map onto whole zvol blocks
// of blockBytes (chunkBytes is a multiple of blockBytes).
func Aligned(chunkBytes, blockBytes int64) bool {
	return chunkBytes > 0 && blockBytes > 0 && chunkBytes%blockBytes == 0
}

// merge sorts ranges and joins overlapping or adjacent ones.
func merge(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Off < b.Off:
			return -1
		case a.Off > b.Off:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if r.Len <= 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End() >= r.Off {
			out[n-1].Len = max(out[n-1].End(), r.End()) - out[n-1].Off
			continue
		}
		out = append(out, r)
	}
	return out
}
