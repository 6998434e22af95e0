package restore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"github.com/dmsnap/dmsnap/ingest"
)

// SampleBlocks is how many blocks outside the restored ranges a
// verification compares.
const SampleBlocks = 64

// verify compares the restored ranges of plan on the volume with the
// snapshot (sha256 per MiB, the first difference located to the byte),
// then a sample of the blocks the plan left alone.
func (x *run) verify(ctx context.Context, snap SnapInfo, plan Plan) error {
	src, err := x.src.OpenSnapshot(ctx, snap.Name)
	if err != nil {
		return fmt.Errorf("verify: open %s: %w", snap.Name, err)
	}
	defer func() {
		if cerr := src.Close(); cerr != nil {
			x.obs.Warn(fmt.Sprintf("verify: close %s: %v", snap.Name, cerr))
		}
	}()
	dst, err := x.pool.ReadVolume(x.req.Volume)
	if err != nil {
		return fmt.Errorf("verify: open %s: %w", x.out.Target, err)
	}
	defer dst.Close()
	restored := slices.Concat(plan.Ranges, plan.Sparse)
	slices.SortFunc(restored, func(a, b ingest.Range) int { return int(max(-1, min(1, a.Off-b.Off))) })
	n, err := Compare(ctx, src, dst, restored)
	x.out.VerifiedBytes = n
	if err != nil {
		return fmt.Errorf("verify %s against %s: %w", x.out.Target, snap.Name, err)
	}
	sample := Sample(plan.SizeBytes, plan.BlockBytes, restored, SampleBlocks, snap.GUID)
	n, err = Compare(ctx, src, dst, sample)
	x.out.SampledBytes = n
	if err != nil {
		return fmt.Errorf("verify %s against %s (sampled blocks the restore did not write): %w", x.out.Target, snap.Name, err)
	}
	return nil
}

// Compare reads ranges of a and b a MiB at a time and compares their
// sha256 digests; at the first difference it returns [ErrVerify] naming
// the first differing byte. It returns the bytes compared.
func Compare(ctx context.Context, a, b io.ReaderAt, ranges []ingest.Range) (int64, error) {
	const piece = 1 << 20
	ba, bb := make([]byte, piece), make([]byte, piece)
	var done int64
	for _, r := range ranges {
		for off := r.Off; off < r.End(); {
			if err := ctx.Err(); err != nil {
				return done, err
			}
			n := min(int64(piece), r.End()-off)
			if err := readFull(a, ba[:n], off); err != nil {
				return done, err
			}
			if err := readFull(b, bb[:n], off); err != nil {
				return done, err
			}
			if sha256.Sum256(ba[:n]) != sha256.Sum256(bb[:n]) {
				i := int64(0)
				for i < n && ba[i] == bb[i] {
					i++
				}
				return done, fmt.Errorf("first difference at byte %d (block of %d bytes at %d): %w", off+i, n, off, ErrVerify)
			}
			done += n
			off += n
		}
	}
	return done, nil
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	m, err := r.ReadAt(b, off)
	if m == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d+%d: %w", off, len(b), err)
}

// Sample returns up to n blocks of blockBytes within [0, sizeBytes),
// outside the ascending ranges skip, picked pseudo-randomly from seed
// (the same for the same inputs), ascending.
func Sample(sizeBytes, blockBytes int64, skip []ingest.Range, n int, seed uint64) []ingest.Range {
	if blockBytes <= 0 || sizeBytes <= 0 {
		return nil
	}
	blocks := (sizeBytes + blockBytes - 1) / blockBytes
	picked := map[int64]bool{}
	state := seed | 1
	for tries := 0; len(picked) < n && tries < 16*n; tries++ {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		b := int64(state % uint64(blocks))
		off := b * blockBytes
		end := min(off+blockBytes, sizeBytes)
		if overlaps(skip, off, end) {
			continue
		}
		picked[b] = true
	}
	var out []ingest.Range
	for b := range picked {
		off := b * blockBytes
		out = append(out, ingest.Range{Off: off, Len: min(off+blockBytes, sizeBytes) - off})
	}
	slices.SortFunc(out, func(a, b ingest.Range) int { return int(max(-1, min(1, a.Off-b.Off))) })
	return out
}

func overlaps(rs []ingest.Range, off, end int64) bool {
	i, _ := slices.BinarySearchFunc(rs, off, func(r ingest.Range, t int64) int {
		if r.End() <= t {
			return -1
		}
		return 1
	})
	return i < len(rs) && rs[i].Off < end
}
