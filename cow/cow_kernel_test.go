//go:build linux

package cow_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

var update = flag.Bool("update", false, "write testdata/<kernel>-<scenario>.img.gz and .json from the kernel tests (inside the VM only)")

const mib = 1 << 20

// goldenJSON mirrors the expectation file read by TestGolden.
type goldenJSON struct {
	Kernel       string      `json:"kernel"`
	Scenario     string      `json:"scenario"`
	SizeBytes    int64       `json:"size_bytes"`
	ChunkSectors uint32      `json:"chunk_sectors"`
	Status       string      `json:"status"`
	Count        *int        `json:"count,omitempty"`
	Exceptions   [][2]uint64 `json:"exceptions,omitempty"`
	Fresh        bool        `json:"fresh,omitempty"`
	Error        string      `json:"error,omitempty"`
}

type goldenScenario struct {
	name         string
	chunkSectors uint32
	cowBytes     int64
	originWrites int // scattered origin chunks written through snapshot-origin
	snapWrites   int // further chunks written to the snapshot device
	invalidated  bool
}

var goldenScenarios = []goldenScenario{
	{name: "c8-empty", chunkSectors: 8, cowBytes: 2 * mib},
	{name: "c8-origin", chunkSectors: 8, cowBytes: 2 * mib, originWrites: 40},
	{name: "c16-origin-snap", chunkSectors: 16, cowBytes: 4 * mib, originWrites: 30, snapWrites: 12},
	{name: "c8-two-areas", chunkSectors: 8, cowBytes: 4 * mib, originWrites: 300},
	{name: "c8-invalidated", chunkSectors: 8, cowBytes: mib, originWrites: 300, invalidated: true},
}

// distinctChunks returns n distinct chunks below limit, none in avoid, in
// the order a seeded generator picks them.
func distinctChunks(rng *rand.Rand, n int, limit uint64, avoid []cow.Chunk) []cow.Chunk {
	seen := map[cow.Chunk]bool{}
	for _, c := range avoid {
		seen[c] = true
	}
	var out []cow.Chunk
	for len(out) < n {
		c := cow.Chunk(rng.Uint64N(limit))
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// TestKernelGolden runs each golden scenario on the running kernel:
//  1. an 8 MiB origin of tagged chunks, a COW whose first 4 KiB are zero,
//     a persistent snapshot and a snapshot-origin over them;
//  2. origin writes of one whole chunk each at seeded scattered chunks,
//     then (c16-origin-snap) whole-chunk writes to the snapshot device;
//  3. the kernel status is read, the devices removed and the COW's
//     backing file decoded;
//  4. the exceptions on disk are exactly the written chunks in the order
//     written; Usage equals the kernel status; each exception's data chunk
//     holds the origin's original chunk (or the data written to the
//     snapshot);
//  5. c8-invalidated writes more origin chunks than the COW holds: the
//     kernel reports Invalid and the decoder fails with ErrInvalidated.
//
// With -update each image is stored in testdata/ for TestGolden.
func TestKernelGolden(t *testing.T) {
	c := testutil.Client(t)
	release := kernelRelease(t)
	const originBytes = 8 * mib
	for i, sc := range goldenScenarios {
		t.Run(sc.name, func(t *testing.T) {
			s := newStack(t, c, sc.chunkSectors, originBytes, sc.cowBytes, nil, true)
			limit := uint64(originBytes / s.chunkBytes())
			rng := rand.New(rand.NewPCG(uint64(i)+1, 6))
			originCs := distinctChunks(rng, sc.originWrites, limit, nil)
			snapCs := distinctChunks(rng, sc.snapWrites, limit, originCs)
			s.mustWriteChunks(s.originInfo.BlockPath(), tagNew, originCs)
			s.mustWriteChunks(s.snapInfo.BlockPath(), tagSnap, snapCs)
			st, raw := s.status()
			s.deactivate()
			img, err := os.ReadFile(s.cowFile)
			if err != nil {
				t.Fatal(err)
			}
			want := goldenJSON{Kernel: release, Scenario: sc.name, SizeBytes: sc.cowBytes, ChunkSectors: sc.chunkSectors, Status: raw}
			dec := cow.Decoder{ExpectChunkSectors: sc.chunkSectors}

			if sc.invalidated {
				if raw != "Invalid" {
					t.Fatalf("status %q after overflowing the COW, want Invalid", raw)
				}
				_, err := dec.Open(bytes.NewReader(img), sc.cowBytes)
				var herr *cow.HeaderError
				if !errors.Is(err, cow.ErrInvalidated) || !errors.As(err, &herr) || herr.Header.Valid != 0 || herr.Header.Magic != cow.Magic {
					t.Fatalf("Open of an invalidated store: %v", err)
				}
				dec.AllowInvalidated = true
				store, err := dec.Open(bytes.NewReader(img), sc.cowBytes)
				if err != nil {
					t.Fatalf("Open with AllowInvalidated: %v", err)
				}
				t.Logf("invalidated store keeps %d records (%v)", store.Len(), store.Usage())
				checkData(t, img, s.chunkBytes(), store, originCs, nil)
				want.Error = "invalidated"
				writeGolden(t, release, sc.name, img, want)
				return
			}

			store, err := dec.Open(bytes.NewReader(img), sc.cowBytes)
			if err != nil {
				t.Fatal(err)
			}
			wantUsage(t, store.Usage(), st, raw)
			written := slices.Concat(originCs, snapCs)
			var olds []cow.Chunk
			for _, e := range store.Exceptions() {
				olds = append(olds, e.Old)
				want.Exceptions = append(want.Exceptions, [2]uint64{uint64(e.Old), uint64(e.New)})
			}
			if !slices.Equal(olds, written) {
				t.Fatalf("on-disk origin chunks %v, written in order %v", olds, written)
			}
			if n := store.Len(); uint64(n) != uint64(st.Used())/uint64(sc.chunkSectors) {
				t.Errorf("%d exceptions, kernel status %q implies %d", n, raw, uint64(st.Used())/uint64(sc.chunkSectors))
			}
			checkData(t, img, s.chunkBytes(), store, originCs, snapCs)
			n := store.Len()
			want.Count = &n
			writeGolden(t, release, sc.name, img, want)
		})
	}
}

// checkData asserts that each exception's data chunk holds the origin's
// original chunk if it was written through the origin, or the snapshot
// write's data otherwise. Exceptions for other chunks fail.
func checkData(t *testing.T, img []byte, chunkBytes int, store *cow.Store, originCs, snapCs []cow.Chunk) {
	t.Helper()
	for old, nw := range store.All() {
		var tag string
		switch {
		case slices.Contains(originCs, old):
			tag = tagOrigin
		case slices.Contains(snapCs, old):
			tag = tagSnap
		default:
			t.Errorf("exception for origin chunk %d, which was not written", old)
			continue
		}
		off := int(nw) * chunkBytes
		if off+chunkBytes > len(img) {
			t.Errorf("chunk %d -> %d: beyond the image", old, nw)
			continue
		}
		if !bytes.Equal(img[off:off+chunkBytes], chunkData(tag, chunkBytes, old)) {
			t.Errorf("COW chunk %d does not hold the %q data of origin chunk %d", nw, tag, old)
		}
	}
}

func kernelRelease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// writeGolden stores img, cut after its last non-zero chunk, as
// testdata/<release>-<scenario>.img.gz with the expectation next to it,
// when -update is set and the test passed.
func writeGolden(t *testing.T, release, scenario string, img []byte, want goldenJSON) {
	t.Helper()
	if !*update || t.Failed() {
		return
	}
	if !testutil.InVM() {
		t.Fatal("-update only inside the test VM")
	}
	chunkBytes := int(want.ChunkSectors) * cow.SectorSize
	end := len(img)
	for end > 0 && img[end-1] == 0 {
		end--
	}
	end = (end + chunkBytes - 1) / chunkBytes * chunkBytes
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestCompression)
	if _, err := zw.Write(img[:end]); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	// One [old, new] pair per line keeps the expectation readable.
	exc := want.Exceptions
	want.Exceptions = nil
	js, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if len(exc) > 0 {
		var b strings.Builder
		b.WriteString(",\n  \"exceptions\": [\n")
		for i, e := range exc {
			sep := ","
			if i == len(exc)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, "    [%d, %d]%s\n", e[0], e[1], sep)
		}
		b.WriteString("  ]\n}")
		js = append(bytes.TrimSuffix(js, []byte("\n}")), b.String()...)
	}
	base := filepath.Join("testdata", release+"-"+scenario)
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".img.gz", zb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s.img.gz (%d bytes, image %d of %d bytes)", base, zb.Len(), end, len(img))
}

// TestKernelCrossCheck compares the decoder with the kernel on random
// write sets, live (snapshot active, COW read with O_DIRECT):
//  1. per round: chunk size 8, 16 or 32, a 16 MiB origin and an 8 MiB COW;
//  2. random runs of 1-6 chunks written to the origin, each run as one
//     write (seed logged; DMSNAP_COW_SEED replays it);
//  3. the changed-chunk set equals the chunks written, the record count
//     equals (allocated - metadata) / chunk from the kernel status, Usage
//     equals the status, and ChangedExtents are the written runs merged
//     where adjacent.
func TestKernelCrossCheck(t *testing.T) {
	c := testutil.Client(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("DMSNAP_COW_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (DMSNAP_COW_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const originBytes, cowBytes = 16 * mib, 8 * mib
	for round, chunkSectors := range []uint32{8, 16, 32, 8} {
		t.Run(fmt.Sprintf("round%d-c%d", round, chunkSectors), func(t *testing.T) {
			s := newStack(t, c, chunkSectors, originBytes, cowBytes, nil, true)
			limit := uint64(originBytes / s.chunkBytes())
			written := map[cow.Chunk]bool{}
			runs := 20 + rng.IntN(100)
			var total int
			for range runs {
				start := cow.Chunk(rng.Uint64N(limit - 6))
				n := 1 + rng.IntN(6)
				s.mustWriteRun(s.originInfo.BlockPath(), start, n)
				for k := range n {
					written[start+cow.Chunk(k)] = true
				}
				total += n
			}
			st, raw := s.status()
			img := testutil.ReadDirect(t, s.cowLoop.Path(), 0, cowBytes)
			store, err := cow.Decoder{ExpectChunkSectors: chunkSectors}.Open(bytes.NewReader(img), cowBytes)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d runs, %d chunks written (%d distinct), %d records, status %q", runs, total, len(written), store.Len(), raw)
			wantUsage(t, store.Usage(), st, raw)
			if uint64(store.Len()) != uint64(st.Used())/uint64(chunkSectors) {
				t.Errorf("%d records, kernel status %q implies %d", store.Len(), raw, uint64(st.Used())/uint64(chunkSectors))
			}
			var want []cow.Chunk
			for c := range written {
				want = append(want, c)
			}
			slices.Sort(want)
			if got := slices.Collect(store.ChangedChunks()); !slices.Equal(got, want) {
				t.Fatalf("changed chunks %v, written %v", got, want)
			}
			var wantX []cow.Extent
			for _, c := range want {
				if n := len(wantX); n > 0 && wantX[n-1].End() == c {
					wantX[n-1].Count++
				} else {
					wantX = append(wantX, cow.Extent{Start: c, Count: 1})
				}
			}
			if got := store.ChangedExtents(); !slices.Equal(got, wantX) {
				t.Fatalf("extents %v, want %v", got, wantX)
			}
		})
	}
}

// mustWriteRun writes chunks start..start+n-1 with tagNew data as one
// O_DIRECT write.
func (s *stack) mustWriteRun(path string, start cow.Chunk, n int) {
	s.t.Helper()
	cb := s.chunkBytes()
	buf := testutil.AlignedBuf(s.t, n*cb)
	for k := range n {
		fillChunk(buf[k*cb:(k+1)*cb], tagNew, start+cow.Chunk(k))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|directFlag, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, int64(start)*int64(cb)); err != nil {
		s.t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		s.t.Fatal(err)
	}
}

// TestKernelAcceptsEncodedStore loads the kernel on a store we wrote:
//  1. per chunk size 8 and 16: the COW backing file is built with
//     cow.Create and Writer.Add (tagEncoder data) for seeded scattered
//     origin chunks, 300 of them for chunk 8 (two metadata areas);
//  2. a persistent snapshot and a snapshot-origin are loaded on it: the
//     kernel status equals the Writer's Usage;
//  3. the whole snapshot device reads our data where we put exceptions
//     and the origin elsewhere;
//  4. the kernel continues our store: origin writes to 5 new chunks and
//     to one of ours add exactly 5 records after ours, holding the
//     origin's data, and leave ours unchanged.
func TestKernelAcceptsEncodedStore(t *testing.T) {
	c := testutil.Client(t)
	const originBytes, cowBytes = 8 * mib, 4 * mib
	for _, tc := range []struct {
		chunkSectors uint32
		n            int
	}{{8, 300}, {16, 100}} {
		t.Run(fmt.Sprintf("c%d", tc.chunkSectors), func(t *testing.T) {
			chunkBytes := int(tc.chunkSectors) * cow.SectorSize
			limit := uint64(originBytes / chunkBytes)
			rng := rand.New(rand.NewPCG(uint64(tc.chunkSectors), 9))
			ours := distinctChunks(rng, tc.n, limit, nil)
			var ourUsage cow.Usage
			var ourRecords []cow.Exception
			s := newStack(t, c, tc.chunkSectors, originBytes, cowBytes, func(f *os.File) {
				w, err := cow.Create(f, cowBytes, tc.chunkSectors)
				if err != nil {
					t.Fatal(err)
				}
				for _, old := range ours {
					e, err := w.Add(old, chunkData(tagEncoder, chunkBytes, old))
					if err != nil {
						t.Fatal(err)
					}
					ourRecords = append(ourRecords, e)
				}
				ourUsage = w.State().Usage()
			}, true)

			st, raw := s.status()
			wantUsage(t, ourUsage, st, raw)

			snap := testutil.ReadDirect(t, s.snapInfo.BlockPath(), 0, originBytes)
			for k := cow.Chunk(0); uint64(k) < limit; k++ {
				tag := tagOrigin
				if slices.Contains(ours, k) {
					tag = tagEncoder
				}
				got := snap[int(k)*chunkBytes : (int(k)+1)*chunkBytes]
				if !bytes.Equal(got, chunkData(tag, chunkBytes, k)) {
					t.Fatalf("snapshot chunk %d does not read the %q data", k, tag)
				}
			}

			more := distinctChunks(rng, 5, limit, ours)
			s.mustWriteChunks(s.originInfo.BlockPath(), tagNew, append(slices.Clone(more), ours[0]))
			st, raw = s.status()
			s.deactivate()
			img, err := os.ReadFile(s.cowFile)
			if err != nil {
				t.Fatal(err)
			}
			store, err := cow.Decoder{ExpectChunkSectors: tc.chunkSectors}.Open(bytes.NewReader(img), cowBytes)
			if err != nil {
				t.Fatal(err)
			}
			wantUsage(t, store.Usage(), st, raw)
			recs := store.Exceptions()
			if len(recs) != len(ours)+len(more) || !slices.Equal(recs[:len(ours)], ourRecords) {
				t.Fatalf("kernel-continued store: %d records, want ours (%d) then %d new", len(recs), len(ours), len(more))
			}
			for i, e := range recs[len(ours):] {
				if e.Old != more[i] {
					t.Errorf("record %d: old %d, want %d", len(ours)+i, e.Old, more[i])
				}
				off := int(e.New) * chunkBytes
				if !bytes.Equal(img[off:off+chunkBytes], chunkData(tagOrigin, chunkBytes, e.Old)) {
					t.Errorf("kernel record %v: data chunk does not hold the origin's original data", e)
				}
			}
		})
	}
}
