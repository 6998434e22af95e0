package lvm

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// allocated returns the bytes fn allocates (runtime TotalAlloc delta).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// hostileImage is the image of issue #13: 1 MiB, a label with valid
// checksum claiming 2^50-sector metadata slots, and slot A's header (valid
// checksum too) claiming a 2^40-byte payload. Before the fix, reading it
// allocated 1 TiB and every dmsnap command died of "out of memory".
func hostileImage() []byte {
	img := make([]byte, 1<<20)
	l := Label{PV: "11111111111111111111111111111111", Pool: "22222222222222222222222222222222",
		DeviceSize: 2048, MetadataStart: MetadataStart, SlotSize: 1 << 50, PEStart: MetadataStart + 2<<50}
	copy(img[LabelOffset:], encodeLabel(l))
	h := slotHeader{Seqno: 1, Length: 1 << 40, PayloadCRC: 0xdeadbeef, Pool: l.Pool}
	copy(img[MetadataStart.Bytes():], encodeSlotHeader(h))
	return img
}

// TestHostileImage: the image of issue #13 gives a clean error naming the
// file from every reader, and none allocates more than 1 MiB.
func TestHostileImage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostile.img")
	if err := os.WriteFile(path, hostileImage(), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDisk(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const bound = 1 << 20
	var lerr, serr, derr error
	var warns []Warning
	var found []ScanResult
	if n := allocated(func() { _, lerr = ReadLabel(d) }); n > bound {
		t.Errorf("ReadLabel allocated %d bytes", n)
	}
	if !errors.Is(lerr, ErrCorrupt) || !strings.Contains(lerr.Error(), path) || !strings.Contains(lerr.Error(), "slot size") {
		t.Errorf("ReadLabel: %v; want ErrCorrupt naming %s and the slot size", lerr, path)
	}
	if n := allocated(func() { found, warns = Scan([]Disk{d}) }); n > bound {
		t.Errorf("Scan allocated %d bytes", n)
	}
	if len(found) != 0 || len(warns) != 1 || warns[0].Disk != path {
		t.Errorf("Scan = %v, %v; want nothing found and one warning naming %s", found, warns, path)
	}
	if n := allocated(func() { _, serr = Load([]Disk{d}) }); n > bound {
		t.Errorf("Load allocated %d bytes", n)
	}
	if !errors.Is(serr, ErrCorrupt) {
		t.Errorf("Load: %v; want ErrCorrupt", serr)
	}
	if n := allocated(func() { derr = DetectSignature(d) }); n > bound+65608 {
		t.Errorf("DetectSignature allocated %d bytes", n)
	}
	if !errors.Is(derr, ErrSignature) {
		t.Errorf("DetectSignature: %v; want a damaged-label signature", derr)
	}
}

// TestHostileSlot: behind a sane label, slot headers with valid checksums
// but lying lengths are refused before the payload is allocated: longer
// than the slot, past the end of the device, or with a payload whose
// checksum does not match.
func TestHostileSlot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		slot   dm.Sector
		size   dm.Sector // device
		length uint64
		want   string
	}{
		{"2^40 bytes", DefaultSlotSize, 4096, 1 << 40, "exceeds the slot"},
		{"past the device", MaxSlotSize, MaxSlotSize, MaxSlotSize.Bytes() - slotHeaderSize, "past the end"},
		{"bad payload checksum", MaxSlotSize, 3 * MaxSlotSize, MaxSlotSize.Bytes() - slotHeaderSize, "checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newMemDisk("pv.img", tc.size)
			l := Label{PV: NewUUID(), Pool: NewUUID(), DeviceSize: tc.size, MetadataStart: MetadataStart, SlotSize: tc.slot, PEStart: MetadataStart + 2*tc.slot}
			d.put(LabelOffset, encodeLabel(l))
			d.put(MetadataStart.Bytes(), encodeSlotHeader(slotHeader{Seqno: 1, Length: tc.length, PayloadCRC: 1, Pool: l.Pool}))
			var r slotRead
			if n := allocated(func() { r = readSlot(d, l, 0) }); n > 1<<20 {
				t.Errorf("readSlot allocated %d bytes", n)
			}
			if !errors.Is(r.err, ErrCorrupt) || !strings.Contains(r.err.Error(), tc.want) {
				t.Errorf("readSlot: %v; want ErrCorrupt saying %q", r.err, tc.want)
			}
		})
	}
}

// TestLabelAgainstDevice: a label is checked against the real size of the
// device it is read from.
func TestLabelAgainstDevice(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Label
		want string
	}{
		{"metadata past the end", Label{DeviceSize: 100, MetadataStart: 8, SlotSize: 2048, PEStart: 4104}, "beyond the device"},
		{"device larger than real", Label{DeviceSize: 1 << 30, MetadataStart: 8, SlotSize: 8, PEStart: 2048}, "label says the device has"},
		{"slot above the cap", Label{DeviceSize: 100, MetadataStart: 8, SlotSize: MaxSlotSize + 1, PEStart: 2*MaxSlotSize + 10}, "slot size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newMemDisk("pv.img", 4096)
			tc.l.PV, tc.l.Pool = NewUUID(), NewUUID()
			d.put(LabelOffset, encodeLabel(tc.l))
			_, err := ReadLabel(d)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "pv.img") {
				t.Errorf("ReadLabel: %v; want ErrCorrupt naming pv.img and saying %q", err, tc.want)
			}
		})
	}
}

// TestDocumentDensity: a document of empty objects, which would decode to
// some 50 times its size, is refused; a real document is far below the
// bound.
func TestDocumentDensity(t *testing.T) {
	doc := `{"format":"dmsnap-pool","version":2,"pool":{"volumes":[` + strings.Repeat("{},", 1000) + `{}]}}`
	if err := checkDensity([]byte(doc)); err == nil {
		t.Error("document of empty objects accepted")
	}
	b, err := encodeDocument(testDocument(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDensity(b); err != nil {
		t.Errorf("real document: %v", err)
	}
	if err := checkDensity([]byte(`{"a":"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\"{{{{{{{"}`)); err != nil {
		t.Errorf("braces in strings counted: %v", err)
	}
}

// TestValidateAsCLI: metadata is held to the limits the CLI enforces on
// new objects.
func TestValidateAsCLI(t *testing.T) {
	p := testDocument(t)
	long := p.Clone()
	long.Volumes[0].Name = strings.Repeat("v", MaxNameLen-len(p.Name)) // valid name, too long a DM name
	if err := long.Validate(); !errors.Is(err, ErrBadName) {
		t.Errorf("volume with a %d-character DM name: %v", len(DMName(p.Name, long.Volumes[0].Name, LayerReal)), err)
	}
	// Every chunk size the CLI refuses (dm.CheckChunkSectors: a power of
	// two from 8 to 1024 sectors), read from disk, is refused too.
	for _, n := range []dm.Sector{0, 1, dm.MinChunkSectors / 2, dm.MinChunkSectors + 1, 24, dm.MaxChunkSectors - 8, 2 * dm.MaxChunkSectors, 1 << 40} {
		if dm.CheckChunkSectors(n) == nil {
			t.Fatalf("the CLI accepts a chunk of %d sectors", n)
		}
		chunk := p.Clone()
		chunk.Snapshots[0].ChunkSize = n
		if err := chunk.Validate(); !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), "chunk size") {
			t.Errorf("chunk of %d sectors: %v", n, err)
		}
	}
	// Names the CLI refuses are refused from disk.
	for _, bad := range []string{"", "a/b", "-x", "a b", strings.Repeat("n", 200)} {
		if ValidateName("volume", bad) == nil {
			t.Fatalf("the CLI accepts volume name %q", bad)
		}
		v := p.Clone()
		v.Volumes[0].Name = bad
		if v.Validate() == nil {
			t.Errorf("volume name %q from disk accepted", bad)
		}
		q := p.Clone()
		q.Name = bad
		if q.Validate() == nil {
			t.Errorf("pool name %q from disk accepted", bad)
		}
	}
}

// fuzzDisk is a read-only sparse image: head, then zeros up to size.
type fuzzDisk struct {
	head []byte
	size int64
}

func (d *fuzzDisk) Name() string { return "fuzz.img" }
func (d *fuzzDisk) Size() int64  { return d.size }
func (d *fuzzDisk) Sync() error  { return nil }
func (d *fuzzDisk) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("read-only")
}

func (d *fuzzDisk) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), d.size-off))
	clear(b[:n])
	if off < int64(len(d.head)) {
		copy(b[:n], d.head[off:])
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// fixChecksums makes the label, both slot headers and their payloads carry
// valid checksums, so that mutations reach the layout checks and the JSON
// decoder behind them.
func fixChecksums(d *fuzzDisk) {
	b := d.head
	le := binary.LittleEndian
	if len(b) < LabelOffset+LabelSize {
		return
	}
	lb := b[LabelOffset : LabelOffset+LabelSize]
	le.PutUint32(lb[508:], crc32.Checksum(lb[:508], castagnoli))
	start, slot := le.Uint64(lb[88:]), le.Uint64(lb[96:])
	for i := range uint64(2) {
		off := (start + i*slot) * dm.SectorSize
		if start > 1<<40 || slot > 1<<40 || off+slotHeaderSize > uint64(len(b)) {
			return
		}
		h := b[off : off+slotHeaderSize]
		if n := le.Uint64(h[24:]); n <= uint64(d.size) && off+slotHeaderSize+n <= uint64(d.size) {
			p := make([]byte, n)
			d.ReadAt(p, int64(off+slotHeaderSize))
			le.PutUint32(h[32:], crc32c(p))
		}
		le.PutUint32(h[508:], crc32.Checksum(h[:508], castagnoli))
	}
}

// fuzzImage returns the first sectors of a valid PV made by Create and
// Commit (both slots written, volumes and a snapshot), and its size.
func fuzzImage(tb testing.TB, slot dm.Sector, commits int) ([]byte, dm.Sector) {
	size := PEAlign + 64
	d := newMemDisk("seed.img", size)
	s, err := Create("vg0", []Disk{d}, CreateOptions{ExtentSize: 8, SlotSize: slot})
	if err != nil {
		tb.Fatal(err)
	}
	p := s.Pool
	for i := range commits {
		switch i {
		case 0:
			p = must[*Pool](tb)(p.AddVolume("base", 4))
		case 1:
			p = must[*Pool](tb)(p.AddSnapshot(SnapshotSpec{Name: "snap", Origin: "base", COWExtents: 2, Store: dm.PersistentOverflow, ChunkSize: 16}))
		default:
			p, _ = p.AddPending(PendingOp{Op: "merge", Volume: p.Volume("snap").UUID, Step: "loaded", Args: map[string]string{"k": "v"}})
		}
		if err := s.Commit(p); err != nil {
			tb.Fatal(err)
		}
		p = s.Pool
	}
	return d.bytesAt(0, int((MetadataStart + 2*slot).Bytes())), size
}

// FuzzReadPV reads whole PV images through the disk readers (ReadLabel,
// Scan, Load, DetectSignature): head is the start of the image, the rest up
// to sizeSectors%4097 sectors (2 MiB at most) reads as zeros; with fix
// the harness first makes every checksum valid. Invariants: no panic;
// exactly one of store and error is nil, a loaded pool validates, and no
// reader allocates more than 8 MiB plus 40 bytes per input byte, whatever
// the lengths the image claims.
func FuzzReadPV(f *testing.F) {
	for _, c := range []int{0, 1, 3} {
		head, size := fuzzImage(f, testSlot, c)
		f.Add(head, uint16(size), false)
		f.Add(head, uint16(size), true)
	}
	head, size := fuzzImage(f, 16, 3)
	f.Add(head, uint16(size), false)
	f.Add(hostileImage()[:8192], uint16(2048), false)
	f.Add(hostileImage()[:8192], uint16(2048), true)
	f.Add(make([]byte, 4096), uint16(4096), true)
	f.Fuzz(func(t *testing.T, head []byte, sizeSectors uint16, fix bool) {
		d := &fuzzDisk{head: head, size: max(int64(len(head)), int64(sizeSectors%4097)*dm.SectorSize)}
		if fix {
			fixChecksums(d)
		}
		bound := uint64(8<<20 + 40*len(head))
		check := func(what string, fn func()) {
			if n := allocated(fn); n > bound {
				t.Fatalf("%s allocated %d bytes for a %d-byte image (%d-byte input)", what, n, d.size, len(head))
			}
		}
		var l Label
		var lerr error
		check("ReadLabel", func() { l, lerr = ReadLabel(d) })
		if lerr == nil && (l.check() != nil || l.checkDevice(d.size) != nil) {
			t.Fatalf("ReadLabel accepted %+v for a %d-byte device", l, d.size)
		}
		check("Scan", func() { Scan([]Disk{d}) })
		check("DetectSignature", func() { _ = DetectSignature(d) })
		var s *Store
		var err error
		check("Load", func() { s, err = Load([]Disk{d}) })
		if (s == nil) == (err == nil) {
			t.Fatalf("Load = %v, %v: want exactly one nil", s, err)
		}
		if s != nil {
			if lerr != nil {
				t.Fatalf("Load succeeded, ReadLabel failed: %v", lerr)
			}
			if err := s.Pool.Validate(); err != nil {
				t.Fatalf("Load returned an invalid pool: %v", err)
			}
		}
	})
}
