package ingest

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
)

const kib = 1 << 10

func TestFullPlan(t *testing.T) {
	p, err := FullPlan(1 << 20)
	if err != nil {
		t.Fatalf("FullPlan(1 MiB): %v", err)
	}
	want := Plan{Full: true, SizeBytes: 1 << 20, Ranges: []Range{{0, 1 << 20}}}
	if !planEqual(p, want) {
		t.Fatalf("FullPlan(1 MiB) = %+v, want %+v", p, want)
	}
	if p.Bytes() != 1<<20 {
		t.Fatalf("Bytes() = %d, want %d", p.Bytes(), 1<<20)
	}
	// The smallest device: one sector.
	if p, err := FullPlan(512); err != nil || p.Bytes() != 512 {
		t.Fatalf("FullPlan(512) = %+v, %v; want 512 bytes", p, err)
	}
	for _, n := range []int64{0, -512, -1, 1, 511, 513, 1000, 1<<20 + 1} {
		if p, err := FullPlan(n); !errors.Is(err, ErrBadSize) {
			t.Errorf("FullPlan(%d) = %+v, %v; want ErrBadSize", n, p, err)
		}
	}
}

func TestIncrementalPlan(t *testing.T) {
	const (
		cs    = 8 // 4 KiB chunks
		chunk = cs * cow.SectorSize
		size  = 256 * chunk // 1 MiB
		// ragged is 10 chunks and 1 KiB: the last chunk is clipped.
		ragged = 10*chunk + 1024
	)
	for _, tc := range []struct {
		name    string
		extents []cow.Extent
		size    int64
		want    []Range
		chunks  uint64
	}{
		{name: "none", size: size},
		{name: "one", size: size, extents: []cow.Extent{{Start: 3, Count: 2}},
			want: []Range{{3 * chunk, 2 * chunk}}, chunks: 2},
		{name: "first and last", size: size,
			extents: []cow.Extent{{Start: 0, Count: 1}, {Start: 255, Count: 1}},
			want:    []Range{{0, chunk}, {255 * chunk, chunk}}, chunks: 2},
		{name: "adjacent merged", size: size,
			extents: []cow.Extent{{Start: 0, Count: 1}, {Start: 1, Count: 1}, {Start: 2, Count: 3}},
			want:    []Range{{0, 5 * chunk}}, chunks: 5},
		{name: "unsorted", size: size,
			extents: []cow.Extent{{Start: 10, Count: 1}, {Start: 2, Count: 1}, {Start: 6, Count: 1}},
			want:    []Range{{2 * chunk, chunk}, {6 * chunk, chunk}, {10 * chunk, chunk}}, chunks: 3},
		{name: "overlap merged", size: size,
			extents: []cow.Extent{{Start: 4, Count: 2}, {Start: 2, Count: 3}},
			want:    []Range{{2 * chunk, 4 * chunk}}, chunks: 5},
		{name: "contained", size: size,
			extents: []cow.Extent{{Start: 2, Count: 10}, {Start: 5, Count: 1}},
			want:    []Range{{2 * chunk, 10 * chunk}}, chunks: 11},
		{name: "count 0 ignored", size: size,
			extents: []cow.Extent{{Start: 5, Count: 0}, {Start: 7, Count: 1}, {Start: 1 << 40, Count: 0}},
			want:    []Range{{7 * chunk, chunk}}, chunks: 1},
		{name: "last chunk clipped", size: ragged, extents: []cow.Extent{{Start: 10, Count: 1}},
			want: []Range{{10 * chunk, 1024}}, chunks: 1},
		{name: "run into clipped chunk", size: ragged, extents: []cow.Extent{{Start: 8, Count: 3}},
			want: []Range{{8 * chunk, 2*chunk + 1024}}, chunks: 3},
		{name: "whole ragged device", size: ragged, extents: []cow.Extent{{Start: 0, Count: 11}},
			want: []Range{{0, ragged}}, chunks: 11},
		{name: "chunk larger than device", size: 1024, extents: []cow.Extent{{Start: 0, Count: 1}},
			want: []Range{{0, 1024}}, chunks: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := IncrementalPlan(tc.extents, cs, tc.size)
			if err != nil {
				t.Fatalf("IncrementalPlan: %v", err)
			}
			want := Plan{SizeBytes: tc.size, ChangedChunks: tc.chunks, ChunkBytes: chunk, Ranges: tc.want}
			if !planEqual(p, want) {
				t.Fatalf("IncrementalPlan(%v) = %+v, want %+v", tc.extents, p, want)
			}
			var n int64
			for _, r := range tc.want {
				n += r.Len
			}
			if p.Bytes() != n {
				t.Fatalf("Bytes() = %d, want %d", p.Bytes(), n)
			}
		})
	}
}

func TestIncrementalPlanErrors(t *testing.T) {
	const (
		cs    = 8
		chunk = cs * cow.SectorSize
		size  = 10 * chunk
	)
	for _, tc := range []struct {
		name    string
		extents []cow.Extent
		cs      uint32
		size    int64
		want    error
	}{
		{"chunk at the end", []cow.Extent{{Start: 10, Count: 1}}, cs, size, ErrOutOfRange},
		{"run past the end", []cow.Extent{{Start: 9, Count: 2}}, cs, size, ErrOutOfRange},
		{"far past the end", []cow.Extent{{Start: 1 << 40, Count: 1}}, cs, size, ErrOutOfRange},
		{"start overflow", []cow.Extent{{Start: math.MaxUint64, Count: 1}}, cs, size, ErrOutOfRange},
		{"count overflow", []cow.Extent{{Start: 1, Count: math.MaxUint64}}, cs, size, ErrOutOfRange},
		{"good then bad", []cow.Extent{{Start: 0, Count: 1}, {Start: 11, Count: 1}}, cs, size, ErrOutOfRange},
		{"past a clipped chunk", []cow.Extent{{Start: 11, Count: 1}}, cs, size + 512, ErrOutOfRange},
		{"chunk size 0", nil, 0, size, ErrBadSize},
		{"size 0", nil, cs, 0, ErrBadSize},
		{"size negative", nil, cs, -chunk, ErrBadSize},
		{"size not sectors", nil, cs, size + 100, ErrBadSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := IncrementalPlan(tc.extents, tc.cs, tc.size)
			if !errors.Is(err, tc.want) {
				t.Fatalf("IncrementalPlan(%v, %d, %d) = %+v, %v; want %v", tc.extents, tc.cs, tc.size, p, err, tc.want)
			}
			if !planEqual(p, Plan{}) {
				t.Fatalf("plan with error = %+v, want zero Plan", p)
			}
		})
	}
}

func TestAlignTo(t *testing.T) {
	const (
		block = 16 * kib
		cs    = 8 // 4 KiB chunks
		chunk = cs * cow.SectorSize
	)
	for _, tc := range []struct {
		name    string
		extents []cow.Extent
		size    int64
		want    []Range
	}{
		{name: "widened both ways", size: 1 << 20, extents: []cow.Extent{{Start: 1, Count: 1}},
			want: []Range{{0, block}}},
		{name: "already aligned", size: 1 << 20, extents: []cow.Extent{{Start: 4, Count: 4}},
			want: []Range{{block, block}}},
		{name: "same block merged", size: 1 << 20,
			extents: []cow.Extent{{Start: 1, Count: 1}, {Start: 3, Count: 1}},
			want:    []Range{{0, block}}},
		{name: "touching after widening merged", size: 1 << 20,
			extents: []cow.Extent{{Start: 3, Count: 1}, {Start: 5, Count: 1}},
			want:    []Range{{0, 2 * block}}},
		{name: "gap of a block kept", size: 1 << 20,
			extents: []cow.Extent{{Start: 3, Count: 1}, {Start: 8, Count: 1}},
			want:    []Range{{0, block}, {2 * block, block}}},
		{name: "straddling two blocks", size: 1 << 20, extents: []cow.Extent{{Start: 3, Count: 2}},
			want: []Range{{0, 2 * block}}},
		{name: "clipped at the end", size: 10 * chunk, extents: []cow.Extent{{Start: 9, Count: 1}},
			want: []Range{{2 * block, 10*chunk - 2*block}}},
		{name: "clipped ragged end", size: 10*chunk + 512, extents: []cow.Extent{{Start: 10, Count: 1}},
			want: []Range{{2 * block, 10*chunk + 512 - 2*block}}},
		{name: "block larger than device", size: 8 * kib, extents: []cow.Extent{{Start: 1, Count: 1}},
			want: []Range{{0, 8 * kib}}},
		{name: "empty", size: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := IncrementalPlan(tc.extents, cs, tc.size)
			if err != nil {
				t.Fatalf("IncrementalPlan: %v", err)
			}
			before := slices.Clone(p.Ranges)
			a, err := p.AlignTo(block)
			if err != nil {
				t.Fatalf("AlignTo: %v", err)
			}
			want := p
			want.Ranges = tc.want
			if !planEqual(a, want) {
				t.Fatalf("AlignTo(%d) of %v = %+v, want %+v", block, p.Ranges, a, want)
			}
			if !slices.Equal(p.Ranges, before) {
				t.Fatalf("AlignTo modified its receiver: %v, was %v", p.Ranges, before)
			}
		})
	}
}

func TestAlignToFullPlan(t *testing.T) {
	p, err := FullPlan(100 * 512)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.AlignTo(16 * kib)
	if err != nil {
		t.Fatal(err)
	}
	if !planEqual(a, p) {
		t.Fatalf("AlignTo of a full plan of a ragged device = %+v, want %+v", a, p)
	}
}

// TestAlignToChunkMultiple: a chunk size that is a multiple of the block
// size changes nothing, even with a clipped last chunk.
func TestAlignToChunkMultiple(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		blockSectors := int64(1) << rng.IntN(7) // 512 B .. 32 KiB
		cs := uint32(blockSectors) << rng.IntN(4)
		chunk := int64(cs) * cow.SectorSize
		nChunks := 1 + rng.Int64N(300)
		size := nChunks * chunk
		if rng.IntN(2) == 0 && chunk > 512 {
			size -= 512 * (1 + rng.Int64N(chunk/512-1)) // ragged end
		}
		extents := randomExtents(rng, uint64((size+chunk-1)/chunk))
		p, err := IncrementalPlan(extents, cs, size)
		if err != nil {
			t.Fatalf("case %d: IncrementalPlan: %v", i, err)
		}
		if !Aligned(chunk, blockSectors*512) {
			t.Fatalf("Aligned(%d, %d) = false", chunk, blockSectors*512)
		}
		a, err := p.AlignTo(blockSectors * 512)
		if err != nil {
			t.Fatalf("case %d: AlignTo: %v", i, err)
		}
		if !planEqual(a, p) {
			t.Fatalf("case %d: chunk %d, block %d, size %d: AlignTo changed %v into %v", i, chunk, blockSectors*512, size, p.Ranges, a.Ranges)
		}
	}
}

func TestAlignToBadSize(t *testing.T) {
	p, err := FullPlan(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []int64{0, -512, 1, 1000, 4097} {
		if a, err := p.AlignTo(b); !errors.Is(err, ErrBadSize) {
			t.Errorf("AlignTo(%d) = %+v, %v; want ErrBadSize", b, a, err)
		}
	}
}

func TestAligned(t *testing.T) {
	for _, tc := range []struct {
		chunk, block int64
		want         bool
	}{
		{4 * kib, 4 * kib, true},
		{64 * kib, 16 * kib, true},
		{4 * kib, 16 * kib, false},
		{24 * kib, 16 * kib, false},
		{0, 16 * kib, false},
		{16 * kib, 0, false},
		{-16 * kib, 16 * kib, false},
	} {
		if got := Aligned(tc.chunk, tc.block); got != tc.want {
			t.Errorf("Aligned(%d, %d) = %v, want %v", tc.chunk, tc.block, got, tc.want)
		}
	}
}

func TestPlanBytes(t *testing.T) {
	for _, tc := range []struct {
		p    Plan
		want int64
	}{
		{Plan{}, 0},
		{Plan{Ranges: []Range{{0, 10}}}, 10},
		{Plan{Ranges: []Range{{0, 10}, {100, 5}, {1 << 40, 1 << 30}}}, 15 + 1<<30},
	} {
		if got := tc.p.Bytes(); got != tc.want {
			t.Errorf("%+v.Bytes() = %d, want %d", tc.p, got, tc.want)
		}
	}
	if e := (Range{Off: 100, Len: 28}).End(); e != 128 {
		t.Errorf("Range{100, 28}.End() = %d, want 128", e)
	}
}

// TestIncrementalPlanProperty checks random extent lists against a
// chunk-by-chunk reference; see checkIncrementalPlan.
func TestIncrementalPlanProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for range 500 {
		cs := []uint32{1, 8, 16, 128}[rng.IntN(4)]
		chunk := int64(cs) * cow.SectorSize
		size := 512 * (1 + rng.Int64N(2000))
		nChunks := uint64((size + chunk - 1) / chunk)
		extents := randomExtents(rng, nChunks)
		if rng.IntN(10) == 0 {
			// Occasionally one past the end.
			extents = append(extents, cow.Extent{Start: cow.Chunk(rng.Uint64N(nChunks + 2)), Count: 1 + rng.Uint64N(4)})
		}
		block := 512 << rng.IntN(8)
		checkIncrementalPlan(t, extents, cs, size, int64(block))
	}
}

// randomExtents returns up to 20 extents within nChunks, unsorted,
// possibly overlapping or adjacent, some of Count 0.
func randomExtents(rng *rand.Rand, nChunks uint64) []cow.Extent {
	var xs []cow.Extent
	for range rng.IntN(21) {
		start := rng.Uint64N(nChunks)
		count := uint64(0)
		if rng.IntN(8) != 0 {
			count = 1 + rng.Uint64N(min(nChunks-start, 1+nChunks/8))
		}
		xs = append(xs, cow.Extent{Start: cow.Chunk(start), Count: count})
	}
	return xs
}

// checkIncrementalPlan compares IncrementalPlan and AlignTo with a
// reference built chunk by chunk: an error iff some extent with Count > 0
// leaves the device; otherwise the plan covers exactly the (clipped)
// changed chunks, its ranges are sorted, disjoint, non-adjacent and within
// [0, size), and AlignTo(block) covers the same bytes widened to blocks.
func checkIncrementalPlan(t *testing.T, extents []cow.Extent, cs uint32, size, block int64) {
	t.Helper()
	chunk := int64(cs) * cow.SectorSize
	nChunks := uint64((size + chunk - 1) / chunk)
	changed := make([]bool, nChunks)
	var listed uint64
	outside := false
	for _, x := range extents {
		if x.Count == 0 {
			continue
		}
		if uint64(x.Start) >= nChunks || x.Count > nChunks-uint64(x.Start) {
			outside = true
			continue
		}
		listed += x.Count
		for c := uint64(x.Start); c < uint64(x.End()); c++ {
			changed[c] = true
		}
	}
	p, err := IncrementalPlan(extents, cs, size)
	if outside {
		if !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("IncrementalPlan(%v, %d, %d) = %+v, %v; want ErrOutOfRange", extents, cs, size, p, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("IncrementalPlan(%v, %d, %d): %v", extents, cs, size, err)
	}
	if p.Full || p.SizeBytes != size || p.ChunkBytes != chunk || p.ChangedChunks != listed {
		t.Fatalf("IncrementalPlan(%v, %d, %d) = %+v: want Full false, SizeBytes %d, ChunkBytes %d, ChangedChunks %d",
			extents, cs, size, p, size, chunk, listed)
	}
	checkRanges(t, p, size)
	var want int64
	for c, ch := range changed {
		if !ch {
			continue
		}
		off := int64(c) * chunk
		end := min(off+chunk, size)
		want += end - off
		if !covered(p.Ranges, off, end) {
			t.Fatalf("IncrementalPlan(%v, %d, %d): chunk %d [%d,%d) not inside %v", extents, cs, size, c, off, end, p.Ranges)
		}
	}
	if p.Bytes() != want {
		t.Fatalf("IncrementalPlan(%v, %d, %d): Bytes() = %d, changed chunks hold %d", extents, cs, size, p.Bytes(), want)
	}

	a, err := p.AlignTo(block)
	if err != nil {
		t.Fatalf("AlignTo(%d): %v", block, err)
	}
	checkRanges(t, a, size)
	var wantAligned int64
	inBlock := make(map[int64]bool)
	for _, r := range p.Ranges {
		if !covered(a.Ranges, r.Off, r.End()) {
			t.Fatalf("AlignTo(%d) = %v drops %v of %v", block, a.Ranges, r, p.Ranges)
		}
		for b := r.Off / block; b*block < r.End(); b++ {
			if !inBlock[b] {
				inBlock[b] = true
				wantAligned += min((b+1)*block, size) - b*block
			}
		}
	}
	for _, r := range a.Ranges {
		if r.Off%block != 0 || (r.End()%block != 0 && r.End() != size) {
			t.Fatalf("AlignTo(%d) range %v is not block-aligned (size %d)", block, r, size)
		}
	}
	if a.Bytes() != wantAligned {
		t.Fatalf("AlignTo(%d) of %v = %v: %d bytes, want the %d bytes of the blocks touched", block, p.Ranges, a.Ranges, a.Bytes(), wantAligned)
	}
}

// checkRanges checks that p's ranges are non-empty, sorted, disjoint,
// non-adjacent and within [0, size).
func checkRanges(t *testing.T, p Plan, size int64) {
	t.Helper()
	for i, r := range p.Ranges {
		if r.Len <= 0 || r.Off < 0 || r.End() > size {
			t.Fatalf("range %d %v is empty or outside [0,%d): %v", i, r, size, p.Ranges)
		}
		if i > 0 && p.Ranges[i-1].End() >= r.Off {
			t.Fatalf("ranges %d and %d overlap, touch or are unsorted: %v", i-1, i, p.Ranges)
		}
	}
}

// covered reports whether [off, end) lies inside one of rs.
func covered(rs []Range, off, end int64) bool {
	for _, r := range rs {
		if r.Off <= off && end <= r.End() {
			return true
		}
	}
	return false
}

func planEqual(a, b Plan) bool {
	return a.Full == b.Full && a.SizeBytes == b.SizeBytes && a.ChangedChunks == b.ChangedChunks &&
		a.ChunkBytes == b.ChunkBytes && slices.Equal(a.Ranges, b.Ranges)
}
