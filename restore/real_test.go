package restore

import (
	"compress/gzip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs/sendstream"
)

const realData = "../zfs/sendstream/testdata/"

func realBlocks(t *testing.T, name string) (diff, nonzero map[int64]bool) {
	t.Helper()
	b, err := os.ReadFile(realData + name + ".blocks")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	set := func(line string) map[int64]bool {
		m := map[int64]bool{}
		for _, f := range strings.Fields(line) {
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			m[v] = true
		}
		return m
	}
	return set(lines[2]), set(lines[3])
}

// TestRealIncrement simulates a differential restore block by block on
// the real OpenZFS 2.3.2 increment of testdata (@s1 = SNAP, @s2 = LAST,
// blocks known from the VM's devices) plus origin writes since LAST:
// copying the plan's Ranges from SNAP and SNAP's non-zero blocks in
// Sparse turns the origin into SNAP, and every Sparse block is zero on
// the origin before the copy.
func TestRealIncrement(t *testing.T) {
	const bs, size = 16 << 10, 8 << 20
	_, nz1 := realBlocks(t, "zfs-2.3.2-v16k-full")
	diff, nz2 := realBlocks(t, "zfs-2.3.2-v16k-incr-plain")
	for _, variant := range []string{"plain", "c", "e", "L", "ceL"} {
		f, err := os.Open(realData + "zfs-2.3.2-v16k-incr-" + variant + ".stream.gz")
		if err != nil {
			t.Fatal(err)
		}
		z, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sendstream.ZvolChanges(z)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Origin writes since LAST: 4 KiB chunks in blocks 3, 21 and
		// 100..101.
		extents := []cow.Extent{{Start: 12, Count: 1}, {Start: 86, Count: 1}, {Start: 400, Count: 8}}
		p, err := Differential(Input{SizeBytes: size, BlockBytes: bs, CursorExtents: extents, ChunkSectors: 8,
			SnapGUID: s.FromGUID, LastGUID: s.ToGUID, Stream: s})
		if err != nil {
			t.Fatal(err)
		}
		n := int64(size / bs)
		snap, target := make([]string, n), make([]string, n)
		for b := int64(0); b < n; b++ {
			if nz1[b] {
				snap[b] = "snap" + strconv.FormatInt(b, 10)
			}
			target[b] = snap[b]
			if diff[b] {
				target[b] = ""
				if nz2[b] {
					target[b] = "last" + strconv.FormatInt(b, 10)
				}
			}
		}
		for _, x := range extents {
			for c := x.Start; c < x.End(); c++ {
				target[int64(c)*4096/bs] = "origin"
			}
		}
		in := func(rs []ingest.Range, b int64) bool {
			for _, r := range rs {
				if r.Off <= b*bs && b*bs < r.End() {
					return true
				}
			}
			return false
		}
		for b := int64(0); b < n; b++ {
			switch {
			case in(p.Ranges, b):
				target[b] = snap[b]
			case in(p.Sparse, b):
				if target[b] != "" {
					t.Fatalf("%s: block %d is sparse but holds %q on the origin", variant, b, target[b])
				}
				target[b] = snap[b]
			}
			if target[b] != snap[b] {
				t.Fatalf("%s: after the restore block %d is %q, SNAP has %q (plan %v sparse %v)", variant, b, target[b], snap[b], p.Ranges, p.Sparse)
			}
		}
		if p.Bytes() > 8*bs {
			t.Errorf("%s: copies %d bytes; the changed and origin-written blocks are 8", variant, p.Bytes())
		}
		t.Logf("%s: %s", variant, p.Describe())
	}
}
