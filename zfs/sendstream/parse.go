package sendstream

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Sentinels; every error of [Parse] answers errors.Is for one of them.
var (
	// ErrBadMagic: the first record is not a DRR_BEGIN with
	// DMU_BACKUP_MAGIC: not a send stream.
	ErrBadMagic = errors.New("not a zfs send stream (bad DRR_BEGIN magic)")
	// ErrByteSwapped: the stream was written on a host of the other byte
	// order; dmsnap reads only native (little-endian) streams.
	ErrByteSwapped = errors.New("byte-swapped zfs send stream (written on a big-endian host) is not supported")
	// ErrChecksum: a record's fletcher-4 checksum does not match the
	// bytes before it: the stream is corrupt.
	ErrChecksum = errors.New("send stream checksum mismatch")
	// ErrTruncated: the stream ends inside a record or before its final
	// DRR_END.
	ErrTruncated = errors.New("send stream truncated")
	// ErrCorrupt: a record is malformed (a size out of bounds, an
	// overflowing range, a record out of place) or data follows the end.
	ErrCorrupt = errors.New("malformed send stream")
	// ErrUnsupported: a valid stream using something dmsnap does not read
	// (dedup's DRR_WRITE_BYREF, a feature flag newer than OpenZFS 2.3).
	ErrUnsupported = errors.New("unsupported send stream")
)

// Range is the bytes [Off, End) of an object. End is [EOF] for a
// DRR_FREE "to the end of the object".
type Range struct {
	Off, End uint64
}

// EOF as a [Range] end: to the end of the object (a DRR_FREE of length
// -1, or a DRR_FREEOBJECTS of the whole object).
const EOF = freeToEOF

// Substream is one dataset's stream: its DRR_BEGIN, record counts, and
// the ranges of [Options.Object] it touches, each list ascending,
// disjoint and merged.
type Substream struct {
	ToName       string
	ToGUID       uint64
	FromGUID     uint64 // 0 for a full stream
	CreationTime uint64
	ObjsetType   uint32 // ObjsetZvol, ObjsetFilesystem, ...
	Features     Feature
	Flags        uint32 // drr_begin.drr_flags (DRR_FLAG_*)

	// Records counts the records by type (index: DRR_* value).
	Records [drrNumTypes]uint64
	// PayloadBytes is the sum of the payloads skipped.
	PayloadBytes uint64
	// BlockSize is drr_blksz of the object's DRR_OBJECT record, 0 if the
	// stream has none (an incremental that did not touch the dnode).
	BlockSize uint32

	// Written holds the DRR_WRITE and DRR_WRITE_EMBEDDED ranges, Freed
	// the DRR_FREE ranges (and [0, EOF) if DRR_FREEOBJECTS freed the
	// whole object), Redacted the DRR_REDACT ranges (data the stream
	// leaves out).
	Written, Freed, Redacted []Range
}

// Incremental reports whether s is a `zfs send -i` stream.
func (s *Substream) Incremental() bool { return s.FromGUID != 0 }

// Changed returns the union of Written and Freed: every range whose
// content in the "to" snapshot can differ from the "from" snapshot.
func (s *Substream) Changed() []Range {
	return mergeRanges(slices.Concat(s.Written, s.Freed))
}

// Stream is a whole parsed stream.
type Stream struct {
	// Compound is set for a DMU_COMPOUNDSTREAM (zfs send -R, -p, -b...):
	// a header with an nvlist, then one substream per snapshot.
	Compound   bool
	Substreams []Substream
	// Bytes is the length of the stream.
	Bytes uint64
}

// Options of [Parse].
type Options struct {
	// Object whose ranges are collected; 0 means [ZvolObject].
	Object uint64
}

type state int

const (
	stTop     state = iota // expect the first DRR_BEGIN
	stHeader               // inside a compound header: expect its DRR_END
	stBetween              // compound: expect a substream's DRR_BEGIN or the final DRR_END
	stInSub                // inside a substream
	stDone                 // after the last DRR_END: expect EOF
)

type parser struct {
	r      io.Reader
	obj    uint64
	off    uint64 // bytes consumed
	nrec   uint64
	f      fletcher4
	buf    []byte
	hdr    [headerSize]byte
	out    Stream
	sub    *Substream
	w, fr  rangeSet
	redact rangeSet
}

// Parse reads a whole send stream from r and returns what its headers
// say. Payloads are read through a fixed 64 KiB buffer and discarded;
// memory grows only with the number of disjoint ranges. The stream is
// accepted only if every checksum matches and it ends exactly after its
// final DRR_END. Errors answer [ErrBadMagic], [ErrByteSwapped],
// [ErrChecksum], [ErrTruncated], [ErrCorrupt] or [ErrUnsupported], or
// are r's read error.
func Parse(r io.Reader, opts Options) (*Stream, error) {
	p := &parser{r: r, obj: opts.Object, buf: make([]byte, 64<<10)}
	if p.obj == 0 {
		p.obj = ZvolObject
	}
	st, err := p.run()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (p *parser) errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("record %d at byte %d: %s: %w", p.nrec, p.off-headerSize, fmt.Sprintf(format, args...), sentinel)
}

func (p *parser) run() (*Stream, error) {
	s := stTop
	for {
		n, err := io.ReadFull(p.r, p.hdr[:])
		p.off += uint64(n)
		if err == io.EOF {
			if s == stDone {
				p.out.Bytes = p.off
				return &p.out, nil
			}
			if s == stTop {
				return nil, fmt.Errorf("empty stream: %w", ErrTruncated)
			}
			return nil, fmt.Errorf("stream ends at byte %d before its final DRR_END: %w", p.off, ErrTruncated)
		}
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("stream ends at byte %d inside a record header: %w", p.off, ErrTruncated)
		}
		if err != nil {
			return nil, fmt.Errorf("read send stream: %w", err)
		}
		p.nrec++
		h := p.hdr[:]
		typ := le.Uint32(h)
		switch s {
		case stDone:
			return nil, p.errf(ErrCorrupt, "data after the final DRR_END")
		case stTop, stBetween:
			if s == stBetween && typ == drrEnd {
				// The compound stream's conclusion record
				// (libzfs send_conclusion_record): no checksum.
				s = stDone
				continue
			}
			if typ != drrBegin {
				return nil, p.errf(ErrCorrupt, "%s where a DRR_BEGIN must be", typeName(typ))
			}
			compound, err := p.begin(s == stTop)
			if err != nil {
				return nil, err
			}
			if compound {
				s = stHeader
			} else {
				s = stInSub
			}
		case stHeader:
			if typ != drrEnd {
				return nil, p.errf(ErrCorrupt, "%s in a compound stream's header, want DRR_END", typeName(typ))
			}
			if err := p.checksum(typ); err != nil {
				return nil, err
			}
			s = stBetween
		case stInSub:
			if typ == drrBegin {
				return nil, p.errf(ErrCorrupt, "DRR_BEGIN inside a substream")
			}
			if err := p.checksum(typ); err != nil {
				return nil, err
			}
			end, err := p.record(typ)
			if err != nil {
				return nil, err
			}
			if end {
				p.finishSub()
				if p.out.Compound {
					s = stBetween
				} else {
					s = stDone
				}
			}
		}
	}
}

// begin handles a DRR_BEGIN (the header is in p.hdr) and reports whether
// it opens a compound stream's header.
func (p *parser) begin(first bool) (bool, error) {
	h := p.hdr[:]
	magic := u64(h, 0)
	if magic == swappedMagic {
		return false, p.errf(ErrByteSwapped, "DRR_BEGIN magic %#x", magic)
	}
	if magic != backupMagic {
		return false, p.errf(ErrBadMagic, "DRR_BEGIN magic %#x, want %#x", magic, uint64(backupMagic))
	}
	vi := u64(h, 8)
	hdrType := vi & 3
	features := Feature(vi>>2) & (1<<56 - 1)
	if unknown := features &^ knownFeatures; unknown != 0 {
		return false, p.errf(ErrUnsupported, "unknown feature flags %#x (newer than OpenZFS 2.3?)", uint64(unknown))
	}
	payload := uint64(le.Uint32(h[4:]))
	if payload > maxBeginPayload {
		return false, p.errf(ErrCorrupt, "DRR_BEGIN payload of %d bytes (at most %d)", payload, maxBeginPayload)
	}
	// A new (sub)stream starts a new running checksum; DRR_BEGIN is
	// summed whole, its checksum field included (dump_record).
	p.f.reset()
	_, _ = p.f.Write(h)
	switch {
	case hdrType == hdrCompound && first:
		p.out.Compound = true
	case hdrType == hdrCompound:
		return false, p.errf(ErrCorrupt, "compound DRR_BEGIN nested in a compound stream")
	case hdrType == hdrSubstream:
		name := h[unionOff+48 : unionOff+48+256]
		if i := slices.Index(name, 0); i >= 0 {
			name = name[:i]
		}
		p.out.Substreams = append(p.out.Substreams, Substream{
			ToName:       string(name),
			CreationTime: u64(h, 16),
			ObjsetType:   u32(h, 24),
			Flags:        u32(h, 28),
			ToGUID:       u64(h, 32),
			FromGUID:     u64(h, 40),
			Features:     features,
		})
		p.sub = &p.out.Substreams[len(p.out.Substreams)-1]
		p.sub.Records[drrBegin]++
		p.w, p.fr, p.redact = rangeSet{}, rangeSet{}, rangeSet{}
	default:
		return false, p.errf(ErrCorrupt, "DRR_BEGIN header type %d", hdrType)
	}
	if err := p.skip(payload); err != nil {
		return false, err
	}
	return hdrType == hdrCompound, nil
}

// checksum verifies a non-BEGIN record's checksum field against the
// running checksum and, for DRR_END, drr_end.drr_checksum against the
// checksum of everything before the record (dmu_recv.c
// receive_read_payload_and_next_header, receive_read_record). A zero
// field is not checked, as the kernel does not check it.
func (p *parser) checksum(typ uint32) error {
	h := p.hdr[:]
	prev := p.f.sum()
	_, _ = p.f.Write(h[:checksumOff])
	field := readChecksum(h[checksumOff:])
	if !field.IsZero() && field != p.f.sum() {
		return p.errf(ErrChecksum, "%s checksum %x, stream sums to %x", typeName(typ), field, p.f.sum())
	}
	_, _ = p.f.Write(h[checksumOff:])
	if typ == drrEnd {
		if end := readChecksum(h[unionOff:]); end != prev {
			return p.errf(ErrChecksum, "DRR_END stream checksum %x, stream sums to %x", end, prev)
		}
	}
	return nil
}

// skip discards n payload bytes, summing them.
func (p *parser) skip(n uint64) error {
	if n == 0 {
		return nil
	}
	got, err := io.CopyBuffer(&p.f, io.LimitReader(p.r, int64(n)), p.buf)
	p.f.endPayload()
	p.off += uint64(got)
	if err != nil {
		return fmt.Errorf("read send stream: %w", err)
	}
	if uint64(got) < n {
		return fmt.Errorf("stream ends at byte %d inside a %d-byte payload: %w", p.off, n, ErrTruncated)
	}
	if p.sub != nil {
		p.sub.PayloadBytes += n
	}
	return nil
}

func roundUp8(n uint64) uint64 { return (n + 7) &^ 7 }

// span checks that [off, off+length) does not overflow.
func (p *parser) span(what string, off, length uint64) (Range, error) {
	if length > ^uint64(0)-off {
		return Range{}, p.errf(ErrCorrupt, "%s offset %d + length %d overflows", what, off, length)
	}
	return Range{off, off + length}, nil
}

func (p *parser) size(what string, n, lo, hi uint64) error {
	if n < lo || n > hi {
		return p.errf(ErrCorrupt, "%s %d out of [%d, %d]", what, n, lo, hi)
	}
	return nil
}

// record handles one record of a substream after its checksum was
// verified; it reports whether the record is the substream's DRR_END.
func (p *parser) record(typ uint32) (bool, error) {
	h := p.hdr[:]
	s := p.sub
	if typ < drrNumTypes {
		s.Records[typ]++
	}
	f := s.Features
	switch typ {
	case drrEnd:
		if g := u64(h, 32); g != s.ToGUID {
			return false, p.errf(ErrCorrupt, "DRR_END toguid %#x, DRR_BEGIN said %#x", g, s.ToGUID)
		}
		return true, nil
	case drrObject:
		obj, blksz := u64(h, 0), uint64(u32(h, 16))
		bonus, rawBonus := uint64(u32(h, 20)), uint64(u32(h, 28))
		if err := p.size("DRR_OBJECT block size", blksz, minBlockSize, maxBlockSize); err != nil {
			return false, err
		}
		if blksz%minBlockSize != 0 {
			return false, p.errf(ErrCorrupt, "DRR_OBJECT block size %d not a multiple of 512", blksz)
		}
		payload := roundUp8(bonus)
		if rawBonus != 0 {
			payload = rawBonus
		}
		if err := p.size("DRR_OBJECT bonus length", payload, 0, maxBonusLen); err != nil {
			return false, err
		}
		if obj == p.obj {
			s.BlockSize = uint32(blksz)
		}
		return false, p.skip(payload)
	case drrFreeObjects:
		first, num := u64(h, 0), u64(h, 8)
		r, err := p.span("DRR_FREEOBJECTS", first, num)
		if err != nil {
			return false, err
		}
		if r.Off <= p.obj && p.obj < r.End {
			p.fr.add(Range{0, EOF})
		}
		return false, nil
	case drrWrite:
		obj, off, lsize := u64(h, 0), u64(h, 16), u64(h, 24)
		compress, csize := u8(h, 42), u64(h, 88)
		if err := p.size("DRR_WRITE logical size", lsize, minBlockSize, maxBlockSize); err != nil {
			return false, err
		}
		if lsize > oldMaxBlockSize && f&FeatureLargeBlocks == 0 {
			return false, p.errf(ErrCorrupt, "DRR_WRITE of %d bytes without the large_blocks feature", lsize)
		}
		payload := lsize
		raw := f&FeatureRaw != 0
		switch {
		case compress != 0:
			if f&(FeatureCompressed|FeatureRaw) == 0 {
				return false, p.errf(ErrCorrupt, "compressed DRR_WRITE without the compressed feature")
			}
			if err := p.size("DRR_WRITE compressed size", csize, 1, lsize); err != nil {
				return false, err
			}
			payload = csize
		case raw:
			if err := p.size("DRR_WRITE raw size", csize, 1, lsize); err != nil {
				return false, err
			}
		case csize != 0:
			return false, p.errf(ErrCorrupt, "uncompressed DRR_WRITE claims a compressed size %d", csize)
		}
		r, err := p.span("DRR_WRITE", off, lsize)
		if err != nil {
			return false, err
		}
		if obj == p.obj {
			p.w.add(r)
		}
		return false, p.skip(payload)
	case drrFree, drrRedact:
		obj, off, length := u64(h, 0), u64(h, 8), u64(h, 16)
		r := Range{off, EOF}
		if length != freeToEOF {
			var err error
			if r, err = p.span(typeName(typ), off, length); err != nil {
				return false, err
			}
		}
		if obj == p.obj {
			if typ == drrFree {
				p.fr.add(r)
			} else {
				p.redact.add(r)
			}
		}
		return false, nil
	case drrWriteByRef:
		return false, p.errf(ErrUnsupported, "DRR_WRITE_BYREF: a deduplicated stream (zfs send -D, removed in OpenZFS 2.2); resend without -D or pipe it through `zstream redup`")
	case drrSpill:
		length, csize := u64(h, 8), u64(h, 32)
		if err := p.size("DRR_SPILL length", length, 1, maxBlockSize); err != nil {
			return false, err
		}
		payload := length
		if csize != 0 {
			if err := p.size("DRR_SPILL compressed size", csize, 1, length); err != nil {
				return false, err
			}
			payload = csize
		}
		return false, p.skip(payload)
	case drrWriteEmbedded:
		obj, off, length := u64(h, 0), u64(h, 8), u64(h, 16)
		lsize, psize := uint64(u32(h, 40)), uint64(u32(h, 44))
		if f&FeatureEmbedData == 0 {
			return false, p.errf(ErrCorrupt, "DRR_WRITE_EMBEDDED without the embed_data feature")
		}
		if err := p.size("DRR_WRITE_EMBEDDED length", length, 1, maxBlockSize); err != nil {
			return false, err
		}
		if length > oldMaxBlockSize && f&FeatureLargeBlocks == 0 {
			return false, p.errf(ErrCorrupt, "DRR_WRITE_EMBEDDED of %d bytes without the large_blocks feature", length)
		}
		if err := p.size("DRR_WRITE_EMBEDDED payload size", psize, 0, maxEmbeddedPSize); err != nil {
			return false, err
		}
		if err := p.size("DRR_WRITE_EMBEDDED logical size", lsize, psize, length); err != nil {
			return false, err
		}
		r, err := p.span("DRR_WRITE_EMBEDDED", off, length)
		if err != nil {
			return false, err
		}
		if obj == p.obj {
			p.w.add(r)
		}
		return false, p.skip(roundUp8(psize))
	case drrObjectRange:
		if _, err := p.span("DRR_OBJECT_RANGE", u64(h, 0), u64(h, 8)); err != nil {
			return false, err
		}
		return false, nil
	}
	return false, p.errf(ErrUnsupported, "unknown %s", typeName(typ))
}

func (p *parser) finishSub() {
	p.sub.Written = p.w.result()
	p.sub.Freed = p.fr.result()
	p.sub.Redacted = p.redact.result()
	p.sub = nil
}

// rangeSet collects ranges; records mostly come in ascending order, so a
// range touching the last one extends it in place.
type rangeSet struct {
	rs []Range
}

func (s *rangeSet) add(r Range) {
	if r.End <= r.Off {
		return
	}
	if n := len(s.rs); n > 0 {
		last := &s.rs[n-1]
		if r.Off >= last.Off && r.Off <= last.End {
			last.End = max(last.End, r.End)
			return
		}
	}
	s.rs = append(s.rs, r)
}

func (s *rangeSet) result() []Range { return mergeRanges(s.rs) }

// mergeRanges sorts rs and joins overlapping or adjacent ranges.
func mergeRanges(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Off < b.Off:
			return -1
		case a.Off > b.Off:
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		if last := &out[len(out)-1]; r.Off <= last.End {
			last.End = max(last.End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// ZvolChanges parses a stream that must hold exactly one zvol's
// substream, complete (not a resumed partial send) and without redacted
// ranges, and returns it with the ranges of [ZvolObject]. Errors: those
// of [Parse], and [ErrUnsupported] for a stream that is not one zvol's.
func ZvolChanges(r io.Reader) (*Substream, error) {
	st, err := Parse(r, Options{Object: ZvolObject})
	if err != nil {
		return nil, err
	}
	if len(st.Substreams) != 1 {
		return nil, fmt.Errorf("stream holds %d datasets' substreams, want one zvol's: %w", len(st.Substreams), ErrUnsupported)
	}
	s := &st.Substreams[0]
	switch {
	case s.ObjsetType != ObjsetZvol:
		return nil, fmt.Errorf("stream of %s is of objset type %d, not a zvol (%d): %w", s.ToName, s.ObjsetType, ObjsetZvol, ErrUnsupported)
	case s.Features&FeatureResuming != 0:
		return nil, fmt.Errorf("stream of %s is a resumed partial send: %w", s.ToName, ErrUnsupported)
	case len(s.Redacted) > 0 || s.Features&FeatureRedacted != 0:
		return nil, fmt.Errorf("stream of %s is redacted (%d ranges left out): %w", s.ToName, len(s.Redacted), ErrUnsupported)
	}
	return s, nil
}
