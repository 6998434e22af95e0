package restore

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs/sendstream"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

func stream(snap, last uint64, changed ...sendstream.Range) *sendstream.Substream {
	return &sendstream.Substream{ToName: "tank/vol@last", FromGUID: snap, ToGUID: last,
		ObjsetType: sendstream.ObjsetZvol, BlockSize: 16 * kib, Written: changed}
}

// model computes the plan block by block: a block is copied iff a cursor
// chunk, a stream write or part of a stream free touches it; it is
// sparse iff frees cover it whole (or up to the end of the volume) and it
// is not copied.
func model(in Input) (cp, sparse []bool) {
	n := (in.SizeBytes + in.BlockBytes - 1) / in.BlockBytes
	cp, sparse = make([]bool, n), make([]bool, n)
	freed := make([]int64, n) // bytes of each block freed
	mark := func(off, end int64) {
		end = min(end, in.SizeBytes)
		for b := off / in.BlockBytes; b*in.BlockBytes < end; b++ {
			cp[b] = true
		}
	}
	chunk := int64(in.ChunkSectors) * cow.SectorSize
	for _, x := range in.CursorExtents {
		mark(int64(x.Start)*chunk, int64(x.End())*chunk)
	}
	if in.Stream != nil {
		for _, r := range in.Stream.Written {
			if r.Off < uint64(in.SizeBytes) {
				mark(int64(r.Off), int64(min(r.End, uint64(in.SizeBytes))))
			}
		}
		for _, r := range in.Stream.Freed {
			for b := int64(0); b < n; b++ {
				lo, hi := b*in.BlockBytes, min((b+1)*in.BlockBytes, in.SizeBytes)
				if o := min(int64(min(r.End, uint64(hi))), hi) - max(int64(min(r.Off, uint64(hi))), lo); o > 0 {
					freed[b] += o
				}
			}
		}
	}
	for b := range freed {
		whole := min(int64(b+1)*in.BlockBytes, in.SizeBytes) - int64(b)*in.BlockBytes
		switch {
		case freed[b] == 0:
		case freed[b] >= whole && !cp[b]:
			sparse[b] = true
		case freed[b] < whole:
			cp[b] = true
		}
	}
	return cp, sparse
}

func blocksOf(p Plan, rs []ingest.Range) []bool {
	n := (p.SizeBytes + p.BlockBytes - 1) / p.BlockBytes
	out := make([]bool, n)
	for _, r := range rs {
		if r.Off%p.BlockBytes != 0 || (r.End()%p.BlockBytes != 0 && r.End() != p.SizeBytes) {
			panic("unaligned range")
		}
		for b := r.Off / p.BlockBytes; b*p.BlockBytes < r.End(); b++ {
			out[b] = true
		}
	}
	return out
}

func TestDifferential(t *testing.T) {
	in := Input{
		SizeBytes: 8*mib + 4*kib, BlockBytes: 16 * kib, ChunkSectors: 8, // 4 KiB chunks
		CursorExtents: []cow.Extent{{Start: 1, Count: 1}, {Start: 5, Count: 3}, {Start: 2048, Count: 1}}, // 4K, 20K..32K, the last 4K
		SnapGUID:      0x51, LastGUID: 0x1a,
		Stream: stream(0x51, 0x1a,
			sendstream.Range{Off: 16 * kib, End: 20 * kib},    // touches block 1, like the cursor
			sendstream.Range{Off: 100 * kib, End: 101 * kib}), // partial block 6
	}
	in.Stream.Freed = []sendstream.Range{
		{Off: 120 * kib, End: 200 * kib},           // blocks 8..11 whole, parts of 7 and 12
		{Off: 8*mib - 16*kib, End: sendstream.EOF}, // FREE to the end: the last block (cursor-written) and the 4K tail
	}
	p, err := Differential(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []ingest.Range{{Off: 0, Len: 32 * kib}, {Off: 96 * kib, Len: 32 * kib}, {Off: 192 * kib, Len: 16 * kib}, {Off: 8 * mib, Len: 4 * kib}}
	wantSparse := []ingest.Range{{Off: 128 * kib, Len: 64 * kib}, {Off: 8*mib - 16*kib, Len: 16 * kib}}
	if !slices.Equal(p.Ranges, want) || !slices.Equal(p.Sparse, wantSparse) || !p.Differential || p.Bytes() != 84*kib || p.SparseBytes() != 80*kib {
		t.Fatalf("ranges %v (%d bytes) sparse %v, want %v %v", p.Ranges, p.Bytes(), p.Sparse, want, wantSparse)
	}
	if p.CursorChunks != 5 || p.CursorBytes != 32*kib+4*kib || p.StreamRanges != 3 {
		t.Fatalf("sources %+v", p)
	}
	d := p.Describe()
	for _, s := range []string{"differential restore: copy 86016 bytes", "5 chunks", "3 ranges", "volblocksize 16384", "2 ranges, 81920 bytes"} {
		if !strings.Contains(d, s) {
			t.Errorf("describe lacks %q:\n%s", s, d)
		}
	}
}

// TestDifferentialModel checks random inputs against the block model.
func TestDifferentialModel(t *testing.T) {
	seed := uint64(1)
	rnd := func(n uint64) uint64 {
		seed = seed*6364136223846793005 + 1442695040888963407
		return (seed >> 33) % n
	}
	for i := 0; i < 300; i++ {
		bs := int64(512) << rnd(9) // 512 .. 128K
		chunkSectors := uint32(1) << rnd(8)
		size := (1 + int64(rnd(4096))) * 512
		chunk := int64(chunkSectors) * 512
		nChunks := uint64((size + chunk - 1) / chunk)
		in := Input{SizeBytes: size, BlockBytes: bs, ChunkSectors: chunkSectors, SnapGUID: 1, LastGUID: 2}
		for j := rnd(5); j > 0; j-- {
			s := rnd(nChunks)
			in.CursorExtents = append(in.CursorExtents, cow.Extent{Start: cow.Chunk(s), Count: 1 + rnd(nChunks-s)})
		}
		var rs, fs []sendstream.Range
		for j := rnd(5); j > 0; j-- {
			off := rnd(uint64(size) * 2)
			rs = append(rs, sendstream.Range{Off: off, End: off + 1 + rnd(uint64(size))})
		}
		for j := rnd(4); j > 0; j-- {
			off := rnd(uint64(size)) / 512 * 512
			end := off + 512*(1+rnd(uint64(size)/512))
			if rnd(4) == 0 {
				end = sendstream.EOF
			}
			fs = append(fs, sendstream.Range{Off: off, End: end})
		}
		in.Stream = stream(1, 2, rs...)
		in.Stream.Written = (&sendstream.Substream{Written: rs}).Changed() // sorted, merged, as Parse returns them
		in.Stream.Freed = (&sendstream.Substream{Freed: fs}).Changed()
		in.Stream.BlockSize = uint32(bs)
		p, err := Differential(in)
		if err != nil {
			t.Fatalf("%+v: %v", in, err)
		}
		wantCopy, wantSparse := model(in)
		if got := blocksOf(p, p.Ranges); !slices.Equal(got, wantCopy) {
			t.Fatalf("case %d: plan %v\n got  %v\n want %v", i, p.Ranges, got, wantCopy)
		}
		if got := blocksOf(p, p.Sparse); !slices.Equal(got, wantSparse) {
			t.Fatalf("case %d: sparse %v (freed %v)\n got  %v\n want %v", i, p.Sparse, in.Stream.Freed, got, wantSparse)
		}
		for k := 1; k < len(p.Ranges); k++ {
			if p.Ranges[k].Off <= p.Ranges[k-1].End() {
				t.Fatalf("case %d: ranges not disjoint: %v", i, p.Ranges)
			}
		}
	}
}

func TestDifferentialSnapIsLast(t *testing.T) {
	p, err := Differential(Input{SizeBytes: mib, BlockBytes: 8 * kib, ChunkSectors: 16,
		CursorExtents: []cow.Extent{{Start: 3, Count: 1}}, SnapGUID: 7, LastGUID: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Ranges, []ingest.Range{{Off: 24 * kib, Len: 8 * kib}}) || p.StreamBytes != 0 {
		t.Fatalf("%+v", p)
	}
	// Nothing changed at all: an empty plan, still differential.
	p, err = Differential(Input{SizeBytes: mib, BlockBytes: 8 * kib, ChunkSectors: 16, SnapGUID: 7, LastGUID: 7})
	if err != nil || p.Bytes() != 0 || !p.Differential || p.Ranges == nil {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestDifferentialRefusals(t *testing.T) {
	ok := Input{SizeBytes: mib, BlockBytes: 16 * kib, ChunkSectors: 8, SnapGUID: 1, LastGUID: 2, Stream: stream(1, 2)}
	full := stream(0, 2)
	otherBS := stream(1, 2)
	otherBS.BlockSize = 8 * kib
	fs := stream(1, 2)
	fs.ObjsetType = sendstream.ObjsetFilesystem
	redacted := stream(1, 2)
	redacted.Redacted = []sendstream.Range{{Off: 0, End: 4096}}
	resumed := stream(1, 2)
	resumed.Features = sendstream.FeatureResuming
	for _, c := range []struct {
		name string
		edit func(*Input)
		want error
	}{
		{"no stream", func(in *Input) { in.Stream = nil }, ErrStreamMismatch},
		{"stream while snap is last", func(in *Input) { in.LastGUID = 1; in.Stream = stream(1, 1) }, ErrStreamMismatch},
		{"full stream", func(in *Input) { in.Stream = full }, ErrStreamMismatch},
		{"from another snapshot", func(in *Input) { in.Stream = stream(9, 2) }, ErrStreamMismatch},
		{"to another snapshot", func(in *Input) { in.Stream = stream(1, 9) }, ErrStreamMismatch},
		{"volblocksize", func(in *Input) { in.Stream = otherBS }, ErrStreamMismatch},
		{"filesystem", func(in *Input) { in.Stream = fs }, ErrStreamMismatch},
		{"redacted", func(in *Input) { in.Stream = redacted }, ErrStreamMismatch},
		{"resumed", func(in *Input) { in.Stream = resumed }, ErrStreamMismatch},
		{"size", func(in *Input) { in.SizeBytes = 1000 }, ErrBadInput},
		{"block size", func(in *Input) { in.BlockBytes = 0 }, ErrBadInput},
		{"chunk size", func(in *Input) { in.ChunkSectors = 0 }, ErrBadInput},
		{"guid", func(in *Input) { in.SnapGUID = 0 }, ErrBadInput},
		{"chunk past the end", func(in *Input) { in.CursorExtents = []cow.Extent{{Start: 256, Count: 1}} }, ingest.ErrOutOfRange},
	} {
		in := ok
		c.edit(&in)
		p, err := Differential(in)
		if !errors.Is(err, c.want) || p.Ranges != nil {
			t.Errorf("%s: %v (%d ranges), want %v", c.name, err, len(p.Ranges), c.want)
		}
	}
}

func TestFull(t *testing.T) {
	p, err := Full(8*mib, "--full")
	if err != nil || p.Differential || p.Bytes() != 8*mib || !strings.Contains(p.Describe(), "full restore: copy 8388608 bytes (100.0%") {
		t.Fatalf("%+v %v\n%s", p, err, p.Describe())
	}
	if _, err := Full(0, "x"); !errors.Is(err, ErrBadInput) {
		t.Fatal(err)
	}
}
