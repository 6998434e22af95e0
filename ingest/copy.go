package ingest

import (
	"context"
	"fmt"
	"io"
)

// Target is the zvol being written.
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
	// KnownZero says the whole target reads as zeros already: a zvol
	// created sparse by this ingest and never written. Zero blocks are
	// then skipped (they are holes already). Otherwise they are passed
	// to Target.Zero, since the zvol may hold older data there.
	KnownZero bool
	// Progress, if set, is called after each buffer with the bytes done
	// and the plan's total.
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
// zero blocks are passed to Zero as one range. It stops at the first error
// or when ctx is cancelled, leaving dst partly written: the caller rolls
// the zvol back to its last ZFS snapshot before trying again.
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
	buf := make([]byte, bufBytes)
	total := p.Bytes()
	var st Stats
	var zero Range // pending run of zero blocks
	flushZero := func() error {
		if zero.Len == 0 {
			return nil
		}
		if err := dst.Zero(zero.Off, zero.Len); err != nil {
			return fmt.Errorf("zero %d+%d: %w", zero.Off, zero.Len, err)
		}
		st.BytesZeroed += zero.Len
		zero = Range{}
		return nil
	}
	var done int64
	for _, r := range p.Ranges {
		st.Ranges++
		for off := r.Off; off < r.End(); {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			n := min(bufBytes, r.End()-off)
			b := buf[:n]
			m, err := src.ReadAt(b, off)
			if m < len(b) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return st, fmt.Errorf("read %d+%d: %w", off, n, err)
			}
			st.BytesRead += n
			// Walk the buffer in block-sized pieces, cut at block
			// boundaries of the device; runs of data pieces are written
			// with one WriteAt.
			dataStart := int64(-1) // index in b of the pending data run
			flushData := func(upto int64) error {
				if dataStart < 0 {
					return nil
				}
				if _, err := dst.WriteAt(b[dataStart:upto], off+dataStart); err != nil {
					return fmt.Errorf("write %d+%d: %w", off+dataStart, upto-dataStart, err)
				}
				st.BytesWritten += upto - dataStart
				dataStart = -1
				return nil
			}
			for i := int64(0); i < n; {
				pos := off + i
				step := min(block-pos%block, n-i)
				if !isZero(b[i : i+step]) {
					if err := flushZero(); err != nil {
						return st, err
					}
					if dataStart < 0 {
						dataStart = i
					}
					i += step
					continue
				}
				if err := flushData(i); err != nil {
					return st, err
				}
				switch {
				case opts.KnownZero:
					st.BytesSkipped += step
				case zero.Len > 0 && zero.End() == pos:
					zero.Len += step
				default:
					if err := flushZero(); err != nil {
						return st, err
					}
					zero = Range{pos, step}
				}
				i += step
			}
			if err := flushData(n); err != nil {
				return st, err
			}
			off += n
			done += n
			if opts.Progress != nil {
				opts.Progress(done, total)
			}
		}
	}
	err := flushZero()
	return st, err
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
