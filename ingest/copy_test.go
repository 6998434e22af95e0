package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var errInjected = errors.New("injected failure")

// call is one WriteAt or Zero call seen by fakeTarget.
type call struct {
	zero   bool
	off, n int64
}

func (c call) end() int64 { return c.off + c.n }

// fakeTarget is an in-memory Target that records its calls and can fail
// the n-th WriteAt or Zero (1-based; 0 never).
type fakeTarget struct {
	mu                  sync.Mutex
	t                   testing.TB
	data                []byte
	calls               []call // successful calls, in order
	attempts            []call // every call, the failed one included
	failWrite, failZero int
	writes, zeros       int
}

func newFakeTarget(t testing.TB, size int64, fill byte) *fakeTarget {
	return &fakeTarget{t: t, data: bytes.Repeat([]byte{fill}, int(size))}
}

func (f *fakeTarget) check(c call) {
	if c.off < 0 || c.n <= 0 || c.end() > int64(len(f.data)) {
		f.t.Errorf("call %+v outside the target [0,%d) or empty", c, len(f.data))
	}
}

func (f *fakeTarget) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := call{off: off, n: int64(len(p))}
	f.attempts = append(f.attempts, c)
	f.writes++
	if f.writes == f.failWrite {
		return 0, errInjected
	}
	f.check(c)
	copy(f.data[off:], p)
	f.calls = append(f.calls, c)
	return len(p), nil
}

func (f *fakeTarget) Zero(off, n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := call{zero: true, off: off, n: n}
	f.attempts = append(f.attempts, c)
	f.zeros++
	if f.zeros == f.failZero {
		return errInjected
	}
	f.check(c)
	clear(f.data[off : off+n])
	f.calls = append(f.calls, c)
	return nil
}

// sums adds up the bytes of the successful WriteAt and Zero calls.
func (f *fakeTarget) sums() (written, zeroed int64) {
	for _, c := range f.calls {
		if c.zero {
			zeroed += c.n
		} else {
			written += c.n
		}
	}
	return written, zeroed
}

// makeSource returns size bytes made of blocks of block bytes, each
// all-zero with probability zeroFrac, otherwise random data or a single
// non-zero byte at a random place (possibly the last byte).
func makeSource(rng *rand.Rand, size, block int64, zeroFrac float64) []byte {
	b := make([]byte, size)
	for off := int64(0); off < size; off += block {
		blk := b[off:min(off+block, size)]
		switch r := rng.Float64(); {
		case r < zeroFrac:
		case r < zeroFrac+(1-zeroFrac)/2:
			for i := range blk {
				blk[i] = byte(rng.Uint32())
			}
		default:
			i := rng.IntN(len(blk))
			if rng.IntN(3) == 0 {
				i = len(blk) - 1
			}
			blk[i] = byte(1 + rng.IntN(255))
		}
	}
	return b
}

// checkCopy checks the outcome of a successful Copy of p from src into
// f, whose bytes were all 0xEE before (0 for KnownZero): the target
// equals src over the plan and is unchanged elsewhere; every call lies in one range; calls do not
// overlap and cover the plan except skipped zero blocks; Zero calls cover
// only zeros and are maximal runs; every block piece of a WriteAt holds
// data; Stats add up.
func checkCopy(t *testing.T, src []byte, f *fakeTarget, p Plan, opts CopyOptions, st Stats) {
	t.Helper()
	block := opts.BlockBytes
	if block <= 0 {
		block = 16 * kib
	}
	const (
		none = iota
		written
		zeroed
	)
	owner := make([]uint8, len(src))
	var nWritten, nZeroed int64
	for _, c := range f.calls {
		in := false
		for _, r := range p.Ranges {
			if r.Off <= c.off && c.end() <= r.End() {
				in = true
			}
		}
		if !in {
			t.Fatalf("call %+v not inside one range of %v", c, p.Ranges)
		}
		kind := uint8(written)
		if c.zero {
			kind = zeroed
			nZeroed += c.n
			if !isAllZero(src[c.off:c.end()]) {
				t.Fatalf("Zero(%d, %d) over source data", c.off, c.n)
			}
		} else {
			nWritten += c.n
			for pos := c.off; pos < c.end(); {
				step := min(block-pos%block, c.end()-pos)
				if isAllZero(src[pos : pos+step]) {
					t.Fatalf("WriteAt(%d+%d) writes the zero block piece %d+%d", c.off, c.n, pos, step)
				}
				pos += step
			}
		}
		for i := c.off; i < c.end(); i++ {
			if owner[i] != none {
				t.Fatalf("byte %d written twice (call %+v)", i, c)
			}
			owner[i] = kind
		}
	}
	// Zero runs are maximal: within a range, the bytes just before and
	// after a Zero call were written with WriteAt (or are skipped when
	// KnownZero, in which case there is no Zero call at all).
	for _, c := range f.calls {
		if !c.zero {
			continue
		}
		for _, r := range p.Ranges {
			if r.Off <= c.off && c.end() <= r.End() {
				if c.off > r.Off && owner[c.off-1] != written {
					t.Fatalf("Zero(%d, %d) not coalesced with what precedes it (owner %d)", c.off, c.n, owner[c.off-1])
				}
				if c.end() < r.End() && owner[c.end()] != written {
					t.Fatalf("Zero(%d, %d) not coalesced with what follows it (owner %d)", c.off, c.n, owner[c.end()])
				}
			}
		}
	}
	inPlan := make([]bool, len(src))
	for _, r := range p.Ranges {
		for i := r.Off; i < r.End(); i++ {
			inPlan[i] = true
		}
	}
	fill := byte(0xEE)
	if opts.KnownZero {
		fill = 0
	}
	var nSkipped int64
	for i := range src {
		switch {
		case !inPlan[i]:
			if f.data[i] != fill {
				t.Fatalf("byte %d outside the plan changed from %#x to %#x", i, fill, f.data[i])
			}
		case owner[i] == none:
			if !opts.KnownZero {
				t.Fatalf("byte %d of the plan neither written nor zeroed", i)
			}
			if src[i] != 0 {
				t.Fatalf("byte %d (%#x) of the plan skipped", i, src[i])
			}
			nSkipped++
		case f.data[i] != src[i]:
			t.Fatalf("target byte %d = %#x, source %#x", i, f.data[i], src[i])
		}
	}
	if opts.KnownZero && nZeroed != 0 {
		t.Fatalf("KnownZero copy called Zero: %v", f.calls)
	}
	want := Stats{Ranges: len(p.Ranges), BytesRead: p.Bytes(), BytesWritten: nWritten, BytesZeroed: nZeroed, BytesSkipped: nSkipped}
	if st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
	if st.BytesWritten+st.BytesZeroed+st.BytesSkipped != p.Bytes() {
		t.Fatalf("Stats %+v do not add up to the plan's %d bytes", st, p.Bytes())
	}
}

func isAllZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// blocks builds a source of 4 KiB blocks from a pattern: 'D' data, 'Z'
// zeros.
func blocks(pattern string) []byte {
	var b []byte
	for _, c := range pattern {
		blk := make([]byte, 4*kib)
		if c == 'D' {
			for i := range blk {
				blk[i] = byte(i%251 + 1)
			}
		}
		b = append(b, blk...)
	}
	return b
}

// TestCopyCalls pins the exact calls for small patterns: 4 KiB blocks,
// 16 KiB buffers (four blocks).
func TestCopyCalls(t *testing.T) {
	W := func(off, n int64) call { return call{off: off * kib, n: n * kib} }
	Z := func(off, n int64) call { return call{zero: true, off: off * kib, n: n * kib} }
	for _, tc := range []struct {
		name      string
		pattern   string
		knownZero bool
		want      []call
	}{
		{"mixed", "DZZDDZZZ", false, []call{W(0, 4), Z(4, 8), W(12, 4), W(16, 4), Z(20, 12)}},
		{"mixed known zero", "DZZDDZZZ", true, []call{W(0, 4), W(12, 4), W(16, 4)}},
		{"zero run across buffers", "DZZZZZDD", false, []call{W(0, 4), Z(4, 20), W(24, 8)}},
		{"data run cut at buffers", "ZZZDDDDZ", false, []call{Z(0, 12), W(12, 4), W(16, 12), Z(28, 4)}},
		{"data run within a buffer", "DDDDDDDD", false, []call{W(0, 16), W(16, 16)}},
		{"all zero", "ZZZZZZZZ", false, []call{Z(0, 32)}},
		{"all zero known zero", "ZZZZZZZZ", true, nil},
		{"leading zeros", "ZZZZZDZD", false, []call{Z(0, 20), W(20, 4), Z(24, 4), W(28, 4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := blocks(tc.pattern)
			p, err := FullPlan(int64(len(src)))
			if err != nil {
				t.Fatal(err)
			}
			fill := byte(0xEE)
			if tc.knownZero {
				fill = 0
			}
			f := newFakeTarget(t, int64(len(src)), fill)
			opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 16 * kib, Writers: 1, KnownZero: tc.knownZero}
			st, err := Copy(context.Background(), bytes.NewReader(src), f, p, opts)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if !slices.Equal(f.calls, tc.want) {
				t.Fatalf("calls = %+v, want %+v", f.calls, tc.want)
			}
			checkCopy(t, src, f, p, opts, st)
		})
	}
}

// TestCopyTrailingZeroRunCounted: the zero run still pending when the
// last range ends is passed to Zero and counted in the returned Stats.
func TestCopyTrailingZeroRunCounted(t *testing.T) {
	src := blocks("DZZZ")
	p := Plan{SizeBytes: int64(len(src)), Ranges: []Range{{0, int64(len(src))}}}
	f := newFakeTarget(t, int64(len(src)), 0xEE)
	st, err := Copy(context.Background(), bytes.NewReader(src), f, p, CopyOptions{BlockBytes: 4 * kib})
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesZeroed != 12*kib || st.BytesWritten != 4*kib {
		t.Fatalf("Stats = %+v, want 4 KiB written and 12 KiB zeroed", st)
	}
}

func TestCopyIncremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const size = 256 * kib
	src := makeSource(rng, size, 4*kib, 0.4)
	p, err := IncrementalPlan(randomExtents(rng, size/(4*kib)), 8, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Ranges) < 2 {
		t.Fatalf("test plan too small: %v", p.Ranges)
	}
	for _, knownZero := range []bool{false, true} {
		fill := byte(0xEE)
		if knownZero {
			fill = 0
		}
		f := newFakeTarget(t, size, fill)
		opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 12 * kib, KnownZero: knownZero}
		st, err := Copy(context.Background(), bytes.NewReader(src), f, p, opts)
		if err != nil {
			t.Fatalf("KnownZero %v: Copy: %v", knownZero, err)
		}
		checkCopy(t, src, f, p, opts, st)
		if knownZero && st.BytesSkipped == 0 || !knownZero && st.BytesZeroed == 0 {
			t.Fatalf("KnownZero %v: Stats %+v: source has zero blocks in the plan, none were holes", knownZero, st)
		}
	}
}

// TestCopyUnaligned: ranges not aligned to blocks, a buffer size that is
// not a multiple of the block size, blocks with a single data byte.
func TestCopyUnaligned(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const size = 200 * kib
	for i := range 100 {
		block := int64(512) << rng.IntN(6)
		src := makeSource(rng, size, block, 0.5)
		var rs []Range
		for range 1 + rng.IntN(6) {
			off := rng.Int64N(size - 1)
			rs = append(rs, Range{off, 1 + rng.Int64N(min(size-off, 40*kib))})
		}
		p := Plan{SizeBytes: size, Ranges: merge(rs)}
		knownZero := rng.IntN(2) == 0
		fill := byte(0xEE)
		if knownZero {
			fill = 0
		}
		f := newFakeTarget(t, size, fill)
		opts := CopyOptions{BlockBytes: block, BufferBytes: 1 + rng.Int64N(5*block), KnownZero: knownZero}
		var progress []int64
		opts.Progress = func(done, total int64) { progress = append(progress, done) }
		st, err := Copy(context.Background(), bytes.NewReader(src), f, p, opts)
		if err != nil {
			t.Fatalf("case %d: Copy(%v, %+v): %v", i, p.Ranges, opts, err)
		}
		checkCopy(t, src, f, p, opts, st)
		// Buffers are BufferBytes rounded up to a block.
		buf := (opts.BufferBytes + block - 1) / block * block
		var n int
		for _, r := range p.Ranges {
			n += int((r.Len + buf - 1) / buf)
		}
		if len(progress) != n {
			t.Fatalf("case %d: %d reads of %d bytes, want %d for %v", i, len(progress), buf, n, p.Ranges)
		}
	}
}

func TestCopyDefaults(t *testing.T) {
	// One data byte in the second 16 KiB block: with the default block
	// size the whole block is data, the rest zeros.
	src := make([]byte, 64*kib)
	src[20000] = 1
	p, err := FullPlan(int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeTarget(t, int64(len(src)), 0xEE)
	st, err := Copy(context.Background(), bytes.NewReader(src), f, p, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []call{{zero: true, off: 0, n: 16 * kib}, {off: 16 * kib, n: 16 * kib}, {zero: true, off: 32 * kib, n: 32 * kib}}
	// The default is several writers: the calls are these, in any order.
	slices.SortFunc(f.calls, func(a, b call) int { return int(a.off - b.off) })
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls = %+v, want %+v", f.calls, want)
	}
	checkCopy(t, src, f, p, CopyOptions{}, st)

	// The default buffer is 1 MiB: 1 MiB + 16 KiB takes two reads.
	src = make([]byte, 1<<20+16*kib)
	p, err = FullPlan(int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	var done []int64
	_, err = Copy(context.Background(), bytes.NewReader(src), newFakeTarget(t, int64(len(src)), 0), p,
		CopyOptions{KnownZero: true, Progress: func(d, _ int64) { done = append(done, d) }})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done, []int64{1 << 20, 1<<20 + 16*kib}) {
		t.Fatalf("progress = %v, want [1 MiB, 1 MiB+16 KiB]", done)
	}
}

func TestCopyProgress(t *testing.T) {
	src := makeSource(rand.New(rand.NewPCG(8, 9)), 100*kib, 4*kib, 0.3)
	p := Plan{SizeBytes: 100 * kib, Ranges: []Range{{0, 10 * kib}, {20 * kib, 30 * kib}, {90*kib + 512, 9*kib + 512}}}
	type tick struct{ done, total int64 }
	var ticks []tick
	opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 8 * kib, Writers: 1,
		Progress: func(d, tot int64) { ticks = append(ticks, tick{d, tot}) }}
	if _, err := Copy(context.Background(), bytes.NewReader(src), newFakeTarget(t, 100*kib, 0xEE), p, opts); err != nil {
		t.Fatal(err)
	}
	// 10 KiB: 8+2; 30 KiB: 8+8+8+6; 9.5 KiB: 8+1.5.
	want := []float64{8, 10, 18, 26, 34, 40, 48, 49.5}
	if len(ticks) != len(want) {
		t.Fatalf("progress = %v, want done = %v KiB", ticks, want)
	}
	for i, tk := range ticks {
		if tk.done != int64(want[i]*kib) || tk.total != p.Bytes() {
			t.Fatalf("progress %d = %+v, want {%d %d}", i, tk, int64(want[i]*kib), p.Bytes())
		}
	}
	if last := ticks[len(ticks)-1].done; last != p.Bytes() {
		t.Fatalf("progress ends at %d, want the total %d", last, p.Bytes())
	}
}

// shortReader returns its error with fewer bytes than asked at or after
// offset at.
type shortReader struct {
	r   io.ReaderAt
	at  int64
	err error
}

func (s shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.at {
		n := max(0, s.at-off)
		if n > 0 {
			if _, err := s.r.ReadAt(p[:n], off); err != nil {
				return 0, err
			}
		}
		return int(n), s.err
	}
	return s.r.ReadAt(p, off)
}

// eofReader returns io.EOF together with a full read that ends at the end
// of the data, as io.ReaderAt allows.
type eofReader struct{ b []byte }

func (e eofReader) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, e.b[off:])
	if off+int64(n) == int64(len(e.b)) {
		return n, io.EOF
	}
	return n, nil
}

func TestCopyShortRead(t *testing.T) {
	src := blocks("DDDDDDDD")
	p, err := FullPlan(int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 8 * kib, Writers: 1}
	errRead := errors.New("media error")
	for _, tc := range []struct {
		name string
		src  io.ReaderAt
		want error
	}{
		{"source too small", bytes.NewReader(src[:20*kib]), io.ErrUnexpectedEOF},
		{"source empty", bytes.NewReader(nil), io.ErrUnexpectedEOF},
		{"short without error", shortReader{bytes.NewReader(src), 20 * kib, nil}, io.ErrUnexpectedEOF},
		{"short with error", shortReader{bytes.NewReader(src), 20 * kib, errRead}, errRead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTarget(t, int64(len(src)), 0xEE)
			st, err := Copy(context.Background(), tc.src, f, p, opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Copy = %+v, %v; want %v", st, err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "read ") {
				t.Fatalf("error %q lacks its read context", err)
			}
			// Nothing of the failed buffer (16 KiB..24 KiB, or the first
			// one for an empty source) is written.
			for _, c := range f.attempts {
				if c.end() > 16*kib {
					t.Fatalf("call %+v after the short read", c)
				}
			}
		})
	}

	t.Run("EOF with a full read", func(t *testing.T) {
		f := newFakeTarget(t, int64(len(src)), 0xEE)
		st, err := Copy(context.Background(), eofReader{src}, f, p, opts)
		if err != nil {
			t.Fatalf("Copy: %v", err)
		}
		checkCopy(t, src, f, p, opts, st)
	})
}

func TestCopyTargetError(t *testing.T) {
	src := blocks("DZDZDZDZ")
	p, err := FullPlan(int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 8 * kib, Writers: 1}
	for _, tc := range []struct {
		name                string
		failWrite, failZero int
		prefix              string
	}{
		{"first write", 1, 0, "write 0+4096: "},
		{"third write", 3, 0, "write 16384+4096: "},
		{"first zero", 0, 1, "zero 4096+4096: "},
		{"second zero", 0, 2, "zero 12288+4096: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTarget(t, int64(len(src)), 0xEE)
			f.failWrite, f.failZero = tc.failWrite, tc.failZero
			st, err := Copy(context.Background(), bytes.NewReader(src), f, p, opts)
			if !errors.Is(err, errInjected) {
				t.Fatalf("Copy = %+v, %v; want the injected error", st, err)
			}
			if !strings.HasPrefix(err.Error(), tc.prefix) {
				t.Fatalf("error %q, want prefix %q", err, tc.prefix)
			}
			if n := len(f.attempts); n != len(f.calls)+1 {
				t.Fatalf("%d calls after the failed one: %+v", n-len(f.calls)-1, f.attempts)
			}
			if w, z := f.sums(); st.BytesWritten != w || st.BytesZeroed != z {
				t.Fatalf("Stats %+v, successful calls wrote %d and zeroed %d", st, w, z)
			}
		})
	}
}

func TestCopyCancel(t *testing.T) {
	src := blocks("DDZZDDZZ")
	p, err := FullPlan(int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f := newFakeTarget(t, int64(len(src)), 0xEE)
		st, err := Copy(ctx, bytes.NewReader(src), f, p, CopyOptions{BlockBytes: 4 * kib, Writers: 1})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Copy = %+v, %v; want context.Canceled", st, err)
		}
		if len(f.attempts) != 0 || st.BytesRead != 0 {
			t.Fatalf("cancelled Copy read %d bytes and made calls %+v", st.BytesRead, f.attempts)
		}
	})

	t.Run("during", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := newFakeTarget(t, int64(len(src)), 0xEE)
		opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 8 * kib, Writers: 1, Progress: func(int64, int64) { cancel() }}
		st, err := Copy(ctx, bytes.NewReader(src), f, p, opts)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Copy = %+v, %v; want context.Canceled", st, err)
		}
		if st.BytesRead != 8*kib {
			t.Fatalf("BytesRead = %d, want one buffer (8 KiB)", st.BytesRead)
		}
		for _, c := range f.attempts {
			if c.end() > 8*kib {
				t.Fatalf("call %+v after the cancellation", c)
			}
		}
	})

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()
		<-ctx.Done()
		_, err := Copy(ctx, bytes.NewReader(src), newFakeTarget(t, int64(len(src)), 0xEE), p, CopyOptions{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Copy = %v; want context.DeadlineExceeded", err)
		}
	})
}

func TestCopyEmptyPlan(t *testing.T) {
	f := newFakeTarget(t, 4*kib, 0xEE)
	called := false
	st, err := Copy(context.Background(), bytes.NewReader(nil), f, Plan{SizeBytes: 4 * kib},
		CopyOptions{Progress: func(int64, int64) { called = true }})
	if err != nil || st != (Stats{}) || len(f.attempts) != 0 || called {
		t.Fatalf("Copy of an empty plan = %+v, %v, calls %+v, progress called %v", st, err, f.attempts, called)
	}
}

// TestIsZero checks isZero against a byte-by-byte reference for every
// length up to 100 and every position of a single non-zero byte.
func TestIsZero(t *testing.T) {
	for n := range 100 {
		b := make([]byte, n)
		if !isZero(b) {
			t.Fatalf("isZero(%d zeros) = false", n)
		}
		for i := range n {
			b[i] = 0x80
			if isZero(b) {
				t.Fatalf("isZero: %d bytes with byte %d set = true", n, i)
			}
			b[i] = 0
		}
	}
}

// discard is a Target that drops everything.
type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (discard) Zero(int64, int64) error                { return nil }

// BenchmarkCopy copies 64 MiB, every other 16 KiB block zero, to a target
// that drops it: the cost of reading the source, zero detection and
// call overhead.
func BenchmarkCopy(b *testing.B) {
	const size = 64 << 20
	src := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 1))
	for off := 0; off < size; off += 32 * kib {
		for i := off; i < off+16*kib; i += 8 {
			v := rng.Uint64() | 1
			for j := range 8 {
				src[i+j] = byte(v >> (8 * j))
			}
		}
	}
	p, err := FullPlan(size)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts CopyOptions
	}{
		{"zero", CopyOptions{}},
		{"known-zero", CopyOptions{KnownZero: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			r := bytes.NewReader(src)
			for b.Loop() {
				st, err := Copy(context.Background(), r, discard{}, p, bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				if st.BytesWritten != size/2 {
					b.Fatalf("Stats %+v, want half the bytes written", st)
				}
			}
		})
	}
}

// slowTarget wraps fakeTarget: each call sleeps a little (so calls of
// different buffers interleave) and the most calls in flight at once is
// recorded.
type slowTarget struct {
	*fakeTarget
	delay          time.Duration
	mu             sync.Mutex
	inFlight, peak int
}

func (s *slowTarget) enter() {
	s.mu.Lock()
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
	time.Sleep(s.delay)
}

func (s *slowTarget) leave() {
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
}

func (s *slowTarget) WriteAt(p []byte, off int64) (int, error) {
	s.enter()
	defer s.leave()
	return s.fakeTarget.WriteAt(p, off)
}

func (s *slowTarget) Zero(off, n int64) error {
	s.enter()
	defer s.leave()
	return s.fakeTarget.Zero(off, n)
}

// TestCopyParallel: with several writers the outcome is the serial one
// (checkCopy: content, maximal zero runs, no overlap, Stats), at most
// Writers calls run at once and more than one does, and progress is
// monotonic, per buffer, and ends at the total.
func TestCopyParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i, writers := range []int{2, 3, 4, 8} {
		for _, knownZero := range []bool{false, true} {
			const size = 512 * kib
			src := makeSource(rng, size, 4*kib, 0.3)
			p, err := IncrementalPlan(randomExtents(rng, size/(4*kib)), 8, size)
			if i%2 == 0 {
				p, err = FullPlan(size)
			}
			if err != nil {
				t.Fatal(err)
			}
			fill := byte(0xEE)
			if knownZero {
				fill = 0
			}
			f := &slowTarget{fakeTarget: newFakeTarget(t, size, fill), delay: 200 * time.Microsecond}
			var ticks []int64
			var mu sync.Mutex
			opts := CopyOptions{BlockBytes: 4 * kib, BufferBytes: 16 * kib, Writers: writers, KnownZero: knownZero,
				Progress: func(d, _ int64) { mu.Lock(); ticks = append(ticks, d); mu.Unlock() }}
			st, err := Copy(context.Background(), bytes.NewReader(src), f, p, opts)
			if err != nil {
				t.Fatalf("writers %d: %v", writers, err)
			}
			checkCopy(t, src, f.fakeTarget, p, opts, st)
			if f.peak > writers {
				t.Errorf("writers %d: %d calls in flight at once", writers, f.peak)
			}
			if f.peak < 2 && len(f.calls) > 8 {
				t.Errorf("writers %d: never more than one call in flight (%d calls)", writers, len(f.calls))
			}
			if !slices.IsSorted(ticks) || len(ticks) == 0 || ticks[len(ticks)-1] != p.Bytes() {
				t.Errorf("writers %d: progress %v, want increasing to %d", writers, ticks, p.Bytes())
			}
		}
	}
}

// TestCopyParallelError: a failing call with several writers gives its
// error, every call that succeeded is counted, and Copy returns (nothing
// waits forever on a writer that stopped).
func TestCopyParallelError(t *testing.T) {
	src := makeSource(rand.New(rand.NewPCG(5, 6)), 256*kib, 4*kib, 0.3)
	p, err := FullPlan(int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ failWrite, failZero int }{{1, 0}, {5, 0}, {0, 1}, {0, 3}} {
		f := &slowTarget{fakeTarget: newFakeTarget(t, int64(len(src)), 0xEE), delay: 100 * time.Microsecond}
		f.failWrite, f.failZero = tc.failWrite, tc.failZero
		st, err := Copy(context.Background(), bytes.NewReader(src), f, p, CopyOptions{BlockBytes: 4 * kib, BufferBytes: 16 * kib, Writers: 4})
		if !errors.Is(err, errInjected) {
			t.Fatalf("%+v: Copy = %+v, %v; want the injected error", tc, st, err)
		}
		if w, z := f.sums(); st.BytesWritten != w || st.BytesZeroed != z {
			t.Fatalf("%+v: Stats %+v, successful calls wrote %d and zeroed %d", tc, st, w, z)
		}
		if len(f.attempts) > len(f.calls)+1+4 {
			t.Fatalf("%+v: %d calls after the failure: more than the writers in flight", tc, len(f.attempts)-len(f.calls)-1)
		}
	}
}

// latency is a Target whose every call takes d, like a zvol write that
// waits for its transaction group: what several writers in flight hide.
type latency struct{ d time.Duration }

func (l latency) WriteAt(p []byte, _ int64) (int, error) { time.Sleep(l.d); return len(p), nil }
func (l latency) Zero(int64, int64) error                { time.Sleep(l.d); return nil }

// BenchmarkCopyWriters copies 32 MiB of data to a target whose calls
// take 1 ms each, with 1, 4 and 8 writers.
func BenchmarkCopyWriters(b *testing.B) {
	const size = 32 << 20
	src := bytes.Repeat([]byte{1}, size)
	p, err := FullPlan(size)
	if err != nil {
		b.Fatal(err)
	}
	for _, w := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("writers-%d", w), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := Copy(context.Background(), bytes.NewReader(src), latency{time.Millisecond}, p, CopyOptions{Writers: w}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
