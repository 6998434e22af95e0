//go:build linux

package ingest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/zfs"
)

// dmEnv is an ingest.Env over plain device-mapper snapshots of a loop
// device (no dmsnap pool): the origin is a snapshot-origin device, each
// frozen snapshot a persistent snapshot on its own COW loop device. The
// lineage is kept in memory.
type dmEnv struct {
	t        *testing.T
	c        *dm.Client
	dir      string
	prefix   string // dm names
	realDev  dm.DevNum
	origin   string // the snapshot-origin device written by the test
	sectors  dm.Sector
	snaps    map[string]*dmSnap
	lineages map[string]ingest.Lineage
	saves    int
}

type dmSnap struct {
	dmName  string
	cowFile string
	cowLoop *loop.Device
}

func newDMEnv(t *testing.T, originBytes int64) *dmEnv {
	t.Helper()
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	e := &dmEnv{t: t, c: c, dir: t.TempDir(), prefix: testutil.UniqueName(t), sectors: dm.Sector(originBytes / 512),
		snaps: map[string]*dmSnap{}, lineages: map[string]ingest.Lineage{}}
	_, real := e.attach("origin.img", originBytes, false)
	t.Cleanup(func() { real.Close() })
	// Registered after the origin's loop device: runs before its detach.
	t.Cleanup(func() {
		for name := range e.snaps {
			if err := e.remove(name); err != nil {
				t.Error(err)
			}
		}
		if err := c.RemoveIfExists(e.origin, dm.RemoveOptions{}); err != nil {
			t.Error(err)
		}
		c.Close()
	})
	major, minor := real.Dev()
	e.realDev = dm.DevNum{Major: major, Minor: minor}
	e.origin = e.prefix + "-origin"
	line := dm.Segment{Start: 0, Length: e.sectors, Target: dm.SnapshotOrigin{Origin: e.realDev}}.Line()
	if _, err := c.CreateAndLoad(e.origin, "", []dm.TargetLine{line}, dm.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// attach creates a sparse file (a fresh COW store if isCOW) and attaches
// it; the caller detaches it.
func (e *dmEnv) attach(name string, sizeBytes int64, isCOW bool) (string, *loop.Device) {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := f.Truncate(sizeBytes); err != nil {
		e.t.Fatal(err)
	}
	if isCOW {
		if err := cow.Zero(f, 0); err != nil {
			e.t.Fatal(err)
		}
	}
	f.Close()
	d, err := loop.Attach(path, loop.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return path, d
}

// write writes b to the origin at off, through the snapshot-origin.
func (e *dmEnv) write(off int64, b []byte) {
	e.t.Helper()
	f, err := os.OpenFile(dm.DevicePath(e.origin), os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		e.t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *dmEnv) remove(name string) error {
	s := e.snaps[name]
	var err error
	for range 100 {
		if err = e.c.RemoveIfExists(s.dmName, dm.RemoveOptions{}); !errors.Is(err, dm.ErrBusy) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	delete(e.snaps, name)
	return s.cowLoop.Close()
}

func (e *dmEnv) LockDataset(string) (io.Closer, error) { return io.NopCloser(nil), nil }

func (e *dmEnv) LockPool(context.Context, time.Duration) (ingest.Pool, error) { return dmPool{e}, nil }

// OpenCOW reads the COW's backing file: the loop device writes it through
// the file's page cache, so a buffered read of the file is current.
func (e *dmEnv) OpenCOW(name string) (ingest.Device, error) {
	s, ok := e.snaps[name]
	if !ok {
		return nil, fmt.Errorf("no snapshot %s: %w", name, os.ErrNotExist)
	}
	return openDevice(s.cowFile)
}

func (e *dmEnv) OpenSnapshot(name string) (ingest.Device, error) {
	s, ok := e.snaps[name]
	if !ok {
		return nil, fmt.Errorf("no snapshot %s: %w", name, os.ErrNotExist)
	}
	return openDevice(dm.DevicePath(s.dmName))
}

func (e *dmEnv) CheckFrozen(name, token string) error {
	s := e.snaps[name]
	lines, info, err := e.c.Status(s.dmName)
	if err != nil {
		return err
	}
	if info.Dev.String() != token {
		return fmt.Errorf("%s replaced", name)
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return err
	}
	if st.State != dm.SnapshotActive {
		return fmt.Errorf("%s is %q", name, lines[0].Params)
	}
	return nil
}

func (e *dmEnv) OpenZvol(ctx context.Context, dataset string) (ingest.Zvol, error) {
	dev, err := (&zfs.Runner{}).ZvolDevice(ctx, dataset, 30*time.Second)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	return zeroWriter{f}, nil
}

func (e *dmEnv) Lineage(dataset string) (ingest.Lineage, bool, error) {
	l, ok := e.lineages[dataset]
	return l, ok, nil
}

func (e *dmEnv) SaveLineage(_ context.Context, l ingest.Lineage) error {
	e.lineages[l.Dataset] = l
	e.saves++
	return nil
}

func (e *dmEnv) LineageHome() string { return "the test's memory" }

// dmPool is ingest.Pool over the dmEnv: one origin, "base".
type dmPool struct{ e *dmEnv }

func (p dmPool) OriginBytes(origin string) (int64, error) {
	if origin != "base" {
		return 0, fmt.Errorf("origin %s: %w", origin, os.ErrNotExist)
	}
	return int64(p.e.sectors) * 512, nil
}

func (p dmPool) Has(name string) bool { _, ok := p.e.snaps[name]; return ok }

// COWExtents counts MiB.
func (p dmPool) COWExtents(_, cowSize string, _ int64) (uint64, error) {
	var mib uint64
	if _, err := fmt.Sscanf(cowSize, "%dM", &mib); err != nil {
		return 0, fmt.Errorf("cow size %q: %w", cowSize, err)
	}
	return mib, nil
}

func (p dmPool) CreateFrozen(_ context.Context, name, _ string, cowMiB uint64, chunkBytes int64) (string, error) {
	e := p.e
	file, l := e.attach(name+".cow", int64(cowMiB)<<20, true)
	s := &dmSnap{dmName: e.prefix + "-" + name, cowFile: file, cowLoop: l}
	major, minor := l.Dev()
	line := dm.Segment{Start: 0, Length: e.sectors, Target: dm.Snapshot{Origin: e.realDev,
		COW: dm.DevNum{Major: major, Minor: minor}, Store: dm.Persistent, ChunkSectors: dm.Sector(chunkBytes / 512)}}.Line()
	// The origin is suspended while the snapshot is loaded, so that no
	// write slips between the two.
	if err := e.c.Suspend(e.origin, dm.SuspendOptions{}); err != nil {
		return "", err
	}
	info, err := e.c.CreateAndLoad(s.dmName, "", []dm.TargetLine{line}, dm.LoadOptions{})
	if _, rerr := e.c.Resume(e.origin); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return "", errors.Join(err, l.Close())
	}
	e.snaps[name] = s
	return info.Dev.String(), nil
}

func (p dmPool) RemoveSnapshot(_ context.Context, name string) error { return p.e.remove(name) }

func (p dmPool) Close() {}

type fileDevice struct {
	*os.File
	size int64
}

func (d fileDevice) Size() int64 { return d.size }

func openDevice(path string) (ingest.Device, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, err
	}
	return fileDevice{f, size}, nil
}

// zeroWriter is a zvol Target that writes zeros for Zero.
type zeroWriter struct{ *os.File }

func (z zeroWriter) Zero(off, n int64) error {
	_, err := z.WriteAt(make([]byte, n), off)
	return err
}

// recorder is an ingest.Observer that keeps what it was told.
type recorder struct {
	notices, warnings []string
	started, ended    int
	ok                bool
	total, last       int64
	backwards         bool
}

func (r *recorder) Notice(m string) { r.notices = append(r.notices, m) }
func (r *recorder) Warn(m string)   { r.warnings = append(r.warnings, m) }
func (r *recorder) CopyStart(_ string, total int64) {
	r.started++
	r.total, r.last = total, 0
}
func (r *recorder) CopyProgress(done, _ int64) {
	r.backwards = r.backwards || done < r.last
	r.last = done
}
func (r *recorder) CopyEnd(ok bool) { r.ended++; r.ok = ok }

func readAll(t *testing.T, path string, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func zfsOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).Output()
	if err != nil {
		t.Fatalf("zfs %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// TestRunZFS calls ingest.Run on plain dm snapshots of a 16 MiB loop
// device and a real zvol:
//   - the first Run copies everything: the zvol equals the frozen
//     snapshot, the observer saw one copy from 0 to the plan's total,
//     the lineage is committed at seq 1 with the ZFS snapshot's GUID;
//   - 3 writes to distinct 16 KiB chunks, Run: an incremental of exactly
//     3 chunks, the zvol equals the new frozen snapshot, the old cursor
//     was removed;
//   - a Run whose context is cancelled halfway through a full copy fails
//     with context.Canceled and has undone itself before returning: the
//     zvol reads as the last commit, no new ZFS snapshot, no pending
//     record, its frozen snapshot removed;
//   - the next Run is an incremental from the surviving cursor: the
//     write the cancelled Run had copied and one more.
func TestRunZFS(t *testing.T) {
	testutil.RequireZFSTier(t)
	const size = 16 << 20
	e := newDMEnv(t, size)
	data := make([]byte, size)
	rand.Read(data)
	e.write(0, data)

	zpool := testutil.ScratchZpool(t, 512<<20)
	ds := zpool + "/vol"
	req := ingest.Request{Pool: "p", Origin: "base", Dataset: ds, COW: "8M", VolBlockBytes: 16 << 10}
	zvol := func() []byte {
		d, err := (&zfs.Runner{}).ZvolDevice(t.Context(), ds, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return readAll(t, d, size)
	}
	frozen := func(name string) []byte { return readAll(t, dm.DevicePath(e.snaps[name].dmName), size) }

	obs := &recorder{}
	req.Observer = obs
	res, err := ingest.Run(t.Context(), e, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Full || res.FullReason != "first ingest" || res.Stats.BytesWritten != size || res.Cursor != "p/base-ingest-1" {
		t.Errorf("first Run: %+v", res)
	}
	if obs.started != 1 || obs.ended != 1 || !obs.ok || obs.total != size || obs.last != size || obs.backwards {
		t.Errorf("first Run's observer: %+v", obs)
	}
	if guid := zfsOut(t, "get", "-Hpo", "value", "guid", res.Snapshot); guid != fmt.Sprint(res.GUID) || e.lineages[ds].GUID != res.GUID || e.lineages[ds].Seq != 1 {
		t.Errorf("committed snapshot guid %s, result %d, lineage %+v", guid, res.GUID, e.lineages[ds])
	}
	if !bytes.Equal(zvol(), frozen("base-ingest-1")) {
		t.Fatal("after the first Run the zvol differs from the frozen snapshot")
	}

	for i := range int64(3) {
		e.write(i*(4<<20)+4096, bytes.Repeat([]byte{byte(i + 1)}, 4096))
	}
	res, err = ingest.Run(t.Context(), e, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Full || res.ChangedChunks != 3 || res.PlanBytes != 3*16<<10 || res.Lineage.Seq != 2 {
		t.Errorf("incremental Run: %+v", res)
	}
	if _, ok := e.snaps["base-ingest-1"]; ok {
		t.Error("the old cursor base-ingest-1 was not retired")
	}
	if !bytes.Equal(zvol(), frozen("base-ingest-2")) {
		t.Fatal("after the incremental Run the zvol differs from the frozen snapshot")
	}
	snapsBefore := zfsOut(t, "list", "-Hpo", "name", "-t", "snapshot", "-r", ds)

	// A write the cancelled Run copies (partly) and must undo.
	e.write(12<<20, bytes.Repeat([]byte{7}, 4096))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cut := req
	cut.Full = true
	cut.Failpoint = func(name string) {
		if name == ingest.FailpointMidCopy {
			cancel()
		}
	}
	if _, err := ingest.Run(ctx, e, cut); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled mid-copy: %v, want context.Canceled", err)
	}
	if l := e.lineages[ds]; l.Pending != nil || l.Seq != 2 {
		t.Errorf("after the cancelled Run the lineage is %+v, want seq 2, nothing pending", l)
	}
	if _, ok := e.snaps["base-ingest-3"]; ok {
		t.Error("the cancelled Run's frozen snapshot is still there")
	}
	if got := zfsOut(t, "list", "-Hpo", "name", "-t", "snapshot", "-r", ds); got != snapsBefore {
		t.Errorf("snapshots after the cancelled Run:\n%s\nwant\n%s", got, snapsBefore)
	}
	// Rolled back: the zvol reads as the last commit again, past a page
	// cache that holds what the cancelled copy wrote. (written is not 0
	// after a rollback: zfs counts about 1 KiB of metadata.)
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(zvol(), frozen("base-ingest-2")) {
		t.Error("after the cancelled Run the zvol is not back at the last commit")
	}

	e.write(8<<20, bytes.Repeat([]byte{9}, 4096))
	res, err = ingest.Run(t.Context(), e, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Full || res.ChangedChunks != 2 {
		t.Errorf("Run after the cancelled one: %+v", res)
	}
	if !bytes.Equal(zvol(), frozen(strings.TrimPrefix(res.Cursor, "p/"))) {
		t.Fatal("after the last Run the zvol differs from the frozen snapshot")
	}
}
