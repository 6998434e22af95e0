package sendstream

import (
	"fmt"
	"slices"
)

// blockList widens ranges to blocks of bs, clipped at size, and lists
// the block indexes.
func blockList(rs []Range, bs, size uint64) []uint64 {
	var out []uint64
	for _, r := range rs {
		end := min(r.End, size)
		for b := r.Off / bs; b*bs < end; b++ {
			if n := len(out); n == 0 || out[n-1] < b {
				out = append(out, b)
			}
		}
	}
	return out
}

func toSet(bs []uint64) map[uint64]bool {
	m := make(map[uint64]bool, len(bs))
	for _, b := range bs {
		m[b] = true
	}
	return m
}

// verifyBlocks checks what a zvol's stream says against what reading the
// snapshot devices found: diff are the blocks in which "from" and "to"
// differ (for a full stream: "to"'s non-zero blocks), nonzero the
// non-zero blocks of "to", n the number of blocks.
//
//   - DRR_WRITE names exactly the changed blocks that hold data in "to"
//     (the scripts never rewrite a block with its old content);
//   - DRR_FREE names only blocks that are zero in "to" (ZFS sends holes
//     it cannot date, send_holes_without_birth_time=1, so not only the
//     changed ones), and every changed block that became zero;
//   - a full stream describes every block: written or freed.
func verifyBlocks(written, freed, diff, nonzero []uint64, n uint64, full bool) error {
	nz, w, f := toSet(nonzero), toSet(written), toSet(freed)
	var wantW, lost []uint64
	for _, b := range diff {
		if nz[b] {
			wantW = append(wantW, b)
		} else if !f[b] {
			lost = append(lost, b)
		}
	}
	if !slices.Equal(written, wantW) && !(len(written) == 0 && len(wantW) == 0) {
		return fmt.Errorf("DRR_WRITE blocks %v, want the changed non-zero blocks %v", written, wantW)
	}
	if len(lost) > 0 {
		return fmt.Errorf("blocks %v changed to zero but no DRR_FREE names them", lost)
	}
	for _, b := range freed {
		if nz[b] {
			return fmt.Errorf("DRR_FREE names block %d, which holds data", b)
		}
		if w[b] {
			return fmt.Errorf("block %d both written and freed", b)
		}
	}
	if full {
		for b := uint64(0); b < n; b++ {
			if !w[b] && !f[b] {
				return fmt.Errorf("full stream says nothing about block %d", b)
			}
		}
	}
	return nil
}
