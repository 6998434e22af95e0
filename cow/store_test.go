package cow

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustCreate(t testing.TB, sizeBytes int64, chunkSectors uint32) (*Writer, *memDev) {
	t.Helper()
	d := newMemDev(sizeBytes)
	w, err := Create(d, sizeBytes, chunkSectors)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return w, d
}

func mustAdd(t testing.TB, w *Writer, old Chunk) Exception {
	t.Helper()
	e, err := w.Add(old, nil)
	if err != nil {
		t.Fatalf("Add(%d): %v", old, err)
	}
	return e
}

func mustOpen(t testing.TB, d *memDev) *Store {
	t.Helper()
	s, err := Open(d, d.size)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestKernelStatusNumbers checks Usage against status lines printed by real
// kernels for a 64 MiB origin, chunk 8, after sequential origin writes
// (one exception per 4 KiB chunk).
func TestKernelStatusNumbers(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		cowBytes int64
		written  int // bytes of origin written
		want     string
	}{
		{16 * mib, 0, "16/32768 16"},
		{16 * mib, 1 * mib, "2072/32768 24"},
		{16 * mib, 8 * mib, "16464/32768 80"},
		{32 * mib, 8 * mib, "16464/65536 80"},
	} {
		t.Run(fmt.Sprintf("%dMiB-cow-%dKiB-written", tc.cowBytes/mib, tc.written/1024), func(t *testing.T) {
			w, d := mustCreate(t, tc.cowBytes, 8)
			for i := range tc.written / 4096 {
				mustAdd(t, w, Chunk(i))
			}
			s := mustOpen(t, d)
			if got := s.Usage().String(); got != tc.want {
				t.Errorf("Usage = %q, want %q", got, tc.want)
			}
			if got := w.State().Usage().String(); got != tc.want {
				t.Errorf("Writer usage = %q, want %q", got, tc.want)
			}
		})
	}

	// A COW that was never used: the kernel formats it on load and reports
	// the same numbers as an empty formatted store.
	d := newMemDev(16 * mib)
	s, err := Decoder{ExpectChunkSectors: 8}.Open(d, d.size)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Fresh() || s.Usage().String() != "16/32768 16" {
		t.Errorf("fresh store: Fresh %v Usage %q, want true \"16/32768 16\"", s.Fresh(), s.Usage())
	}
	if s, _ := Open(d, d.size); s.Usage().String() != "0/32768 0" {
		t.Errorf("fresh store without chunk size: Usage %q, want \"0/32768 0\"", s.Usage())
	}
}

// TestMergeOnDisk simulates the kernel's merge, which clears records from
// the end of the last area, and checks that a re-read matches the kernel's
// merge bookkeeping: next_free = area_location(current_area) +
// current_committed + 1, and 16/32768 16 when everything is merged.
func TestMergeOnDisk(t *testing.T) {
	w, d := mustCreate(t, 16<<20, 8)
	for i := range 2048 {
		mustAdd(t, w, Chunk(i))
	}
	zeroRecords := func(area, from, to int) {
		off := int64(AreaLocation(8, area))*4096 + int64(from)*16
		if _, err := d.WriteAt(make([]byte, (to-from)*16), off); err != nil {
			t.Fatal(err)
		}
	}
	zeroRecords(7, 156, 256)
	s := mustOpen(t, d)
	st := s.State()
	if st.CurrentArea != 7 || st.CurrentCommitted != 156 || s.Len() != 2048-100 {
		t.Fatalf("after partial merge: area %d committed %d len %d", st.CurrentArea, st.CurrentCommitted, s.Len())
	}
	if want := AreaLocation(8, 7) + 156 + 1; st.NextFree != want {
		t.Errorf("NextFree = %d, want %d", st.NextFree, want)
	}
	for a := 7; a >= 0; a-- {
		zeroRecords(a, 0, 256)
	}
	if got := mustOpen(t, d).Usage().String(); got != "16/32768 16" {
		t.Errorf("after full merge: %q, want \"16/32768 16\"", got)
	}
}

func TestWriterMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []uint32{1, 8} {
		per := int(c) * 32
		for _, n := range []int{0, 1, per - 1, per, per + 1, 2 * per, 3*per + 7} {
			olds := randomOlds(rng, n, 1<<40)
			size := int64(c) * 512 * int64(n+n/per+8)
			w, d := mustCreate(t, size, c)
			for _, o := range olds {
				mustAdd(t, w, o)
			}
			ref, _ := refImage(c, size, olds)
			if !d.equal(ref) {
				t.Errorf("C=%d n=%d: Writer image differs from reference encoder", c, n)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []uint32{8, 16, 1024} {
		per := int(c) * 32
		counts := []int{0, 1, per - 1, per, per + 1, 2*per - 1, 2 * per, 2*per + 1, rng.IntN(3 * per)}
		for _, n := range counts {
			t.Run(fmt.Sprintf("C=%d/n=%d", c, n), func(t *testing.T) {
				testRoundTrip(t, rng, c, n)
			})
		}
	}
}

func testRoundTrip(t *testing.T, rng *rand.Rand, c uint32, n int) {
	chunkBytes := int64(c) * 512
	per := int(c) * 32
	size := chunkBytes * int64(n+n/per+4+rng.IntN(3))
	olds := randomOlds(rng, n, uint64(n)*3+10)
	withData := c <= 16
	// With 512 KiB areas each Add rewrites 512 KiB; build large stores
	// with the reference encoder instead (TestWriterMatchesReference
	// checks that both agree).
	useWriter := int64(n)*chunkBytes <= 64<<20
	var (
		w     *Writer
		d     *memDev
		added []Exception
	)
	data := map[Chunk][]byte{}
	if !useWriter {
		d, added = refImage(c, size, olds)
	} else {
		w, d = mustCreate(t, size, c)
		for _, o := range olds {
			var buf []byte
			if withData {
				buf = make([]byte, chunkBytes)
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
			}
			e, err := w.Add(o, buf)
			if err != nil {
				t.Fatalf("Add(%d): %v", o, err)
			}
			if buf != nil {
				data[e.New] = buf
			}
			added = append(added, e)
		}
	}

	s := mustOpen(t, d)
	if got := s.Exceptions(); !slices.Equal(got, added) && !(len(got) == 0 && len(added) == 0) {
		t.Fatalf("Exceptions differ: got %d, want %d", len(got), len(added))
	}
	if w != nil && s.State() != w.State() {
		t.Errorf("decoded state %+v, writer state %+v", s.State(), w.State())
	}
	st := s.State()
	if st.CurrentArea != n/per || st.CurrentCommitted != n%per || st.Count != uint64(n) {
		t.Errorf("area %d committed %d count %d, want %d %d %d", st.CurrentArea, st.CurrentCommitted, st.Count, n/per, n%per, n)
	}
	// next_free: the chunk after the last allocated one, past a metadata
	// chunk; 2 when empty.
	wantNext := Chunk(2)
	if n > 0 {
		wantNext = added[n-1].New + 1
		if IsMetadata(c, wantNext) {
			wantNext++
		}
	}
	if st.NextFree != wantNext {
		t.Errorf("NextFree %d, want %d", st.NextFree, wantNext)
	}
	if len(data) > 0 {
		for nc, buf := range data {
			if got := d.read(t, int64(nc)*chunkBytes, chunkBytes); !bytes.Equal(got, buf) {
				t.Fatalf("data chunk %d differs", nc)
			}
		}
	}
	checkMaps(t, s, added)

	// Encode over the original changes nothing; Encode onto an empty
	// device reproduces every metadata chunk.
	same := d.clone()
	if err := Encode(same, s); err != nil {
		t.Fatal(err)
	}
	if !same.equal(d) {
		t.Error("Encode over the original changed it")
	}
	fresh := newMemDev(size)
	if err := Encode(fresh, s); err != nil {
		t.Fatal(err)
	}
	for area := 0; area <= st.CurrentArea; area++ {
		off := int64(AreaLocation(c, area)) * chunkBytes
		if !bytes.Equal(fresh.read(t, off, chunkBytes), d.read(t, off, chunkBytes)) {
			t.Errorf("encoded area %d differs", area)
		}
	}
	if !bytes.Equal(fresh.read(t, 0, chunkBytes), d.read(t, 0, chunkBytes)) {
		t.Error("encoded header chunk differs")
	}

	// Continuing a decoded store gives the same bytes as one Writer.
	if n > 2 && useWriter {
		k := n / 2
		w1, d1 := mustCreate(t, size, c)
		for _, e := range added[:k] {
			mustAdd(t, w1, e.Old)
		}
		w2, err := NewWriter(d1, mustOpen(t, d1))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range added[k:] {
			if got := mustAdd(t, w2, e.Old); got != e {
				t.Fatalf("continued Add = %+v, want %+v", got, e)
			}
		}
		meta := d.clone()
		for nc := range data {
			_, _ = meta.WriteAt(make([]byte, chunkBytes), int64(nc)*chunkBytes)
		}
		if !d1.equal(meta) {
			t.Error("continued store differs from one written in one go")
		}
	}
}

// checkMaps compares the origin-order views with a brute-force model.
func checkMaps(t *testing.T, s *Store, added []Exception) {
	t.Helper()
	model := map[Chunk]Chunk{}
	var maxOld Chunk
	for _, e := range added {
		model[e.Old] = e.New
		maxOld = max(maxOld, e.Old)
	}
	olds := slices.Sorted(maps.Keys(model))
	var gotOlds []Chunk
	for o, nc := range s.All() {
		if model[o] != nc {
			t.Fatalf("All yields %d->%d, want ->%d", o, nc, model[o])
		}
		gotOlds = append(gotOlds, o)
	}
	if !slices.Equal(gotOlds, olds) {
		t.Fatalf("All order differs")
	}
	if got := slices.Collect(s.ChangedChunks()); !slices.Equal(got, olds) {
		t.Fatalf("ChangedChunks differ")
	}
	for _, o := range []Chunk{0, 1, maxOld, maxOld + 1} {
		nc, ok := s.Lookup(o)
		want, wantOK := model[o]
		if nc != want || ok != wantOK {
			t.Errorf("Lookup(%d) = %d %v, want %d %v", o, nc, ok, want, wantOK)
		}
	}
	var wantExt []Extent
	for _, o := range olds {
		if k := len(wantExt); k > 0 && wantExt[k-1].Start+Chunk(wantExt[k-1].Count) == o {
			wantExt[k-1].Count++
		} else {
			wantExt = append(wantExt, Extent{o, 1})
		}
	}
	ext := s.ChangedExtents()
	if !slices.Equal(ext, wantExt) {
		t.Fatalf("ChangedExtents = %v, want %v", ext, wantExt)
	}
	b, err := s.Bitmap(maxOld + 1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Count() != uint64(len(olds)) {
		t.Errorf("Bitmap.Count = %d, want %d", b.Count(), len(olds))
	}
	for _, o := range []Chunk{0, 1, maxOld, maxOld + 1} {
		_, want := model[o]
		if b.Has(o) != want {
			t.Errorf("Bitmap.Has(%d) = %v, want %v", o, !want, want)
		}
	}
	if got := slices.Collect(b.Extents()); !slices.Equal(got, wantExt) {
		t.Errorf("Bitmap.Extents = %v, want %v", got, wantExt)
	}
	if len(olds) > 0 {
		if _, err := s.Bitmap(maxOld); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Bitmap(%d) with chunk %d set: %v, want ErrOutOfRange", maxOld, maxOld, err)
		}
	}
}

func TestSortByOld(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 255, 256, 1000, 70000} {
		for _, limit := range []uint64{300, 1 << 20, 1 << 63} {
			es := make([]Exception, n)
			for i := range es {
				es[i] = Exception{Old: Chunk(rng.Uint64N(limit)), New: Chunk(i)}
			}
			want := slices.Clone(es)
			slices.SortStableFunc(want, func(a, b Exception) int { return cmp.Compare(a.Old, b.Old) })
			sortByOld(es)
			if !slices.Equal(es, want) {
				t.Fatalf("n=%d limit=%d: radix sort differs from stable sort", n, limit)
			}
		}
	}
}

func TestWriterCommitOrder(t *testing.T) {
	// C=1: E=32, area 0 at chunk 1, area 1 at chunk 34.
	d := newMemDev(100 * 512)
	w, err := Create(d, d.size, 1)
	if err != nil {
		t.Fatal(err)
	}
	d.chunk = 512
	data := make([]byte, 512)
	if _, err := w.Add(7, data); err != nil {
		t.Fatal(err)
	}
	if want := []string{"w2", "sync", "w1", "sync"}; !slices.Equal(d.log, want) {
		t.Errorf("first commit: %v, want %v", d.log, want)
	}
	for i := range 30 {
		if _, err := w.Add(Chunk(100+i), nil); err != nil {
			t.Fatal(err)
		}
	}
	d.log = nil
	if _, err := w.Add(99, data); err != nil { // fills area 0
		t.Fatal(err)
	}
	if want := []string{"w33", "w34", "sync", "w1", "sync"}; !slices.Equal(d.log, want) {
		t.Errorf("commit filling area 0: %v, want %v", d.log, want)
	}
	d.log = nil
	if e, err := w.Add(98, data); err != nil || e.New != 35 {
		t.Fatalf("Add after full area = %+v, %v; want new chunk 35", e, err)
	}
	if want := []string{"w35", "sync", "w34", "sync"}; !slices.Equal(d.log, want) {
		t.Errorf("first commit in area 1: %v, want %v", d.log, want)
	}
}

func TestWalkReadsOnlyMetadata(t *testing.T) {
	w, d := mustCreate(t, 16<<20, 8)
	for i := range 1000 {
		mustAdd(t, w, Chunk(i))
	}
	rec := &readRecorder{r: d}
	var n int
	st, err := Walk(rec, d.size, func(area int, e Exception) error {
		if want := n / 256; area != want {
			t.Fatalf("record %d reported in area %d, want %d", n, area, want)
		}
		n++
		return nil
	})
	if err != nil || n != 1000 || st.Count != 1000 {
		t.Fatalf("Walk: %d records, count %d, %v", n, st.Count, err)
	}
	want := []int64{0, 1 * 4096, 258 * 4096, 515 * 4096, 772 * 4096}
	if !slices.Equal(rec.offs, want) {
		t.Errorf("Walk read at %v, want %v", rec.offs, want)
	}
	stop := errors.New("stop")
	if _, err := Walk(d, d.size, func(int, Exception) error { return stop }); err != stop {
		t.Errorf("Walk callback error = %v, want it returned as is", err)
	}
}

type readRecorder struct {
	r    *memDev
	offs []int64
}

func (r *readRecorder) ReadAt(p []byte, off int64) (int, error) {
	r.offs = append(r.offs, off)
	return r.r.ReadAt(p, off)
}
