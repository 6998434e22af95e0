//go:build linux

package cow_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// Content tags: every 16 bytes of a chunk hold a 4-byte tag, the sector
// within the chunk and the chunk number, so any chunk's content names its
// origin and which writer produced it, and compresses well in testdata.
// directFlag is O_DIRECT.
const directFlag = syscall.O_DIRECT

const (
	tagOrigin  = "orig" // the origin before the snapshot
	tagNew     = "new!" // written to the origin after the snapshot
	tagSnap    = "snap" // written to the snapshot device
	tagEncoder = "enc!" // data we put into a store with cow.Writer
)

// chunkData returns chunk c of chunkBytes filled with tag.
func chunkData(tag string, chunkBytes int, c cow.Chunk) []byte {
	b := make([]byte, chunkBytes)
	fillChunk(b, tag, c)
	return b
}

func fillChunk(b []byte, tag string, c cow.Chunk) {
	for i := 0; i+16 <= len(b); i += 16 {
		copy(b[i:], tag)
		binary.LittleEndian.PutUint32(b[i+4:], uint32(i/512))
		binary.LittleEndian.PutUint64(b[i+8:], uint64(c))
	}
}

// stack is an origin loop device filled with tagOrigin chunks, a COW loop
// device whose backing file the test can read, and the snapshot (and
// optionally snapshot-origin) devices over them.
type stack struct {
	t            *testing.T
	c            *dm.Client
	chunkSectors uint32
	originBytes  int64
	cowBytes     int64
	cowFile      string
	cowLoop      *loop.Device
	originDev    dm.DevNum
	cowDev       dm.DevNum
	snap, origin string // dm names; "" once removed
	snapInfo     dm.Info
	originInfo   dm.Info
}

// attach creates a file of sizeBytes, lets prepare write to it, and
// attaches it as a loop device detached at cleanup.
func attach(t *testing.T, name string, sizeBytes int64, prepare func(f *os.File)) (string, *loop.Device) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeBytes); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(f)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := loop.Attach(path, loop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("detach %s: %v", d.Path(), err)
		}
	})
	return path, d
}

func devNum(d *loop.Device) dm.DevNum {
	major, minor := d.Dev()
	return dm.DevNum{Major: major, Minor: minor}
}

// newStack builds the devices. prepareCOW writes the COW backing file
// before it is attached; nil zeroes its first 4 KiB (a fresh store).
// withOrigin adds the snapshot-origin device, through which origin writes
// are copied out; without it only the snapshot is loaded.
func newStack(t *testing.T, c *dm.Client, chunkSectors uint32, originBytes, cowBytes int64, prepareCOW func(f *os.File), withOrigin bool) *stack {
	t.Helper()
	s := &stack{t: t, c: c, chunkSectors: chunkSectors, originBytes: originBytes, cowBytes: cowBytes}
	chunkBytes := int(chunkSectors) * cow.SectorSize
	_, ol := attach(t, "origin.img", originBytes, func(f *os.File) {
		buf := make([]byte, chunkBytes)
		for c := cow.Chunk(0); int64(c)*int64(chunkBytes) < originBytes; c++ {
			fillChunk(buf, tagOrigin, c)
			if _, err := f.WriteAt(buf, int64(c)*int64(chunkBytes)); err != nil {
				t.Fatal(err)
			}
		}
	})
	if prepareCOW == nil {
		prepareCOW = func(f *os.File) {
			if err := cow.Zero(f, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.cowFile, s.cowLoop = attach(t, "cow.img", cowBytes, prepareCOW)
	s.originDev, s.cowDev = devNum(ol), devNum(s.cowLoop)

	sectors := dm.Sector(originBytes / cow.SectorSize)
	s.snap = testutil.UniqueName(t)
	s.snapInfo = s.create(s.snap, dm.Segment{Start: 0, Length: sectors, Target: dm.Snapshot{
		Origin: s.originDev, COW: s.cowDev, Store: dm.Persistent, ChunkSectors: dm.Sector(chunkSectors),
	}}.Line())
	if withOrigin {
		s.origin = s.snap + "-origin"
		s.originInfo = s.create(s.origin, dm.Segment{Start: 0, Length: sectors, Target: dm.SnapshotOrigin{Origin: s.originDev}}.Line())
	}
	return s
}

func (s *stack) create(name string, l dm.TargetLine) dm.Info {
	s.t.Helper()
	return testutil.CreateDevice(s.t, s.c, name, "", l)
}

// deactivate removes the snapshot-origin and snapshot devices, after which
// the kernel has committed every exception to the COW.
func (s *stack) deactivate() {
	s.t.Helper()
	for _, n := range []*string{&s.origin, &s.snap} {
		if *n != "" {
			testutil.RemoveRetry(s.t, s.c, *n)
			*n = ""
		}
	}
	if s.t.Failed() {
		s.t.FailNow()
	}
}

// status returns the snapshot's parsed status and its raw params.
func (s *stack) status() (dm.SnapshotStatus, string) {
	s.t.Helper()
	lines, _, err := s.c.Status(s.snap)
	if err != nil {
		s.t.Fatal(err)
	}
	if len(lines) != 1 {
		s.t.Fatalf("status of %s: %q", s.snap, lines)
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		s.t.Fatal(err)
	}
	return st, lines[0].Params
}

func (s *stack) chunkBytes() int { return int(s.chunkSectors) * cow.SectorSize }

// writeChunks writes one chunk of tag data per chunk in cs, in order, with
// O_DIRECT to the block device at path, then fsyncs.
func (s *stack) writeChunks(path, tag string, cs []cow.Chunk) error {
	s.t.Helper()
	buf := testutil.AlignedBuf(s.t, s.chunkBytes())
	f, err := os.OpenFile(path, os.O_WRONLY|directFlag, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, c := range cs {
		fillChunk(buf, tag, c)
		if _, err := f.WriteAt(buf, int64(c)*int64(len(buf))); err != nil {
			return err
		}
	}
	return f.Sync()
}

func (s *stack) mustWriteChunks(path, tag string, cs []cow.Chunk) {
	s.t.Helper()
	if err := s.writeChunks(path, tag, cs); err != nil {
		s.t.Fatal(err)
	}
}

// wantUsage asserts the decoder's usage equals the kernel's status numbers.
func wantUsage(t *testing.T, got cow.Usage, st dm.SnapshotStatus, raw string) {
	t.Helper()
	if st.State != dm.SnapshotActive || !st.HasMetadata {
		t.Fatalf("kernel status %q is not an active persistent snapshot", raw)
	}
	if got.AllocatedSectors != uint64(st.Allocated) || got.TotalSectors != uint64(st.Total) || got.MetadataSectors != uint64(st.Metadata) {
		t.Fatalf("decoder usage %q, kernel status %q", got, raw)
	}
}
