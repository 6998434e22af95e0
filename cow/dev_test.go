package cow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// memDev is a sparse in-memory block device of a fixed size. Reads past
// the end are short with io.EOF and writes past the end fail, like a block
// device. It can log writes and syncs to check the ordering of commits.
type memDev struct {
	size  int64
	pages map[int64]*[devPage]byte
	log   []string
	chunk int64 // if not 0, log writes as "w<chunk>" and syncs as "sync"
}

const devPage = 4096

var errBeyondEnd = errors.New("write past end of device")

func newMemDev(sizeBytes int64) *memDev {
	return &memDev{size: sizeBytes, pages: map[int64]*[devPage]byte{}}
}

func memDevFrom(b []byte) *memDev {
	d := newMemDev(int64(len(b)))
	if _, err := d.WriteAt(b, 0); err != nil {
		panic(err)
	}
	return d
}

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := len(p)
	short := off+int64(n) > d.size
	if short {
		n = int(d.size - off)
	}
	for i := 0; i < n; {
		pg, po := (off+int64(i))/devPage, int((off+int64(i))%devPage)
		m := min(n-i, devPage-po)
		if page := d.pages[pg]; page != nil {
			copy(p[i:i+m], page[po:])
		} else {
			clear(p[i : i+m])
		}
		i += m
	}
	if short {
		return n, io.EOF
	}
	return n, nil
}

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("%d bytes at %d of %d: %w", len(p), off, d.size, errBeyondEnd)
	}
	if d.chunk != 0 {
		d.log = append(d.log, fmt.Sprintf("w%d", off/d.chunk))
	}
	for i := 0; i < len(p); {
		pg, po := (off+int64(i))/devPage, int((off+int64(i))%devPage)
		m := min(len(p)-i, devPage-po)
		page := d.pages[pg]
		if page == nil {
			if allZero(p[i : i+m]) {
				i += m
				continue
			}
			page = new([devPage]byte)
			d.pages[pg] = page
		}
		copy(page[po:], p[i:i+m])
		i += m
	}
	return len(p), nil
}

func (d *memDev) Sync() error {
	if d.chunk != 0 {
		d.log = append(d.log, "sync")
	}
	return nil
}

func (d *memDev) clone() *memDev {
	c := newMemDev(d.size)
	for k, v := range d.pages {
		p := *v
		c.pages[k] = &p
	}
	return c
}

// read returns n bytes at off.
func (d *memDev) read(t testing.TB, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatalf("read %d bytes at %d: %v", n, off, err)
	}
	return b
}

// equal reports whether d and o hold the same bytes.
func (d *memDev) equal(o *memDev) bool {
	if d.size != o.size {
		return false
	}
	var zero [devPage]byte
	for k, v := range d.pages {
		w := o.pages[k]
		if w == nil {
			w = &zero
		}
		if *v != *w {
			return false
		}
	}
	for k, w := range o.pages {
		if d.pages[k] == nil && *w != zero {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// refImage builds a store independently of the package code, with
// encoding/binary, by the rules of dm-snap-persistent.c: records are
// allocated in order, new chunks skip metadata chunks, and full areas are
// followed by a zeroed area. It returns the device and the records.
func refImage(chunkSectors uint32, sizeBytes int64, olds []Chunk) (*memDev, []Exception) {
	d := newMemDev(sizeBytes)
	chunkBytes := int64(chunkSectors) * 512
	perArea := chunkBytes / 16
	hdr := struct{ Magic, Valid, Version, Chunk uint32 }{0x70416e53, 1, 1, chunkSectors}
	var hb bytes.Buffer
	_ = binary.Write(&hb, binary.LittleEndian, hdr)
	if _, err := d.WriteAt(hb.Bytes(), 0); err != nil {
		panic(err)
	}
	type rec struct{ Old, New uint64 }
	var exc []Exception
	next := uint64(2)
	for k, old := range olds {
		area := int64(k) / perArea
		idx := int64(k) % perArea
		var rb bytes.Buffer
		_ = binary.Write(&rb, binary.LittleEndian, rec{uint64(old), next})
		off := (1+(perArea+1)*area)*chunkBytes + idx*16
		if _, err := d.WriteAt(rb.Bytes(), off); err != nil {
			panic(err)
		}
		exc = append(exc, Exception{Old: old, New: Chunk(next)})
		next++
		if next%uint64(perArea+1) == 1 {
			next++
		}
	}
	return d, exc
}

// randomOlds returns n distinct origin chunks below limit in random order.
func randomOlds(rng *rand.Rand, n int, limit uint64) []Chunk {
	seen := make(map[Chunk]bool, n)
	out := make([]Chunk, 0, n)
	for len(out) < n {
		c := Chunk(rng.Uint64N(limit))
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

func sequentialOlds(n int) []Chunk {
	out := make([]Chunk, n)
	for i := range out {
		out[i] = Chunk(i)
	}
	return out
}
