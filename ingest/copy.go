package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// Target is the zvol being written. With CopyOptions.Writers above 1 its
// methods are called from several goroutines at once, at disjoint ranges.
type Target interface {
	io.WriterAt
	// Zero makes [off, off+n) read as zeros, deallocating the blocks when
	// it can (a hole in the zvol), and returns only once that is so.
	Zero(off, n int64) error
}

// CopyOptions tune [Copy].
type CopyOptions struct {
	// BlockBytes is the unit of zero detection and of Zero calls, the
	// zvol's volblocksize (0 means 16 KiB). Ranges need not be aligned to
	// it; see [Plan.AlignTo].
	BlockBytes int64
	// BufferBytes is the size of one read (0 means 1 MiB; rounded up to
	// a multiple of BlockBytes).
	BufferBytes int64
	// Writers is how many WriteAt and Zero calls may be in flight at
	// once (0 means 4). A zvol takes concurrent writers much faster than
	// one: each write waits for its own transaction group. With more than
	// one writer, the next buffers are read while earlier ones are being
	// written (Writers+1 buffers in all). 1 reads, then writes, one
	// buffer at a time.
	Writers int
	// KnownZero says the whole target reads as zeros already: a zvol
	// created sparse by this ingest and never written. Zero blocks are
	// then skipped (they are holes already). Otherwise they are passed
	// to Target.Zero, since the zvol may hold older data there.
	KnownZero bool
	// Progress, if set, is called with the bytes done and the plan's
	// total each time a buffer has been written completely, in plan
	// order (done never goes back), from one goroutine at a time.
	Progress func(done, total int64)
}

// Stats counts what [Copy] did. BytesWritten + BytesZeroed + BytesSkipped
// is the plan's byte count.
type Stats struct {
	Ranges       int
	BytesRead    int64
	BytesWritten int64 // data written with WriteAt
	BytesZeroed  int64 // zero blocks passed to Target.Zero
	BytesSkipped int64 // zero blocks skipped because the target was KnownZero
}

// Copy copies the ranges of p from src (the new frozen snapshot) to dst
// (the zvol) at the same offsets. Blocks that read as all zeros become
// holes: skipped when opts.KnownZero, Target.Zero otherwise; consecutive
// zero blocks are passed to Zero as one range. Reading, zero detection and
// the order of calls are sequential; up to opts.Writers calls run at once.
// It stops at the first error or when ctx is cancelled (no call starts
// after that; those in flight finish), leaving dst partly written: the
// caller rolls the zvol back to its last ZFS snapshot before trying again.
func Copy(ctx context.Context, src io.ReaderAt, dst Target, p Plan, opts CopyOptions) (Stats, error) {
	block := opts.BlockBytes
	if block <= 0 {
		block = 16 << 10
	}
	bufBytes := opts.BufferBytes
	if bufBytes <= 0 {
		bufBytes = 1 << 20
	}
	bufBytes = (bufBytes + block - 1) / block * block
	writers := opts.Writers
	if writers <= 0 {
		writers = 4
	}
	c := newCopier(ctx, dst, writers, opts.Progress, p.Bytes())
	defer c.stop()
	s := splitter{block: block, knownZero: opts.KnownZero, emit: c.submit}
	var st Stats
	for _, r := range p.Ranges {
		st.Ranges++
		for off := r.Off; off < r.End(); {
			if err := c.err(); err != nil {
				c.wait()
				return c.stats(st), err
			}
			n := min(bufBytes, r.End()-off)
			b := c.buffer(bufBytes)[:n]
			m, err := src.ReadAt(b, off)
			if m < len(b) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				c.release(b)
				c.wait()
				return c.stats(st), c.first(fmt.Errorf("read %d+%d: %w", off, n, err))
			}
			st.BytesRead += n
			c.begin(b, n)
			s.split(b, off)
			c.end()
			off += n
		}
	}
	s.flushZero()
	c.wait()
	st.BytesSkipped = s.skipped
	return c.stats(st), c.err()
}

// op is one call on the target: a WriteAt of data, or a Zero of n bytes.
type op struct {
	zero bool
	off  int64
	n    int64
	data []byte
}

// splitter walks buffers in block-sized pieces, cut at block boundaries
// of the device: runs of data pieces become one WriteAt, runs of zero
// pieces (across buffers) one Zero, or are skipped when knownZero.
type splitter struct {
	block     int64
	knownZero bool
	emit      func(op)
	zero      op // pending run of zero blocks (n == 0: none)
	skipped   int64
}

func (s *splitter) flushZero() {
	if s.zero.n > 0 {
		s.emit(s.zero)
		s.zero = op{}
	}
}

func (s *splitter) split(b []byte, off int64) {
	n := int64(len(b))
	dataStart := int64(-1) // index in b of the pending data run
	flushData := func(upto int64) {
		if dataStart >= 0 {
			s.emit(op{off: off + dataStart, n: upto - dataStart, data: b[dataStart:upto]})
			dataStart = -1
		}
	}
	for i := int64(0); i < n; {
		pos := off + i
		step := min(s.block-pos%s.block, n-i)
		if !isZero(b[i : i+step]) {
			s.flushZero()
			if dataStart < 0 {
				dataStart = i
			}
			i += step
			continue
		}
		flushData(i)
		switch {
		case s.knownZero:
			s.skipped += step
		case s.zero.n > 0 && s.zero.off+s.zero.n == pos:
			s.zero.n += step
		default:
			s.flushZero()
			s.zero = op{zero: true, off: pos, n: step}
		}
		i += step
	}
	flushData(n)
}

// copier runs the calls of a Copy on up to `writers` goroutines, keeps
// the first error, recycles buffers once their calls are done, and
// reports progress in plan order.
type copier struct {
	ctx      context.Context
	cancel   context.CancelFunc
	dst      Target
	progress func(done, total int64)
	total    int64
	ops      chan task
	workers  sync.WaitGroup
	inflight sync.WaitGroup
	free     chan []byte // buffers to reuse; its capacity bounds read-ahead
	serial   bool

	mu       sync.Mutex
	firstErr error
	written  int64
	zeroed   int64
	bufs     []*bufState // in plan order, not yet reported
	cur      *bufState   // the buffer being split
	done     int64       // bytes reported to progress
	nbuffers int
}

// bufState tracks one buffer: calls still running, and whether its split
// is finished (only then can it be reported done and reused).
type bufState struct {
	data    []byte
	n       int64
	pending int
	split   bool
}

type task struct {
	op  op
	buf *bufState
}

func newCopier(ctx context.Context, dst Target, writers int, progress func(int64, int64), total int64) *copier {
	ctx, cancel := context.WithCancel(ctx)
	c := &copier{ctx: ctx, cancel: cancel, dst: dst, progress: progress, total: total,
		serial: writers == 1, free: make(chan []byte, writers+1)}
	if !c.serial {
		c.ops = make(chan task)
		for range writers {
			c.workers.Add(1)
			go c.worker()
		}
	}
	return c
}

// buffer returns a free buffer, waiting for one while writers+1 are in
// use (the read-ahead bound).
func (c *copier) buffer(size int64) []byte {
	select {
	case b := <-c.free:
		return b[:cap(b)]
	default:
	}
	c.mu.Lock()
	fresh := c.nbuffers < cap(c.free)
	if fresh {
		c.nbuffers++
	}
	c.mu.Unlock()
	if fresh {
		return make([]byte, size)
	}
	return (<-c.free)[:size]
}

func (c *copier) release(b []byte) { c.free <- b }

// begin starts the calls of buffer b (n bytes read).
func (c *copier) begin(b []byte, n int64) {
	c.mu.Lock()
	c.cur = &bufState{data: b, n: n}
	c.bufs = append(c.bufs, c.cur)
	c.mu.Unlock()
}

// end marks the current buffer's split finished.
func (c *copier) end() {
	c.mu.Lock()
	c.cur.split = true
	c.cur = nil
	c.settle()
	c.mu.Unlock()
}

// submit runs op (serial) or hands it to a writer; it does nothing once
// the copy has failed.
func (c *copier) submit(o op) {
	if c.err() != nil {
		return
	}
	c.mu.Lock()
	buf := c.cur
	if buf != nil {
		buf.pending++
	}
	c.mu.Unlock()
	c.inflight.Add(1)
	t := task{op: o, buf: buf}
	if c.serial {
		c.run(t)
		return
	}
	select {
	case c.ops <- t:
	case <-c.ctx.Done():
		c.finish(t, false, nil)
	}
}

func (c *copier) worker() {
	defer c.workers.Done()
	for t := range c.ops {
		c.run(t)
	}
}

// run makes one call, unless the copy has failed meanwhile.
func (c *copier) run(t task) {
	if err := c.err(); err != nil {
		c.finish(t, false, nil)
		return
	}
	var err error
	if t.op.zero {
		if err = c.dst.Zero(t.op.off, t.op.n); err != nil {
			err = fmt.Errorf("zero %d+%d: %w", t.op.off, t.op.n, err)
		}
	} else if _, err = c.dst.WriteAt(t.op.data, t.op.off); err != nil {
		err = fmt.Errorf("write %d+%d: %w", t.op.off, t.op.n, err)
	}
	c.finish(t, true, err)
}

// finish accounts for a call that ran (and failed with err, or
// succeeded) or was dropped after a failure.
func (c *copier) finish(t task, ran bool, err error) {
	c.mu.Lock()
	switch {
	case err != nil:
		if c.firstErr == nil {
			c.firstErr = err
			c.cancel()
		}
	case ran:
		if t.op.zero {
			c.zeroed += t.op.n
		} else {
			c.written += t.op.n
		}
	}
	if t.buf != nil {
		t.buf.pending--
	}
	c.settle()
	c.mu.Unlock()
	c.inflight.Done()
}

// settle reports and recycles the leading buffers whose calls are all
// done. c.mu is held.
func (c *copier) settle() {
	for len(c.bufs) > 0 && c.bufs[0].split && c.bufs[0].pending == 0 {
		b := c.bufs[0]
		c.bufs = c.bufs[1:]
		c.free <- b.data
		if c.firstErr != nil {
			continue
		}
		c.done += b.n
		if c.progress != nil {
			c.progress(c.done, c.total)
		}
	}
}

// err is the first error, or the context's once it is cancelled.
func (c *copier) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstErr != nil {
		return c.firstErr
	}
	if err := c.ctx.Err(); err != nil {
		c.firstErr = err
		return err
	}
	return nil
}

// first records err unless an earlier one is kept, and returns the kept
// one.
func (c *copier) first(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstErr == nil {
		c.firstErr = err
		c.cancel()
	}
	return c.firstErr
}

// wait returns once every call submitted so far has finished.
func (c *copier) wait() { c.inflight.Wait() }

// stop ends the writers; Copy defers it.
func (c *copier) stop() {
	c.inflight.Wait()
	if c.ops != nil {
		close(c.ops)
		c.workers.Wait()
	}
	c.cancel()
}

func (c *copier) stats(st Stats) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.BytesWritten, st.BytesZeroed = c.written, c.zeroed
	return st
}

// zeroBlock is compared against with bytes.Equal, which the runtime
// implements with vector instructions: many times faster than a byte loop.
var zeroBlock [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
