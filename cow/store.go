package cow

import (
	"cmp"
	"fmt"
	"io"
	"iter"
	"math/bits"
	"slices"
	"sort"
)

// Store is a decoded persistent exception store: its [State] and all its
// exceptions. A Store is immutable and safe for concurrent readers.
type Store struct {
	st    State
	disk  []Exception // on-disk order
	byOld []Exception // sorted by Old; shares disk's array if already sorted
	// tail is the raw current area (ps->area) from its terminating record
	// to the end of the piece Walk read it in (at most 1 MiB); the rest
	// of the area is taken as zero, as the kernel leaves it.
	tail []byte
}

// currentArea fills b with the current area's bytes from offset off of the
// area: its records, then the raw tail, then zeros.
func (s *Store) currentArea(b []byte, off int64) {
	clear(b)
	per := s.st.PerArea()
	recs := s.disk[s.st.CurrentArea*per:]
	for i := int(off / ExceptionSize); i < len(recs) && int64(i)*ExceptionSize < off+int64(len(b)); i++ {
		putException(b[int64(i)*ExceptionSize-off:], recs[i])
	}
	if t := int64(s.st.CurrentCommitted) * ExceptionSize; t < off+int64(len(b)) && t+int64(len(s.tail)) > off {
		src := s.tail[max(off-t, 0):]
		copy(b[max(t-off, 0):], src)
	}
}

// Open is [Decoder.Open] with the zero Decoder.
func Open(r io.ReaderAt, sizeBytes int64) (*Store, error) {
	return Decoder{}.Open(r, sizeBytes)
}

// Open decodes the whole store on r, whose device is sizeBytes long, as
// [Decoder.Walk] does, keeps its exceptions and checks them for
// [ErrDuplicateOld] and [ErrDuplicateNew] (in a [*RecordError] naming the
// later record). It returns a Store or an error, never both; a rejected
// header can be recovered from the [*HeaderError] with errors.As.
//
// A fresh store (magic 0) decodes to a Store with [Store.Fresh] set and no
// exceptions.
func (d Decoder) Open(r io.ReaderAt, sizeBytes int64) (*Store, error) {
	var disk []Exception
	st, tail, err := d.walk(r, sizeBytes, func(_ int, e Exception) error {
		if len(disk) == cap(disk) {
			// Double: append's gentler growth allocates about five
			// times the final size for large stores.
			disk = slices.Grow(disk, max(len(disk), 256))
		}
		disk = append(disk, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s := &Store{st: st, disk: disk, tail: tail}
	if err := s.index(); err != nil {
		return nil, err
	}
	return s, nil
}

// index builds byOld and checks for duplicates. Stores written by the kernel
// for sequential origin writes are already in order, so sorting is skipped
// when it can be.
func (s *Store) index() error {
	newSorted := slices.IsSortedFunc(s.disk, func(a, b Exception) int { return cmp.Compare(a.New, b.New) })
	if slices.IsSortedFunc(s.disk, func(a, b Exception) int { return cmp.Compare(a.Old, b.Old) }) {
		s.byOld = s.disk
	} else {
		s.byOld = slices.Clone(s.disk)
		sortByOld(s.byOld)
	}
	for i := 1; i < len(s.byOld); i++ {
		if s.byOld[i].Old == s.byOld[i-1].Old {
			return s.duplicate(ErrDuplicateOld, func(e Exception) bool { return e.Old == s.byOld[i].Old })
		}
	}
	if newSorted {
		for i := 1; i < len(s.disk); i++ {
			if s.disk[i].New == s.disk[i-1].New {
				return s.duplicate(ErrDuplicateNew, func(e Exception) bool { return e.New == s.disk[i].New })
			}
		}
		return nil
	}
	news := make([]Chunk, len(s.disk))
	for i, e := range s.disk {
		news[i] = e.New
	}
	slices.Sort(news)
	for i := 1; i < len(news); i++ {
		if news[i] == news[i-1] {
			return s.duplicate(ErrDuplicateNew, func(e Exception) bool { return e.New == news[i] })
		}
	}
	return nil
}

// duplicate returns a RecordError for the second on-disk record matching.
func (s *Store) duplicate(sentinel error, match func(Exception) bool) error {
	seen := false
	for k, e := range s.disk {
		if !match(e) {
			continue
		}
		if seen {
			e := &RecordError{Index: k, Exception: e, Err: sentinel}
			if per := s.st.PerArea(); per > 0 {
				e.Area, e.Index = k/per, k%per
			}
			return e
		}
		seen = true
	}
	return sentinel // unreachable when called correctly
}

// sortByOld sorts by Old with an LSD radix sort on the significant bytes,
// which is several times faster than a comparison sort for large stores.
func sortByOld(es []Exception) {
	if len(es) < 256 {
		slices.SortStableFunc(es, func(a, b Exception) int { return cmp.Compare(a.Old, b.Old) })
		return
	}
	var hi Chunk
	for _, e := range es {
		hi |= e.Old
	}
	nbytes := (bits.Len64(uint64(hi)) + 7) / 8
	src, dst := es, make([]Exception, len(es))
	for b := range nbytes {
		shift := uint(8 * b)
		var count [257]int
		for _, e := range src {
			count[int(byte(e.Old>>shift))+1]++
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, e := range src {
			k := byte(e.Old >> shift)
			dst[count[k]] = e
			count[k]++
		}
		src, dst = dst, src
	}
	if &src[0] != &es[0] {
		copy(es, src)
	}
}

// State returns what the kernel would know after loading the store.
func (s *Store) State() State { return s.st }

// Header returns the header as read from chunk 0.
func (s *Store) Header() Header { return s.st.Header }

// Fresh reports whether the store was never used (magic 0).
func (s *Store) Fresh() bool { return s.st.Fresh }

// ChunkSectors returns the effective chunk size in sectors (0 for a fresh
// store opened without [Decoder.ExpectChunkSectors]).
func (s *Store) ChunkSectors() uint32 { return s.st.ChunkSectors }

// Usage returns the kernel's status numbers for the store; see
// [State.Usage].
func (s *Store) Usage() Usage { return s.st.Usage() }

// Len returns the number of exceptions.
func (s *Store) Len() int { return len(s.disk) }

// Exceptions returns a copy of the exceptions in on-disk order.
func (s *Store) Exceptions() []Exception { return slices.Clone(s.disk) }

// All yields every exception as (origin chunk, COW chunk) in ascending
// origin-chunk order.
func (s *Store) All() iter.Seq2[Chunk, Chunk] {
	return func(yield func(Chunk, Chunk) bool) {
		for _, e := range s.byOld {
			if !yield(e.Old, e.New) {
				return
			}
		}
	}
}

// ChangedChunks yields the changed origin chunks in ascending order.
func (s *Store) ChangedChunks() iter.Seq[Chunk] {
	return func(yield func(Chunk) bool) {
		for _, e := range s.byOld {
			if !yield(e.Old) {
				return
			}
		}
	}
}

// Lookup returns the COW chunk holding the snapshot's copy of origin chunk
// old, and whether there is one.
func (s *Store) Lookup(old Chunk) (Chunk, bool) {
	i := sort.Search(len(s.byOld), func(i int) bool { return s.byOld[i].Old >= old })
	if i < len(s.byOld) && s.byOld[i].Old == old {
		return s.byOld[i].New, true
	}
	return 0, false
}

// Extent is a run of Count consecutive chunks starting at Start.
type Extent struct {
	Start Chunk
	Count uint64
}

// End returns the chunk just past the extent.
func (x Extent) End() Chunk { return x.Start + Chunk(x.Count) }

// ChangedExtents returns the changed origin chunks merged into maximal runs
// of adjacent chunks, in ascending order. Copying these extents from the
// origin's old contents (the snapshot device) is what an incremental copy
// needs.
func (s *Store) ChangedExtents() []Extent {
	n := 0
	for i, e := range s.byOld {
		if i == 0 || s.byOld[i-1].Old+1 != e.Old {
			n++
		}
	}
	out := make([]Extent, 0, n)
	for _, e := range s.byOld {
		if n := len(out); n > 0 && out[n-1].End() == e.Old {
			out[n-1].Count++
			continue
		}
		out = append(out, Extent{Start: e.Old, Count: 1})
	}
	return out
}

// Bitmap returns the changed origin chunks as a bitmap of originChunks bits.
// It returns [ErrOutOfRange] if an exception names an origin chunk at or
// past originChunks, which means the store does not belong to that origin.
func (s *Store) Bitmap(originChunks Chunk) (*Bitmap, error) {
	b := NewBitmap(originChunks)
	if n := len(s.byOld); n > 0 && s.byOld[n-1].Old >= originChunks {
		return nil, fmt.Errorf("bitmap of %d chunks: origin chunk %d: %w", originChunks, s.byOld[n-1].Old, ErrOutOfRange)
	}
	for _, e := range s.byOld {
		b.Set(e.Old)
	}
	return b, nil
}

// Bitmap is a fixed-size set of chunks.
type Bitmap struct {
	words []uint64
	n     Chunk
}

// NewBitmap returns an empty bitmap for chunks 0..n-1.
func NewBitmap(n Chunk) *Bitmap {
	return &Bitmap{words: make([]uint64, (uint64(n)+63)/64), n: n}
}

// Len returns the number of chunks the bitmap covers.
func (b *Bitmap) Len() Chunk { return b.n }

// Set adds chunk c; it panics if c >= Len().
func (b *Bitmap) Set(c Chunk) {
	if c >= b.n {
		panic(fmt.Sprintf("cow: bitmap set %d of %d", c, b.n))
	}
	b.words[c/64] |= 1 << (c % 64)
}

// Has reports whether chunk c is set; chunks past Len() are not.
func (b *Bitmap) Has(c Chunk) bool {
	return c < b.n && b.words[c/64]&(1<<(c%64)) != 0
}

// Count returns the number of chunks set.
func (b *Bitmap) Count() uint64 {
	var n int
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// Extents yields the runs of set chunks in ascending order.
func (b *Bitmap) Extents() iter.Seq[Extent] {
	return func(yield func(Extent) bool) {
		var cur Extent
		for i, w := range b.words {
			for w != 0 {
				c := Chunk(i*64 + bits.TrailingZeros64(w))
				w &= w - 1
				if cur.Count > 0 && cur.End() == c {
					cur.Count++
					continue
				}
				if cur.Count > 0 && !yield(cur) {
					return
				}
				cur = Extent{Start: c, Count: 1}
			}
		}
		if cur.Count > 0 {
			yield(cur)
		}
	}
}
