package lvm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// memDisk is a sparse in-memory Disk. With a world attached it can
// crash: after the world's byte budget is spent, a write is torn and every
// later write and sync fails; a crash may also lose unsynced writes.
type memDisk struct {
	name    string
	size    int64
	data    map[int64][]byte // pages that reads see
	durable map[int64][]byte // pages as of the last Sync
	world   *world
}

type world struct {
	budget  int // bytes that may still be written; <0: unlimited
	crashed bool
}

const pageSize = 4096

var errCrash = errors.New("simulated crash")

func newMemDisk(name string, size dm.Sector) *memDisk {
	return &memDisk{name: name, size: int64(size.Bytes()), data: map[int64][]byte{}, durable: map[int64][]byte{}}
}

func (d *memDisk) Name() string { return d.name }
func (d *memDisk) Size() int64  { return d.size }

// byteAt returns the page holding off, allocating it if create.
func (d *memDisk) page(off int64, create bool) []byte {
	p := d.data[off/pageSize]
	if p == nil && create {
		p = make([]byte, pageSize)
		d.data[off/pageSize] = p
	}
	return p
}

func (d *memDisk) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) && off < d.size {
		p := d.page(off, false)
		in := off % pageSize
		m := min(int64(len(b)-n), pageSize-in, d.size-off)
		if p == nil {
			clear(b[n : n+int(m)])
		} else {
			copy(b[n:n+int(m)], p[in:in+m])
		}
		n += int(m)
		off += m
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (d *memDisk) write(b []byte, off int64) {
	for len(b) > 0 {
		p := d.page(off, true)
		n := copy(p[off%pageSize:], b)
		b, off = b[n:], off+int64(n)
	}
}

func (d *memDisk) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > d.size {
		return 0, errors.New("write beyond end")
	}
	if w := d.world; w != nil {
		if w.crashed {
			return 0, errCrash
		}
		if w.budget >= 0 && len(b) > w.budget {
			n := w.budget
			d.write(b[:n], off)
			w.budget, w.crashed = 0, true
			return n, errCrash
		}
		if w.budget >= 0 {
			w.budget -= len(b)
		}
	}
	d.write(b, off)
	return len(b), nil
}

func (d *memDisk) Sync() error {
	if d.world != nil && d.world.crashed {
		return errCrash
	}
	d.durable = clonePages(d.data)
	return nil
}

func clonePages(m map[int64][]byte) map[int64][]byte {
	out := make(map[int64][]byte, len(m))
	for k, v := range m {
		out[k] = bytes.Clone(v)
	}
	return out
}

// clone returns a copy of d after a crash: with the torn writes when
// keepUnsynced, else with the last synced state only.
func (d *memDisk) clone(keepUnsynced bool) *memDisk {
	src := d.durable
	if keepUnsynced {
		src = d.data
	}
	return &memDisk{name: d.name, size: d.size, data: clonePages(src), durable: clonePages(src)}
}

// at returns a pointer to the byte at off, for tests that damage disks.
func (d *memDisk) at(off uint64) *byte { return &d.page(int64(off), true)[off%pageSize] }

// bytes returns n bytes at off.
func (d *memDisk) bytesAt(off uint64, n int) []byte {
	b := make([]byte, n)
	d.ReadAt(b, int64(off))
	return b
}

// put writes b at off, bypassing any world.
func (d *memDisk) put(off uint64, b []byte) { d.write(b, int64(off)) }

func disks(ds ...*memDisk) []Disk {
	out := make([]Disk, len(ds))
	for i, d := range ds {
		out[i] = d
	}
	return out
}

func mustEncode(t testing.TB, p *Pool) string {
	t.Helper()
	b, err := encodeDocument(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
