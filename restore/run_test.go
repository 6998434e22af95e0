package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/dmsnap/dmsnap/zfs/sendstream"
)

// memDev is an in-memory block device.
type memDev struct{ b []byte }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write %d+%d past %d", off, len(p), len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memDev) Size() int64  { return int64(len(m.b)) }
func (m *memDev) Close() error { return nil }

// fakeSnap is a dm-snapshot of a fake volume: a real COW store in memory,
// filled by copy-outs as the kernel does on origin writes.
type fakeSnap struct {
	origin  string
	chunk   int64
	cowDev  *memDev
	w       *cow.Writer
	have    map[cow.Chunk]bool
	invalid bool
	open    bool
}

// fakePool models a pool: volumes and persistent snapshots whose COWs
// receive a copy-out before the first write to each origin chunk.
type fakePool struct {
	vols    map[string]*memDev
	snaps   map[string]*fakeSnap
	open    map[string]bool
	extent  int64
	locks   int
	readers int
	// corrupt, if set, drops writes at this offset (a lying device).
	corrupt int64
	intents map[string]Intent
	mu      sync.Mutex // the copy's writers call write at once
	// dead: the process was killed; nothing reaches the disks any more.
	dead bool
}

var errDead = errors.New("killed")

func newFakePool() *fakePool {
	return &fakePool{vols: map[string]*memDev{}, snaps: map[string]*fakeSnap{}, open: map[string]bool{}, extent: 64 * kib, corrupt: -1,
		intents: map[string]Intent{}}
}

func (p *fakePool) snapshot(t *testing.T, name, origin string, cowBytes, chunk int64) {
	t.Helper()
	if err := p.CreateSnapshot(context.Background(), name, origin, cowBytes, chunk); err != nil {
		t.Fatal(err)
	}
}

// view returns what the snapshot device shows.
func (p *fakePool) view(name string) []byte {
	s := p.snaps[name]
	out := bytes.Clone(p.vols[s.origin].b)
	st, err := cow.Decoder{}.Open(s.cowDev, s.cowDev.Size())
	if err != nil {
		panic(err)
	}
	for old, nw := range st.All() {
		copy(out[int64(old)*s.chunk:], s.cowDev.b[int64(nw)*s.chunk:int64(nw+1)*s.chunk])
	}
	return out
}

// write writes b at off of volume name, copying out to its snapshots.
func (p *fakePool) write(name string, b []byte, off int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return errDead
	}
	v := p.vols[name]
	for _, s := range p.snaps {
		if s.origin != name || s.invalid {
			continue
		}
		for c := off / s.chunk; c*s.chunk < off+int64(len(b)); c++ {
			if s.have[cow.Chunk(c)] {
				continue
			}
			if _, err := s.w.Add(cow.Chunk(c), bytes.Clone(v.b[c*s.chunk:(c+1)*s.chunk])); err != nil {
				s.invalid = true // the kernel invalidates a full snapshot
				cow.Invalidate(s.cowDev, uint32(s.chunk/512))
				break
			}
			s.have[cow.Chunk(c)] = true
		}
	}
	if off == p.corrupt {
		return nil
	}
	_, err := v.WriteAt(b, off)
	return err
}

func (p *fakePool) Volume(name string) (int64, bool, error) {
	if _, ok := p.snaps[name]; ok {
		return 0, false, fmt.Errorf("%s is a snapshot", name)
	}
	v, ok := p.vols[name]
	if !ok {
		return 0, false, nil
	}
	return v.Size(), true, nil
}

func (p *fakePool) InUse(name string) (string, error) {
	if p.open[name] {
		return name, nil
	}
	for n, s := range p.snaps {
		if s.origin == name && s.open {
			return n, nil
		}
	}
	return "", nil
}

func (p *fakePool) Has(name string) bool { _, a := p.vols[name]; _, b := p.snaps[name]; return a || b }

func (p *fakePool) CreateVolume(_ context.Context, name string, size int64) (int64, error) {
	if p.dead {
		return 0, errDead
	}
	size = (size + p.extent - 1) / p.extent * p.extent
	b := make([]byte, size)
	for i := range b {
		b[i] = 0xee // an old volume's leftovers: a new volume is not zero
	}
	p.vols[name] = &memDev{b: b}
	return size, nil
}

func (p *fakePool) CreateSnapshot(_ context.Context, name, origin string, cowBytes, chunk int64) error {
	if p.dead {
		return errDead
	}
	if _, ok := p.vols[origin]; !ok {
		return fmt.Errorf("no origin %s", origin)
	}
	d := &memDev{b: make([]byte, (cowBytes+p.extent-1)/p.extent*p.extent)}
	w, err := cow.Create(d, d.Size(), uint32(chunk/512))
	if err != nil {
		return err
	}
	p.snaps[name] = &fakeSnap{origin: origin, chunk: chunk, cowDev: d, w: w, have: map[cow.Chunk]bool{}}
	return nil
}

func (p *fakePool) OpenCOW(name string) (ingest.Device, error) {
	s, ok := p.snaps[name]
	if !ok {
		return nil, fmt.Errorf("no snapshot %s", name)
	}
	return &memDev{b: bytes.Clone(s.cowDev.b)}, nil
}

type fakeVolume struct {
	p    *fakePool
	name string
}

func (v fakeVolume) WriteAt(b []byte, off int64) (int, error) {
	return len(b), v.p.write(v.name, b, off)
}
func (v fakeVolume) Zero(off, n int64) error { return v.p.write(v.name, make([]byte, n), off) }
func (v fakeVolume) Sync() error             { return nil }
func (v fakeVolume) Close() error            { return nil }

func (p *fakePool) OpenVolume(name string) (Volume, error) {
	if _, ok := p.vols[name]; !ok {
		return nil, fmt.Errorf("no volume %s", name)
	}
	return fakeVolume{p, name}, nil
}

func (p *fakePool) ReadVolume(name string) (ingest.Device, error) {
	p.readers++
	return &memDev{b: bytes.Clone(p.vols[name].b)}, nil
}

func (p *fakePool) Close() {}

func (p *fakePool) Intent(name string) (*Intent, error) {
	if in, ok := p.intents[name]; ok {
		return &in, nil
	}
	return nil, nil
}

func (p *fakePool) SetIntent(_ context.Context, name string, in Intent) error {
	if p.dead {
		return errDead
	}
	p.intents[name] = in
	return nil
}

func (p *fakePool) ClearIntent(_ context.Context, name string) error {
	if p.dead {
		return errDead
	}
	delete(p.intents, name)
	return nil
}

// merge merges the snapshot name into its origin, as dmsnap merge does.
func (p *fakePool) merge(t *testing.T, name string) {
	t.Helper()
	s := p.snaps[name]
	b := p.view(name)
	delete(p.snaps, name)
	for c := range s.have { // the kernel writes back the COW's chunks only
		off := int64(c) * s.chunk
		if err := p.write(s.origin, b[off:off+s.chunk], off); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeZFS is a zvol with snapshots, in createtxg order.
type fakeZFS struct {
	dataset string
	block   int64
	snaps   []SnapInfo
	data    map[string][]byte
	other   map[string]error // names and the error Snapshot returns
	opened  int
}

func (z *fakeZFS) take(name string, b []byte) SnapInfo {
	s := SnapInfo{Name: z.dataset + "@" + name, GUID: uint64(0x1000 + len(z.snaps)), CreateTXG: uint64(10 * (len(z.snaps) + 1)),
		SizeBytes: int64(len(b)), BlockBytes: z.block}
	z.snaps = append(z.snaps, s)
	z.data[s.Name] = bytes.Clone(b)
	return s
}

func (z *fakeZFS) Snapshot(_ context.Context, name string) (SnapInfo, error) {
	if err, ok := z.other[name]; ok {
		return SnapInfo{}, err
	}
	for _, s := range z.snaps {
		if s.Name == name {
			return s, nil
		}
	}
	return SnapInfo{}, fmt.Errorf("%s: %w", name, zfs.ErrDatasetNotFound)
}

func (z *fakeZFS) Points(context.Context, string) ([]zfs.Point, error) {
	var pts []zfs.Point
	for _, s := range z.snaps {
		pts = append(pts, zfs.Point{Name: s.Name, Kind: zfs.Snapshot, GUID: s.GUID, CreateTXG: s.CreateTXG})
	}
	return pts, nil
}

// Increment models zfs send -i: a WRITE for every block that differs and
// is not zero in `to`, a FREE for every one that became zero.
func (z *fakeZFS) Increment(_ context.Context, from, to string) (*sendstream.Substream, error) {
	a, b := z.data[from], z.data[to]
	fs, _ := z.Snapshot(context.Background(), from)
	ts, _ := z.Snapshot(context.Background(), to)
	s := &sendstream.Substream{ToName: to, FromGUID: fs.GUID, ToGUID: ts.GUID, ObjsetType: sendstream.ObjsetZvol, BlockSize: uint32(z.block)}
	for off := int64(0); off < int64(len(b)); off += z.block {
		end := min(off+z.block, int64(len(b)))
		if bytes.Equal(a[off:end], b[off:end]) {
			continue
		}
		r := sendstream.Range{Off: uint64(off), End: uint64(end)}
		if bytes.Equal(b[off:end], make([]byte, end-off)) {
			s.Freed = append(s.Freed, r)
		} else {
			s.Written = append(s.Written, r)
		}
	}
	s.Written = (&sendstream.Substream{Written: s.Written}).Changed()
	s.Freed = (&sendstream.Substream{Freed: s.Freed}).Changed()
	return s, nil
}

func (z *fakeZFS) OpenSnapshot(_ context.Context, name string) (ingest.Device, error) {
	z.opened++
	return &memDev{b: z.data[name]}, nil
}

type fakeEnv struct {
	pool     *fakePool
	lineages map[string]ingest.Lineage
	locks    int
}

func (e *fakeEnv) LockDataset(string) (io.Closer, error) { e.locks++; return io.NopCloser(nil), nil }
func (e *fakeEnv) Lineage(ds string) (ingest.Lineage, bool, error) {
	l, ok := e.lineages[ds]
	return l, ok, nil
}
func (e *fakeEnv) OpenPool(_ context.Context, readOnly bool) (Pool, error) {
	if !readOnly {
		e.pool.locks++
	}
	return e.pool, nil
}

const volSize = 2 * mib

var clock = func() time.Time { return time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC) }

func randomData(r *rand.Rand, b []byte, blocks int, block int64) {
	for range blocks {
		off := r.Int64N(int64(len(b))/block) * block
		if r.IntN(4) == 0 {
			clear(b[off : off+block])
			continue
		}
		for i := off; i < off+block; i++ {
			b[i] = byte(r.Uint32())
		}
	}
}

func request(z *fakeZFS, snap, volume string) Request {
	return Request{Snapshot: snap, Pool: "vg0", Volume: volume, Source: z, Now: clock}
}

func newZFS() *fakeZFS {
	return &fakeZFS{dataset: "tank/vol", block: 16 * kib, data: map[string][]byte{}, other: map[string]error{}}
}

func TestRunFullNew(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	z := newZFS()
	b := make([]byte, volSize-4*kib) // not a whole extent: the created volume is larger
	randomData(r, b, 60, 4*kib)
	s := z.take("s1", b)
	env := &fakeEnv{pool: newFakePool()}
	res, err := Run(context.Background(), env, request(z, s.Name, "new"))
	if err != nil {
		t.Fatal(err)
	}
	got := env.pool.vols["new"].b
	if !res.Created || res.PreRestore != "" || res.Plan.Differential || !bytes.Equal(got[:len(b)], b) {
		t.Fatalf("%+v", res)
	}
	if !bytes.Equal(got[len(b):], make([]byte, len(got)-len(b))) {
		t.Fatal("the tail past volsize is not zero")
	}
	if st := res.Stats; st.BytesWritten+st.BytesZeroed != int64(len(got)) || st.BytesRead != int64(len(b)) {
		t.Fatalf("stats %+v", st)
	}
	if res.Verified || env.locks != 1 || env.pool.locks != 1 {
		t.Fatalf("verified %v locks %d %d", res.Verified, env.locks, env.pool.locks)
	}
}

func TestRunFullExisting(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	z := newZFS()
	b := make([]byte, volSize)
	randomData(r, b, 80, 16*kib)
	s := z.take("s1", b)
	env := &fakeEnv{pool: newFakePool()}
	old := make([]byte, volSize)
	randomData(r, old, 100, 4*kib)
	env.pool.vols["other"] = &memDev{b: bytes.Clone(old)}
	req := request(z, s.Name, "other")
	req.Verify = VerifyOn
	res, err := Run(context.Background(), env, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.Plan.Differential || !strings.Contains(res.Plan.Reason, "not the ingest origin") || !res.Verified || res.VerifiedBytes != volSize {
		t.Fatalf("%+v", res)
	}
	if !bytes.Equal(env.pool.vols["other"].b, b) {
		t.Fatal("volume differs from the snapshot")
	}
	pre := "other-pre-restore-20261202T180000Z"
	if res.PreRestore != "vg0/"+pre || env.pool.snaps[pre].invalid {
		t.Fatalf("pre-restore %q invalid %v", res.PreRestore, env.pool.snaps[pre] != nil && env.pool.snaps[pre].invalid)
	}
	if !bytes.Equal(env.pool.view(pre), old) {
		t.Fatal("the pre-restore snapshot does not show the old content")
	}
}

// origin is an ingest origin with three ingests into the zvol: the
// lineage's last is s3 and the cursor a snapshot taken at s3; then the
// origin was written.
type origin struct {
	z        *fakeZFS
	env      *fakeEnv
	snaps    []SnapInfo
	lastData []byte
}

func newOrigin(t *testing.T, seed uint64) *origin {
	r := rand.New(rand.NewPCG(seed, 9))
	z := newZFS()
	p := newFakePool()
	b := make([]byte, volSize)
	o := &origin{z: z, env: &fakeEnv{pool: p, lineages: map[string]ingest.Lineage{}}}
	for i := range 3 {
		randomData(r, b, 20, 4*kib)
		o.snaps = append(o.snaps, z.take(fmt.Sprintf("dmsnap-%d", i+1), b))
	}
	o.lastData = bytes.Clone(b)
	p.vols["base"] = &memDev{b: bytes.Clone(b)}
	p.snapshot(t, "base-ingest-3", "base", volSize/2, 16*kib)
	last := o.snaps[2]
	o.env.lineages["tank/vol"] = ingest.Lineage{Dataset: "tank/vol", Pool: "vg0", Origin: "base", Seq: 3,
		Cursor: "base-ingest-3", Snapshot: last.Name, GUID: last.GUID, CreateTXG: last.CreateTXG}
	w := make([]byte, volSize)
	copy(w, b)
	randomData(r, w, 10, 4*kib)
	for off := int64(0); off < volSize; off += 4 * kib {
		if !bytes.Equal(w[off:off+4*kib], b[off:off+4*kib]) {
			if err := p.write("base", w[off:off+4*kib], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	return o
}

// TestRunDifferential restores the origin to each of three ingest
// snapshots: it equals the snapshot, the bytes copied are the plan's
// (far less than a full copy), the pre-restore snapshot shows the old
// content, and the cursor's COW still lets the next ingest bring the
// zvol from its last snapshot to the restored origin.
func TestRunDifferential(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			o := newOrigin(t, uint64(i))
			p := o.env.pool
			before := bytes.Clone(p.vols["base"].b)
			snap := o.snaps[i]
			// The dry run first: nothing locked or changed.
			req := request(o.z, snap.Name, "base")
			req.DryRun = true
			dry, err := Run(context.Background(), o.env, req)
			if err != nil {
				t.Fatal(err)
			}
			if !dry.Plan.Differential || !dry.Verified || o.env.locks != 0 || p.locks != 0 || !bytes.Equal(p.vols["base"].b, before) || len(p.snaps) != 1 {
				t.Fatalf("dry run %+v locks %d %d", dry, o.env.locks, p.locks)
			}
			req.DryRun = false
			res, err := Run(context.Background(), o.env, req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.vols["base"].b, o.z.data[snap.Name]) {
				t.Fatal("origin differs from the snapshot")
			}
			st, plan := res.Stats, res.Plan
			if !plan.Differential || !res.Verified || res.VerifiedBytes != plan.Bytes()+plan.SparseBytes() || res.SampledBytes == 0 {
				t.Fatalf("%+v", res)
			}
			if st.BytesRead != plan.Bytes()+plan.SparseBytes() || st.BytesWritten+st.BytesZeroed+st.BytesSkipped != st.BytesRead || plan.Bytes() >= volSize/2 {
				t.Fatalf("stats %+v plan %d+%d", st, plan.Bytes(), plan.SparseBytes())
			}
			if plan.Bytes() != dry.Plan.Bytes() {
				t.Fatalf("plan %d bytes, dry run said %d", plan.Bytes(), dry.Plan.Bytes())
			}
			pre := strings.TrimPrefix(res.PreRestore, "vg0/")
			if p.snaps[pre].invalid || !bytes.Equal(p.view(pre), before) {
				t.Fatal("the pre-restore snapshot does not show the pre-restore content")
			}
			// The next ingest: the zvol at its last snapshot plus the
			// cursor's changed chunks read from the origin.
			cur := p.snaps["base-ingest-3"]
			if cur.invalid {
				t.Fatal("cursor invalidated")
			}
			next := bytes.Clone(o.lastData)
			for c := range cur.have {
				off := int64(c) * cur.chunk
				copy(next[off:off+cur.chunk], p.vols["base"].b[off:])
			}
			if !bytes.Equal(next, p.vols["base"].b) {
				t.Fatal("an incremental ingest after the restore would be wrong")
			}
		})
	}
}

func TestRunVerifyFinds(t *testing.T) {
	o := newOrigin(t, 7)
	plan, err := Run(context.Background(), o.env, Request{Snapshot: o.snaps[0].Name, Pool: "vg0", Volume: "base", Source: o.z, Now: clock, DryRun: true})
	if err != nil || len(plan.Plan.Ranges) == 0 {
		t.Fatal(err, plan.Plan)
	}
	o.env.pool.corrupt = plan.Plan.Ranges[0].Off
	_, err = Run(context.Background(), o.env, request(o.z, o.snaps[0].Name, "base"))
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "first difference at byte") {
		t.Fatalf("%v", err)
	}
}

func TestRunRefusals(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		edit     func(o *origin, req *Request)
		want     error
		fullOK   bool
		contains string
	}{
		{"bookmark", func(o *origin, req *Request) { req.Snapshot = "tank/vol#dmsnap-1" }, ErrBadInput, false, "bookmark"},
		{"not a snapshot", func(o *origin, req *Request) { req.Snapshot = "tank/vol" }, ErrBadInput, false, "ZPOOL/DATASET@SNAP"},
		{"filesystem", func(o *origin, req *Request) {
			req.Snapshot = "tank/fs@a"
			o.z.other["tank/fs@a"] = zfs.ErrNotAZvol
		}, zfs.ErrNotAZvol, false, ""},
		{"open target", func(o *origin, req *Request) { o.env.pool.open["base"] = true }, ErrRefused, false, "in use"},
		{"open snapshot", func(o *origin, req *Request) { o.env.pool.snaps["base-ingest-3"].open = true }, ErrRefused, false, "base-ingest-3"},
		{"smaller target", func(o *origin, req *Request) {
			o.env.pool.vols["small"] = &memDev{b: make([]byte, volSize/2)}
			req.Volume = "small"
		}, ErrRefused, false, "sizes differ"},
		{"last ingest gone", func(o *origin, req *Request) { o.z.snaps = o.z.snaps[:2] }, ingest.ErrLineage, true, "is gone"},
		{"cursor gone", func(o *origin, req *Request) { delete(o.env.pool.snaps, "base-ingest-3") }, ingest.ErrLineage, true, "cursor"},
		{"cursor invalidated", func(o *origin, req *Request) {
			s := o.env.pool.snaps["base-ingest-3"]
			cow.Invalidate(s.cowDev, uint32(s.chunk/512))
		}, ingest.ErrLineage, true, "invalidated"},
		{"pending ingest", func(o *origin, req *Request) {
			l := o.env.lineages["tank/vol"]
			l.Pending = &ingest.Pending{Seq: 4, Snapshot: "tank/vol@dmsnap-4"}
			o.env.lineages["tank/vol"] = l
		}, ingest.ErrLineage, true, "interrupted"},
		{"snapshot newer than the last ingest", func(o *origin, req *Request) {
			s := o.z.take("foreign", o.lastData)
			req.Snapshot = s.Name
		}, ingest.ErrLineage, true, "newer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrigin(t, 11)
			req := request(o.z, o.snaps[0].Name, "base")
			c.edit(o, &req)
			before := bytes.Clone(o.env.pool.vols["base"].b)
			nsnaps := len(o.env.pool.snaps)
			_, err := Run(ctx, o.env, req)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.contains) {
				t.Fatalf("%v, want %v containing %q", err, c.want, c.contains)
			}
			if !bytes.Equal(o.env.pool.vols["base"].b, before) || len(o.env.pool.snaps) != nsnaps || o.z.opened != 0 {
				t.Fatal("a refused restore changed something")
			}
			if !c.fullOK {
				return
			}
			if c.want == ingest.ErrLineage && !strings.Contains(err.Error(), "--full") {
				t.Errorf("the refusal does not mention --full: %v", err)
			}
			req.Full = true
			res, err := Run(ctx, o.env, req)
			if err != nil || res.Plan.Differential || res.Plan.Reason != "--full" || !bytes.Equal(o.env.pool.vols["base"].b, o.z.data[req.Snapshot]) {
				t.Fatalf("--full: %+v %v", res, err)
			}
		})
	}
}

func TestSample(t *testing.T) {
	skip := []ingest.Range{{Off: 0, Len: 64 * kib}, {Off: 128 * kib, Len: 16 * kib}}
	s := Sample(256*kib, 16*kib, skip, 64, 42)
	if len(s) != 16-4-1 {
		t.Fatalf("%d blocks: %v", len(s), s)
	}
	for _, r := range s {
		if overlaps(skip, r.Off, r.End()) || r.Len != 16*kib {
			t.Fatalf("sampled %v", r)
		}
	}
	if len(Sample(64*kib, 16*kib, skip, 8, 1)) != 0 {
		t.Fatal("sampled inside the skipped ranges")
	}
}

func TestCOWBytes(t *testing.T) {
	// 1000 chunks of 4 KiB: header, 1000 data chunks, 4 areas of 256
	// exceptions, one spare area.
	if got := COWBytes(1000*4*kib-5, 4*kib); got != (1+1000+4+1)*4*kib {
		t.Fatalf("%d", got)
	}
}

// kill returns a failpoint hook that kills the process at fp: from then
// on nothing reaches the fake's disks or metadata.
func (p *fakePool) kill(fp string) func(string) {
	return func(name string) {
		if name == fp {
			p.mu.Lock()
			p.dead = true
			p.mu.Unlock()
		}
	}
}

// TestRunKilled kills a differential restore at each step (a panic out
// of the failpoint: nothing after it runs), then either reruns it or
// merges the pre-restore snapshot. The volume is then exactly SNAP or
// exactly its old content, never a mix; the record is gone; there is one
// pre-restore snapshot at most.
func TestRunKilled(t *testing.T) {
	for _, fp := range []string{FailpointAfterIntent, FailpointAfterPreRestore, FailpointMidCopy, FailpointAfterCopy, FailpointAfterVerify} {
		for _, then := range []string{"rerun", "merge"} {
			t.Run(fp+"/"+then, func(t *testing.T) {
				o := newOrigin(t, 5)
				p := o.env.pool
				before := bytes.Clone(p.vols["base"].b)
				snap := o.snaps[0].Name
				req := request(o.z, snap, "base")
				req.Failpoint = p.kill(fp)
				if _, err := Run(context.Background(), o.env, req); !errors.Is(err, errDead) {
					t.Fatalf("killed at %s: %v", fp, err)
				}
				p.dead = false // rebooted
				in, ok := p.intents["base"]
				if !ok {
					t.Fatal("no intent recorded for a restore killed mid-way")
				}
				pre := in.PreRestore
				if then == "merge" {
					if _, ok := p.snaps[pre]; !ok {
						if fp != FailpointAfterIntent {
							t.Fatalf("no pre-restore snapshot after %s", fp)
						}
					} else {
						p.merge(t, pre)
					}
					if !bytes.Equal(p.vols["base"].b, before) {
						t.Fatal("merging the pre-restore snapshot did not bring back the old content")
					}
					// The next restore finds the record stale and drops it.
					req = request(o.z, snap, "base")
					req.DryRun = true
					if _, err := Run(context.Background(), o.env, req); err != nil {
						t.Fatal(err)
					}
					if _, ok := p.intents["base"]; !ok {
						t.Fatal("a dry run dropped the record")
					}
					req.DryRun = false
				}
				req = request(o.z, snap, "base")
				res, err := Run(context.Background(), o.env, req)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p.vols["base"].b, o.z.data[snap]) {
					t.Fatal("the rerun did not restore SNAP")
				}
				if _, ok := p.intents["base"]; ok {
					t.Fatal("the record stayed after the rerun")
				}
				npre := 0
				for n := range p.snaps {
					if strings.Contains(n, "-pre-restore-") {
						npre++
					}
				}
				wantResumed := fp != FailpointAfterIntent && then == "rerun"
				if npre != 1 || (res.Resumed != "") != wantResumed || !res.Plan.Differential {
					t.Fatalf("%d pre-restore snapshots, resumed %q (want %v), %+v", npre, res.Resumed, wantResumed, res.Plan)
				}
				if then == "rerun" && !bytes.Equal(p.view(strings.TrimPrefix(res.PreRestore, "vg0/")), before) {
					t.Fatal("the pre-restore snapshot of the resumed restore does not show the old content")
				}
			})
		}
	}
}

// TestRunKilledCreating: a restore into a new volume killed mid-copy is
// finished in full by the rerun, with no pre-restore snapshot.
func TestRunKilledCreating(t *testing.T) {
	z := newZFS()
	b := make([]byte, volSize)
	randomData(rand.New(rand.NewPCG(8, 8)), b, 50, 4*kib)
	s := z.take("s1", b)
	env := &fakeEnv{pool: newFakePool()}
	req := request(z, s.Name, "new")
	req.Failpoint = env.pool.kill(FailpointMidCopy)
	if _, err := Run(context.Background(), env, req); !errors.Is(err, errDead) {
		t.Fatal(err)
	}
	env.pool.dead = false
	if in := env.pool.intents["new"]; !in.Created {
		t.Fatalf("intent %+v", in)
	}
	res, err := Run(context.Background(), env, request(z, s.Name, "new"))
	if err != nil || res.PreRestore != "" || res.Resumed != s.Name || !strings.Contains(res.Plan.Reason, "interrupted restore created") ||
		!bytes.Equal(env.pool.vols["new"].b, b) || len(env.pool.snaps) != 0 || len(env.pool.intents) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}
