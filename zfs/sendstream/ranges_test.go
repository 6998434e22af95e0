package sendstream

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
