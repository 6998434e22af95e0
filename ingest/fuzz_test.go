package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
)

// FuzzIncrementalPlan checks IncrementalPlan and AlignTo against the
// chunk-by-chunk reference of checkIncrementalPlan. spec holds extents
// as pairs of little-endian uint16 (start, count).
func FuzzIncrementalPlan(f *testing.F) {
	f.Add([]byte{3, 0, 2, 0}, uint8(3), uint16(80), uint8(5))
	f.Add([]byte{0, 0, 1, 0, 1, 0, 1, 0, 9, 0, 0, 0}, uint8(0), uint16(10), uint8(0))
	f.Add([]byte{10, 0, 1, 0}, uint8(3), uint16(81), uint8(7))
	f.Add([]byte{255, 255, 255, 255}, uint8(7), uint16(65535), uint8(9))
	f.Fuzz(func(t *testing.T, spec []byte, csShift uint8, sizeSectors uint16, blockShift uint8) {
		if sizeSectors == 0 {
			return
		}
		cs := uint32(1) << (csShift % 9)
		var extents []cow.Extent
		for ; len(spec) >= 4 && len(extents) < 64; spec = spec[4:] {
			extents = append(extents, cow.Extent{
				Start: cow.Chunk(binary.LittleEndian.Uint16(spec)),
				Count: uint64(binary.LittleEndian.Uint16(spec[2:])),
			})
		}
		checkIncrementalPlan(t, extents, cs, int64(sizeSectors)*cow.SectorSize, 512<<(blockShift%10))
	})
}

// FuzzCopy copies a pseudo-random 64 KiB source (part zero blocks) over
// the ranges spec names (pairs of little-endian uint16 offset, length),
// with arbitrary block and buffer sizes, and checks the result with
// checkCopy.
func FuzzCopy(f *testing.F) {
	f.Add(uint64(1), []byte{0, 0, 0, 64}, uint8(3), uint16(8192), false)
	f.Add(uint64(2), []byte{100, 0, 16, 39, 32, 78, 48, 117}, uint8(3), uint16(6000), true)
	f.Add(uint64(3), []byte{1, 0, 1, 0, 3, 0, 1, 0, 255, 255, 1, 0}, uint8(0), uint16(1), false)
	f.Fuzz(func(t *testing.T, seed uint64, spec []byte, blockShift uint8, bufBytes uint16, knownZero bool) {
		const size = 64 * kib
		block := int64(512) << (blockShift % 8)
		src := makeSource(rand.New(rand.NewPCG(seed, seed>>1)), size, block/2, 0.5)
		var rs []Range
		for ; len(spec) >= 4 && len(rs) < 32; spec = spec[4:] {
			off := int64(binary.LittleEndian.Uint16(spec))
			n := min(int64(binary.LittleEndian.Uint16(spec[2:])), size-off)
			rs = append(rs, Range{off, n})
		}
		p := Plan{SizeBytes: size, Ranges: merge(rs)}
		fill := byte(0xEE)
		if knownZero {
			fill = 0
		}
		dst := newFakeTarget(t, size, fill)
		opts := CopyOptions{BlockBytes: block, BufferBytes: int64(bufBytes), KnownZero: knownZero}
		st, err := Copy(context.Background(), bytes.NewReader(src), dst, p, opts)
		if err != nil {
			t.Fatalf("Copy(%v, %+v): %v", p.Ranges, opts, err)
		}
		checkCopy(t, src, dst, p, opts, st)
	})
}
