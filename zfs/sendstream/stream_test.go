package sendstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// enc writes a stream the way dump_record (module/zfs/dmu_send.c) does:
// every non-BEGIN record carries the running fletcher-4 in its checksum
// field; DRR_END also carries the checksum before it.
type enc struct {
	buf bytes.Buffer
	f   fletcher4
}

func header(typ uint32) []byte {
	h := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(h, typ)
	return h
}

func put64(h []byte, off int, v uint64) { binary.LittleEndian.PutUint64(h[unionOff+off:], v) }
func put32(h []byte, off int, v uint32) { binary.LittleEndian.PutUint32(h[unionOff+off:], v) }

func (e *enc) begin(hdrType uint64, features Feature, objset uint32, to, from uint64, name string, payload []byte) {
	h := header(drrBegin)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	put64(h, 0, backupMagic)
	put64(h, 8, hdrType|uint64(features)<<2)
	put32(h, 24, objset)
	put64(h, 32, to)
	put64(h, 40, from)
	copy(h[unionOff+48:], name)
	e.f.reset()
	e.f.Write(h)
	e.buf.Write(h)
	e.f.Write(payload)
	e.f.endPayload()
	e.buf.Write(payload)
}

func (e *enc) rec(h []byte, payload []byte) {
	if binary.LittleEndian.Uint32(h) == drrEnd {
		c := e.f.sum()
		for i, w := range c {
			put64(h, i*8, w)
		}
	}
	e.f.Write(h[:checksumOff])
	c := e.f.sum()
	for i, w := range c {
		binary.LittleEndian.PutUint64(h[checksumOff+8*i:], w)
	}
	e.f.Write(h[checksumOff:])
	e.buf.Write(h)
	e.f.Write(payload)
	e.f.endPayload()
	e.buf.Write(payload)
}

func (e *enc) object(obj uint64, blksz, bonus uint32) {
	h := header(drrObject)
	put64(h, 0, obj)
	put32(h, 16, blksz)
	put32(h, 20, bonus)
	e.rec(h, make([]byte, roundUp8(uint64(bonus))))
}

func (e *enc) write(obj, off, lsize uint64, compress uint8, csize uint64) {
	h := header(drrWrite)
	put64(h, 0, obj)
	put64(h, 16, off)
	put64(h, 24, lsize)
	h[unionOff+42] = compress
	put64(h, 88, csize)
	n := lsize
	if compress != 0 {
		n = csize
	}
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 7)
	}
	e.rec(h, p)
}

func (e *enc) free(typ uint32, obj, off, length uint64) {
	h := header(typ)
	put64(h, 0, obj)
	put64(h, 8, off)
	put64(h, 16, length)
	e.rec(h, nil)
}

func (e *enc) embedded(obj, off, length uint64, psize uint32) {
	h := header(drrWriteEmbedded)
	put64(h, 0, obj)
	put64(h, 8, off)
	put64(h, 16, length)
	put32(h, 40, psize)
	put32(h, 44, psize)
	e.rec(h, make([]byte, roundUp8(uint64(psize))))
}

func (e *enc) end(toguid uint64) {
	h := header(drrEnd)
	put64(h, 32, toguid)
	e.rec(h, nil)
}

// zvolIncremental is a synthetic `zfs send -c -e -i` of a zvol.
func zvolIncremental() []byte {
	var e enc
	e.begin(hdrSubstream, FeatureEmbedData|FeatureCompressed|FeatureLZ4|FeatureLargeBlocks, ObjsetZvol, 0x22, 0x11, "tank/vol@b", nil)
	e.object(1, 16<<10, 0)
	e.write(1, 0, 16<<10, 0, 0)
	e.write(1, 16<<10, 16<<10, 15, 4096) // lz4, adjacent: merges
	e.write(2, 0, 512, 0, 0)             // the property ZAP: not data
	e.free(drrFree, 1, 64<<10, 32<<10)
	e.embedded(1, 128<<10, 16<<10, 40)
	e.write(1, 256<<10, 1<<20, 0, 0) // large block
	e.free(drrFree, 1, 8<<20, freeToEOF)
	e.end(0x22)
	return e.buf.Bytes()
}

func TestParseSynthetic(t *testing.T) {
	b := zvolIncremental()
	s, err := ZvolChanges(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if s.ToName != "tank/vol@b" || s.ToGUID != 0x22 || s.FromGUID != 0x11 || !s.Incremental() || s.BlockSize != 16<<10 {
		t.Fatalf("begin: %+v", s)
	}
	wantW := []Range{{0, 32 << 10}, {128 << 10, 144 << 10}, {256 << 10, 256<<10 + 1<<20}}
	wantF := []Range{{64 << 10, 96 << 10}, {8 << 20, EOF}}
	if !slices.Equal(s.Written, wantW) || !slices.Equal(s.Freed, wantF) {
		t.Fatalf("written %v freed %v, want %v %v", s.Written, s.Freed, wantW, wantF)
	}
	if got := s.Changed(); len(got) != 5 || got[4] != (Range{8 << 20, EOF}) {
		t.Fatalf("changed %v", got)
	}
	if s.Records[drrWrite] != 4 || s.Records[drrFree] != 2 || s.Records[drrWriteEmbedded] != 1 || s.Records[drrEnd] != 1 {
		t.Fatalf("records %v", s.Records)
	}
	if want := uint64(16<<10 + 4096 + 512 + 40 + 1<<20); s.PayloadBytes != want {
		t.Fatalf("payload %d, want %d", s.PayloadBytes, want)
	}
}

// TestParseCompound: a -p/-R stream: compound BEGIN with an nvlist, its
// DRR_END, two substreams, the conclusion record.
func TestParseCompound(t *testing.T) {
	var e enc
	e.begin(hdrCompound, 0, 0, 0, 0, "tank/vol@b", make([]byte, 24))
	h := header(drrEnd)
	c := e.f.sum()
	for i, w := range c {
		put64(h, i*8, w)
	}
	e.buf.Write(h) // libzfs writes the header's END without a checksum field
	for i, name := range []string{"tank/vol@b", "tank/other@b"} {
		e.begin(hdrSubstream, 0, ObjsetZvol, uint64(i+5), 0, name, nil)
		e.write(1, uint64(i)<<20, 4096, 0, 0)
		e.end(uint64(i + 5))
	}
	e.buf.Write(header(drrEnd))
	st, err := Parse(bytes.NewReader(e.buf.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Compound || len(st.Substreams) != 2 || st.Substreams[1].ToName != "tank/other@b" ||
		!slices.Equal(st.Substreams[1].Written, []Range{{1 << 20, 1<<20 + 4096}}) || st.Bytes != uint64(e.buf.Len()) {
		t.Fatalf("%+v", st)
	}
	if _, err := ZvolChanges(bytes.NewReader(e.buf.Bytes())); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("two datasets: %v", err)
	}
	// Without the conclusion record the stream is cut short.
	if _, err := Parse(bytes.NewReader(e.buf.Bytes()[:e.buf.Len()-headerSize]), Options{}); !errors.Is(err, ErrTruncated) {
		t.Fatalf("no conclusion: %v", err)
	}
}

// TestParseCorruptByteFlips: flipping any single byte of a record header
// or payload is caught (checksum, magic or a bound), never accepted with
// other ranges.
func TestParseCorruptByteFlips(t *testing.T) {
	b := zvolIncremental()
	want, _ := ZvolChanges(bytes.NewReader(b))
	for i := 0; i < len(b); i += 1 + i/64 {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		s, err := Parse(bytes.NewReader(c), Options{})
		if err == nil {
			// Only bytes the checksum does not cover may change
			// (DRR_BEGIN's are summed by the next record): none.
			t.Fatalf("flip at %d accepted: %+v", i, s.Substreams[0])
		}
		if s != nil {
			t.Fatalf("flip at %d: result with error %v", i, err)
		}
	}
	_ = want
}

func TestParseTruncated(t *testing.T) {
	b := zvolIncremental()
	for n := 0; n < len(b); n += 1 + n/50 {
		_, err := Parse(bytes.NewReader(b[:n]), Options{})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d of %d: %v, want ErrTruncated", n, len(b), err)
		}
	}
	_, err := Parse(bytes.NewReader(append(bytes.Clone(b), make([]byte, headerSize)...)), Options{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing record: %v", err)
	}
}

func TestParseRefusals(t *testing.T) {
	swapped := zvolIncremental()
	binary.BigEndian.PutUint64(swapped[unionOff:], backupMagic)
	var byref enc
	byref.begin(hdrSubstream, FeatureDedup, ObjsetZvol, 1, 0, "t/v@a", nil)
	byref.rec(header(drrWriteByRef), nil)
	byref.end(1)
	var big enc
	big.begin(hdrSubstream, 0, ObjsetZvol, 1, 0, "t/v@a", nil)
	h := header(drrWrite)
	put64(h, 0, 1)
	put64(h, 24, 1<<40) // 1 TiB block: must not be read or allocated
	big.rec(h, nil)
	var largeNoFeature enc
	largeNoFeature.begin(hdrSubstream, 0, ObjsetZvol, 1, 0, "t/v@a", nil)
	largeNoFeature.write(1, 0, 1<<20, 0, 0)
	var overflow enc
	overflow.begin(hdrSubstream, 0, ObjsetZvol, 1, 0, "t/v@a", nil)
	overflow.free(drrFree, 1, ^uint64(0)-10, 100)
	var fs enc
	fs.begin(hdrSubstream, 0, ObjsetFilesystem, 1, 0, "t/fs@a", nil)
	fs.end(1)
	var beginPayload enc
	beginPayload.begin(hdrSubstream, 0, ObjsetZvol, 1, 0, "t/v@a", nil)
	binary.LittleEndian.PutUint32(beginPayload.buf.Bytes()[4:], 1<<30)
	var unknownFeature enc
	unknownFeature.begin(hdrSubstream, 1<<40, ObjsetZvol, 1, 0, "t/v@a", nil)
	var badGUID enc
	badGUID.begin(hdrSubstream, 0, ObjsetZvol, 1, 0, "t/v@a", nil)
	badGUID.end(2)
	var redacted enc
	redacted.begin(hdrSubstream, FeatureRedacted, ObjsetZvol, 1, 0, "t/v@a", nil)
	redacted.free(drrRedact, 1, 0, 4096)
	redacted.end(1)
	for _, c := range []struct {
		name string
		b    []byte
		want error
		zvol bool
	}{
		{"empty", nil, ErrTruncated, false},
		{"garbage", bytes.Repeat([]byte{0xAB}, 1000), ErrCorrupt, false},
		{"not begin magic", make([]byte, headerSize), ErrBadMagic, false},
		{"byte-swapped", swapped, ErrByteSwapped, false},
		{"write byref", byref.buf.Bytes(), ErrUnsupported, false},
		{"1 TiB write", big.buf.Bytes(), ErrCorrupt, false},
		{"large block without feature", largeNoFeature.buf.Bytes(), ErrCorrupt, false},
		{"free overflows", overflow.buf.Bytes(), ErrCorrupt, false},
		{"begin payload 1 GiB", beginPayload.buf.Bytes(), ErrCorrupt, false},
		{"unknown feature", unknownFeature.buf.Bytes(), ErrUnsupported, false},
		{"end toguid", badGUID.buf.Bytes(), ErrCorrupt, false},
		{"filesystem", fs.buf.Bytes(), ErrUnsupported, true},
		{"redacted", redacted.buf.Bytes(), ErrUnsupported, true},
	} {
		var err error
		if c.zvol {
			var s *Substream
			s, err = ZvolChanges(bytes.NewReader(c.b))
			if s != nil {
				t.Errorf("%s: result with %v", c.name, err)
			}
		} else {
			var st *Stream
			st, err = Parse(bytes.NewReader(c.b), Options{})
			if st != nil {
				t.Errorf("%s: result with %v", c.name, err)
			}
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestFletcher4: the streaming sum equals a word-by-word reference
// however the input is split, and ignores a trailing partial word.
func TestFletcher4(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 2000; n += 1 + n/3 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		var a, bb, c, d uint64
		for i := 0; i+4 <= n; i += 4 {
			a += uint64(binary.LittleEndian.Uint32(b[i:]))
			bb += a
			c += bb
			d += c
		}
		var f fletcher4
		for rest := b; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(13))
			f.Write(rest[:k])
			rest = rest[k:]
		}
		if got := f.sum(); got != (Checksum{a, bb, c, d}) {
			t.Fatalf("n=%d: %x, want %x", n, got, Checksum{a, bb, c, d})
		}
	}
}

// errReader fails after its data.
type errReader struct{ r io.Reader }

var errBoom = errors.New("boom")

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

func TestParseReadError(t *testing.T) {
	b := zvolIncremental()
	for _, n := range []int{0, 100, headerSize + 10, len(b) - 10} {
		if _, err := Parse(errReader{bytes.NewReader(b[:n])}, Options{}); !errors.Is(err, errBoom) {
			t.Errorf("cut at %d: %v", n, err)
		}
	}
	_ = fmt.Sprint()
}
