package sendstream

import (
	"bytes"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
)

func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// fixChecksums rewrites the checksum fields of a stream's records as the
// sender would, so that the fuzzer reaches the record checks behind the
// checksum. It walks headers by the same payload rules as the parser and
// stops at the first record it cannot size.
func fixChecksums(b []byte) {
	var f fletcher4
	for off := 0; off+headerSize <= len(b); {
		h := b[off : off+headerSize]
		typ := le.Uint32(h)
		var payload uint64
		switch typ {
		case drrBegin:
			f.reset()
			_, _ = f.Write(h)
			payload = uint64(le.Uint32(h[4:]))
		default:
			if typ == drrEnd {
				c := f.sum()
				for i, w := range c {
					le.PutUint64(h[unionOff+8*i:], w)
				}
			}
			_, _ = f.Write(h[:checksumOff])
			c := f.sum()
			for i, w := range c {
				le.PutUint64(h[checksumOff+8*i:], w)
			}
			_, _ = f.Write(h[checksumOff:])
			switch typ {
			case drrWrite:
				payload = u64(h, 24)
				if u8(h, 42) != 0 {
					payload = u64(h, 88)
				}
			case drrObject:
				payload = roundUp8(uint64(u32(h, 20)))
				if r := u32(h, 28); r != 0 {
					payload = uint64(r)
				}
			case drrWriteEmbedded:
				payload = roundUp8(uint64(u32(h, 44)))
			case drrSpill:
				payload = u64(h, 8)
				if c := u64(h, 32); c != 0 {
					payload = c
				}
			}
		}
		off += headerSize
		if payload > uint64(len(b)-off) {
			return
		}
		_, _ = f.Write(b[off : off+int(payload)])
		f.endPayload()
		off += int(payload)
	}
}

// FuzzParse: whatever the bytes, Parse returns exactly one of a result
// and an error answering one of the sentinels; it never panics and never
// allocates more than 1 MiB plus 4 bytes per input byte, whatever the
// lengths the stream claims (a 16 MiB DRR_WRITE, a 256 MiB DRR_BEGIN
// payload); a result's ranges are sorted, disjoint and non-empty. With
// fix the harness first makes every checksum valid. Seeds: the real
// streams of testdata (their first 64 KiB, and whole for the small
// ones) and the synthetic ones.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.stream.gz")
	if len(files) == 0 {
		f.Fatal("no seed streams in testdata")
	}
	for _, file := range files {
		b := readStream(f, file)
		f.Add(b[:min(len(b), 64<<10)], false)
		f.Add(b[:min(len(b), 4096)], true)
	}
	f.Add(zvolIncremental(), false)
	f.Add(zvolIncremental(), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = bytes.Clone(b)
			fixChecksums(b)
		}
		var st *Stream
		var err error
		bound := uint64(1<<20 + 4*len(b))
		if n := allocated(func() { st, err = Parse(bytes.NewReader(b), Options{}) }); n > bound {
			t.Fatalf("Parse allocated %d bytes for a %d-byte stream", n, len(b))
		}
		if (st == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one nil", st, err)
		}
		if err != nil {
			for _, s := range []error{ErrBadMagic, ErrByteSwapped, ErrChecksum, ErrTruncated, ErrCorrupt, ErrUnsupported} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error without a sentinel: %v", err)
		}
		if st.Bytes != uint64(len(b)) {
			t.Fatalf("accepted %d of %d bytes", st.Bytes, len(b))
		}
		for _, s := range st.Substreams {
			for _, rs := range [][]Range{s.Written, s.Freed, s.Redacted} {
				for i, r := range rs {
					if r.End <= r.Off || (i > 0 && rs[i-1].End >= r.Off) {
						t.Fatalf("ranges not sorted and disjoint: %v", rs)
					}
				}
			}
		}
	})
}
