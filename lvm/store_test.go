package lvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/failpoint"
)

const testSlot dm.Sector = 8 // 4 KiB slots keep crash tests small

func smallOpts() CreateOptions { return CreateOptions{ExtentSize: 8, SlotSize: testSlot} }

func TestCreateLoadFiles(t *testing.T) {
	dir := t.TempDir()
	var ds []Disk
	for i := range 2 {
		path := filepath.Join(dir, fmt.Sprintf("pv%d.img", i))
		if err := CreateImage(path, 64<<11); err != nil { // 64 MiB
			t.Fatal(err)
		}
		d, err := OpenDisk(path, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		ds = append(ds, d)
	}
	if err := CreateImage(filepath.Join(dir, "pv0.img"), 1); err == nil {
		t.Error("CreateImage overwrote an existing file")
	}
	s, err := Create("vg0", ds, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := s.Pool
	// 64 MiB, 3 MiB for label and metadata, 4 MiB extents: 15 extents.
	if p.Seqno != 1 || len(p.PVs) != 2 || p.PVs[0].PECount != 15 || p.PVs[0].PEStart != 6144 {
		t.Fatalf("created pool: %+v", p)
	}
	q := must[*Pool](t)(p.AddVolume("base", 20))
	if err := s.Commit(q); err != nil {
		t.Fatal(err)
	}
	if s.Pool.Seqno != 2 || s.Pool.Volume("base") == nil {
		t.Fatalf("after commit: %+v", s.Pool)
	}
	// Reopen from scratch, disks in the other order.
	l, err := Load([]Disk{ds[1], ds[0]})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 0 || len(l.Missing) != 0 {
		t.Errorf("warnings %v missing %v", l.Warnings, l.Missing)
	}
	if got, want := mustEncode(t, l.Pool), mustEncode(t, s.Pool); got != want {
		t.Errorf("loaded\n%s\nwant\n%s", got, want)
	}
	res, warns := Scan(ds)
	if len(res) != 2 || len(warns) != 0 || res[0].PoolName != "vg0" || res[0].Seqno != 2 || res[0].Label.Pool != p.UUID {
		t.Errorf("Scan = %+v, %v", res, warns)
	}
	// A second create over the same disks names the pool.
	if _, err := Create("vg1", ds, CreateOptions{}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pool vg0") {
		t.Errorf("create over a PV: %v", err)
	}
}

func TestSignatures(t *testing.T) {
	for _, tc := range []struct {
		what  string
		off   int
		bytes []byte
	}{
		{"ext2/3/4", 1080, []byte{0x53, 0xEF}},
		{"XFS", 0, []byte("XFSB")},
		{"LVM2", 512, []byte("LABELONE")},
		{"LVM2", 1536, []byte("LABELONE")},
		{"btrfs", 65600, []byte("_BHRfS_M")},
		{"swap", 4086, []byte("SWAPSPACE2")},
		{"GPT", 512, []byte("EFI PART")},
		{"boot sector", 510, []byte{0x55, 0xAA}},
	} {
		d := newMemDisk("/dev/x", 1<<14)
		d.put(uint64(tc.off), tc.bytes)
		err := DetectSignature(d)
		var se *SignatureError
		if !errors.As(err, &se) || !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), tc.what) {
			t.Errorf("%s at %d: %v", tc.what, tc.off, err)
			continue
		}
		if _, err := Create("vg0", disks(d), smallOpts()); !errors.Is(err, ErrSignature) {
			t.Errorf("Create over %s: %v", tc.what, err)
		}
		if _, err := Create("vg0", disks(d), CreateOptions{ExtentSize: 8, SlotSize: testSlot, Force: true}); err != nil {
			t.Errorf("forced Create over %s: %v", tc.what, err)
		}
		if tc.what == "ext2/3/4" && binary.LittleEndian.Uint16(d.bytesAt(1080, 2)) == 0xEF53 {
			t.Error("forced create left the ext4 magic in place")
		}
	}
	if err := DetectSignature(newMemDisk("/dev/y", 1<<14)); err != nil {
		t.Errorf("blank disk: %v", err)
	}
}

func TestCreateRefuses(t *testing.T) {
	if _, err := Create("vg0", disks(newMemDisk("/dev/tiny", 2048)), CreateOptions{}); !errors.Is(err, ErrTooSmall) {
		t.Errorf("tiny device: %v", err)
	}
	d := newMemDisk("/dev/a", 1<<14)
	if _, err := Create("bad/name", disks(d), smallOpts()); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := Create("vg0", disks(d), CreateOptions{ExtentSize: 12}); !errors.Is(err, ErrBadSize) {
		t.Errorf("bad extent size: %v", err)
	}
	if len(d.data) != 0 {
		t.Fatal("refused create wrote to the disk")
	}
}

func TestSlotFallback(t *testing.T) {
	d0, d1 := newMemDisk("/dev/a", 1<<14), newMemDisk("/dev/b", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(d0, d1), smallOpts()))
	old := s.Pool
	if err := s.Commit(must[*Pool](t)(old.AddVolume("v", 2))); err != nil {
		t.Fatal(err)
	}
	newer := s.Pool
	l := must[Label](t)(ReadLabel(d0))
	// Seqno 2 lives in slot B of both PVs. Corrupt its payload on both.
	for _, d := range []*memDisk{d0, d1} {
		*d.at(l.slotStart(1).Bytes() + slotHeaderSize + 10) ^= 0xff
	}
	r := must[*Store](t)(Load(disks(d0, d1)))
	if got := mustEncode(t, r.Pool); got != mustEncode(t, old) {
		t.Errorf("fallback loaded seqno %d, want old seqno %d", r.Pool.Seqno, old.Seqno)
	}
	if len(r.Warnings) != 2 || !strings.Contains(r.Warnings[0].String(), "slot B is damaged") || !strings.Contains(r.Warnings[0].String(), "using slot A, seqno 1") {
		t.Errorf("warnings: %v", r.Warnings)
	}
	// Only one PV damaged: the other has the newest copy; the damaged one
	// is reported stale and damaged.
	*d1.at(l.slotStart(1).Bytes() + slotHeaderSize + 10) ^= 0xff
	r = must[*Store](t)(Load(disks(d0, d1)))
	if r.Pool.Seqno != newer.Seqno || len(r.Warnings) != 2 {
		t.Errorf("one PV damaged: seqno %d warnings %v", r.Pool.Seqno, r.Warnings)
	}
	// The next commit overwrites the damaged slot, not the valid one.
	if err := r.Commit(must[*Pool](t)(r.Pool.AddVolume("w", 1))); err != nil {
		t.Fatal(err)
	}
	r = must[*Store](t)(Load(disks(d0, d1)))
	if r.Pool.Seqno != 3 || len(r.Warnings) != 0 || r.Pool.Volume("w") == nil {
		t.Errorf("after repair: seqno %d warnings %v", r.Pool.Seqno, r.Warnings)
	}
	// A damaged header is a warning too; both slots damaged is an error.
	for i := range 2 {
		*d0.at(l.slotStart(i).Bytes() + 3) ^= 0xff
	}
	if _, err := Load(disks(d0)); !errors.Is(err, ErrNoMetadata) {
		t.Errorf("both slots damaged: %v", err)
	}
	r = must[*Store](t)(Load(disks(d0, d1)))
	if r.Pool.Seqno != 3 {
		t.Errorf("one PV fully damaged, other fine: seqno %d", r.Pool.Seqno)
	}
}

// rewriteSlotHeader patches a slot header field and fixes its checksum.
func rewriteSlotHeader(d *memDisk, off uint64, field int, v uint32) {
	h := d.bytesAt(off, slotHeaderSize)
	binary.LittleEndian.PutUint32(h[field:], v)
	binary.LittleEndian.PutUint32(h[508:], crc32.Checksum(h[:508], castagnoli))
	d.put(off, h)
}

func TestUnknownVersion(t *testing.T) {
	d := newMemDisk("/dev/a", 1<<14)
	must[*Store](t)(Create("vg0", disks(d), smallOpts()))
	l := must[Label](t)(ReadLabel(d))
	saved := d.clone(true)
	rewriteSlotHeader(d, l.slotStart(0).Bytes(), 8, 2)
	if _, err := Load(disks(d)); !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("slot version 2: %v", err)
	}
	d = saved.clone(true)
	lb := d.bytesAt(LabelOffset, LabelSize)
	binary.LittleEndian.PutUint32(lb[8:], 7)
	binary.LittleEndian.PutUint32(lb[508:], crc32.Checksum(lb[:508], castagnoli))
	d.put(LabelOffset, lb)
	if _, err := Load(disks(d)); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("label version 7: %v", err)
	}
	d = saved.clone(true)
	// A document version bump inside a valid slot.
	p := must[*Store](t)(Load(disks(d))).Pool
	payload := []byte(strings.Replace(mustEncode(t, p), `"version":2`, `"version":9`, 1))
	hdr := encodeSlotHeader(slotHeader{Seqno: p.Seqno, Length: uint64(len(payload)), PayloadCRC: crc32.Checksum(payload, castagnoli), Pool: p.UUID})
	off := l.slotStart(0).Bytes()
	d.put(off, hdr)
	d.put(off+slotHeaderSize, payload)
	if _, err := Load(disks(d)); !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "document version 9") {
		t.Errorf("document version 9: %v", err)
	}
}

func TestLoadProblems(t *testing.T) {
	a, b := newMemDisk("/dev/a", 1<<14), newMemDisk("/dev/b", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(a, b), smallOpts()))
	r := must[*Store](t)(Load(disks(a)))
	if len(r.Missing) != 1 || r.Missing[0] != s.Pool.PVs[1].UUID || !strings.Contains(fmt.Sprint(r.Warnings), "missing (last seen at /dev/b)") {
		t.Errorf("missing PV: %v %v", r.Missing, r.Warnings)
	}
	if err := r.Commit(r.Pool); !errors.Is(err, ErrMissingPV) {
		t.Errorf("commit with a missing PV: %v", err)
	}
	c := newMemDisk("/dev/c", 1<<14)
	must[*Store](t)(Create("vg1", disks(c), smallOpts()))
	if _, err := Load(disks(a, c)); !errors.Is(err, ErrMixedPools) {
		t.Errorf("mixed pools: %v", err)
	}
	if _, err := Load(disks(a, newMemDisk("/dev/blank", 1<<14))); !errors.Is(err, ErrNoLabel) {
		t.Errorf("unlabelled disk: %v", err)
	}
	dup := a.clone(true)
	dup.name = "/dev/a-copy"
	if _, err := Load(disks(a, dup)); !errors.Is(err, ErrDuplicatePV) {
		t.Errorf("duplicate PV: %v", err)
	}
}

func TestExtend(t *testing.T) {
	a, b := newMemDisk("/dev/a", 1<<14), newMemDisk("/dev/b", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(a), smallOpts()))
	before := s.Pool.TotalExtents()
	if err := s.Extend(disks(b), smallOpts()); err != nil {
		t.Fatal(err)
	}
	if len(s.Pool.PVs) != 2 || s.Pool.TotalExtents() != 2*before || s.Pool.Seqno != 2 {
		t.Fatalf("extended: %+v", s.Pool)
	}
	r := must[*Store](t)(Load(disks(a, b)))
	if mustEncode(t, r.Pool) != mustEncode(t, s.Pool) || len(r.Warnings) != 0 {
		t.Errorf("reload after extend: %v", r.Warnings)
	}
	if err := s.Extend(disks(b), smallOpts()); !errors.Is(err, ErrInUse) {
		t.Errorf("extend with a PV of the pool: %v", err)
	}
}

func TestMetadataFull(t *testing.T) {
	d := newMemDisk("/dev/a", 1<<16)
	s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
	p := s.Pool
	var err error
	for i := 0; err == nil; i++ {
		var q *Pool
		if q, err = p.AddVolume(fmt.Sprintf("volume-with-a-long-name-%d", i), 1); err != nil {
			t.Fatal(err)
		}
		if err = s.Commit(q); err == nil {
			p = q
		}
	}
	if !errors.Is(err, ErrMetadataFull) {
		t.Fatalf("overfull commit: %v", err)
	}
	if r := must[*Store](t)(Load(disks(d))); mustEncode(t, r.Pool) != mustEncode(t, s.Pool) {
		t.Error("refused commit changed the disk")
	}
}

// deterministicUUIDs makes NewUUID repeatable from seed until the test
// ends.
func deterministicUUIDs(t *testing.T, seed uint64) (reset func()) {
	saved := uuidSource
	t.Cleanup(func() { uuidSource = saved })
	n := seed << 40
	reset = func() { n = seed<<40 | 1<<32 }
	uuidSource = func() UUID {
		n++
		return UUID(fmt.Sprintf("%032x", n))
	}
	return reset
}

// loadLabelled loads the pool from the disks that carry a label, as the
// CLI does after a scan.
func loadLabelled(t *testing.T, ds []*memDisk) (*Store, error) {
	t.Helper()
	res, _ := Scan(disks(ds...))
	var found []Disk
	for _, r := range res {
		found = append(found, r.Disk)
	}
	return Load(found)
}

// crashCase runs op on crashing copies of base for every byte budget until
// op completes, and checks that every crash leaves exactly the old or the
// new state, both with the torn writes kept and with unsynced writes lost.
// op must be deterministic (see deterministicUUIDs).
func crashCase(t *testing.T, base []*memDisk, op func(ds []Disk) error) {
	t.Helper()
	run := func(budget int) ([]*memDisk, *world, error) {
		w := &world{budget: budget}
		var ds []*memDisk
		for _, d := range base {
			c := d.clone(true)
			c.world = w
			ds = append(ds, c)
		}
		return ds, w, op(disks(ds...))
	}
	old := mustEncode(t, must[*Store](t)(loadLabelled(t, base)).Pool)
	done, _, err := run(-1)
	if err != nil {
		t.Fatal(err)
	}
	newState := mustEncode(t, must[*Store](t)(loadLabelled(t, done)).Pool)
	if newState == old {
		t.Fatal("operation changed nothing")
	}
	sawOld, sawNew := 0, 0
	for budget := 0; ; budget++ {
		ds, w, err := run(budget)
		if err == nil {
			if w.crashed {
				t.Fatalf("budget %d: crashed but reported success", budget)
			}
			break
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("budget %d: %v", budget, err)
		}
		for _, keep := range []bool{true, false} {
			var after []*memDisk
			for _, d := range ds {
				after = append(after, d.clone(keep))
			}
			r, err := loadLabelled(t, after)
			if err != nil {
				t.Fatalf("budget %d keep=%v: load after crash: %v", budget, keep, err)
			}
			switch got := mustEncode(t, r.Pool); got {
			case old:
				sawOld++
			case newState:
				sawNew++
			default:
				t.Fatalf("budget %d keep=%v: loaded a state that is neither old nor new:\n%s", budget, keep, got)
			}
		}
	}
	if sawOld == 0 || sawNew == 0 {
		t.Errorf("crash points saw old %d times, new %d times; want both", sawOld, sawNew)
	}
	t.Logf("crash points: %d loads gave the old state, %d the new", sawOld, sawNew)
}

func TestCommitCrashEveryByte(t *testing.T) {
	reset := deterministicUUIDs(t, 1)
	a, b, c := newMemDisk("/dev/a", 1<<14), newMemDisk("/dev/b", 1<<14), newMemDisk("/dev/c", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(a, b, c), smallOpts()))
	p := s.Pool
	for i := range 4 {
		p = must[*Pool](t)(p.AddVolume(fmt.Sprintf("v%d", i), 3))
	}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	crashCase(t, []*memDisk{a, b, c}, func(ds []Disk) error {
		reset()
		s, err := Load(ds)
		if err != nil {
			return err
		}
		next := must[*Pool](t)(s.Pool.AddVolume("new", 5))
		next = must[*Pool](t)(next.RenameVolume("v0", "renamed"))
		return s.Commit(next)
	})
}

func TestExtendCrashEveryByte(t *testing.T) {
	reset := deterministicUUIDs(t, 2)
	a := newMemDisk("/dev/a", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(a), smallOpts()))
	if err := s.Commit(must[*Pool](t)(s.Pool.AddVolume("v", 3))); err != nil {
		t.Fatal(err)
	}
	crashCase(t, []*memDisk{a, newMemDisk("/dev/b", 1<<12)}, func(ds []Disk) error {
		reset()
		s, err := Load(ds[:1])
		if err != nil {
			return err
		}
		return s.Extend(ds[1:], smallOpts())
	})
}

// TestFailpoints runs a commit in a child process with each failpoint
// armed, and checks the exit status and that the disks hold the old or the
// new state.
func TestFailpoints(t *testing.T) {
	if dir := os.Getenv("DMSNAP_LVM_FAILPOINT_CHILD"); dir != "" {
		failpointChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, fp := range []string{
		"lvm.commit.before-write", "lvm.commit.after-payload", "lvm.commit.torn-header",
		"lvm.commit.after-slot-write", "lvm.commit.after-slot-write@2", "lvm.commit.done",
		"lvm.extend.after-new-pvs",
	} {
		t.Run(fp, func(t *testing.T) {
			dir := t.TempDir()
			var ds []Disk
			for _, n := range []string{"a", "b", "c"} {
				path := filepath.Join(dir, n)
				if err := CreateImage(path, 1<<14); err != nil {
					t.Fatal(err)
				}
				d := must[*FileDisk](t)(OpenDisk(path, true))
				defer d.Close()
				ds = append(ds, d)
			}
			s := must[*Store](t)(Create("vg0", ds[:2], smallOpts()))
			old := mustEncode(t, s.Pool)
			cmd := exec.Command(os.Args[0], "-test.run=^TestFailpoints$")
			cmd.Env = append(os.Environ(), "DMSNAP_LVM_FAILPOINT_CHILD="+dir, failpoint.Env+"="+fp)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != failpoint.ExitCode {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if name, _, _ := strings.Cut(fp, "@"); !strings.Contains(string(out), "failpoint "+name+" hit") {
				t.Errorf("child output lacks the failpoint line:\n%s", out)
			}
			res, _ := Scan(ds)
			var found []Disk
			for _, r := range res {
				found = append(found, r.Disk)
			}
			r := must[*Store](t)(Load(found))
			got := mustEncode(t, r.Pool)
			extending := strings.HasPrefix(fp, "lvm.extend")
			switch {
			case got == old:
				t.Logf("old state, warnings %v", r.Warnings)
			case !extending && r.Pool.Volume("child") != nil && len(r.Pool.PVs) == 2,
				extending && r.Pool.Volume("child") == nil && len(r.Pool.PVs) == 3:
				t.Logf("new state, warnings %v", r.Warnings)
			default:
				t.Errorf("neither old nor new state:\n%s", got)
			}
		})
	}
}

// failpointChild extends the pool in dir with disk c and adds a volume, in
// one commit each; the armed failpoint stops it.
func failpointChild(dir string) {
	var ds []Disk
	for _, n := range []string{"a", "b", "c"} {
		d, err := OpenDisk(filepath.Join(dir, n), true)
		if err != nil {
			panic(err)
		}
		ds = append(ds, d)
	}
	s, err := Load(ds[:2])
	if err != nil {
		panic(err)
	}
	if os.Getenv(failpoint.Env) == "lvm.extend.after-new-pvs" {
		if err := s.Extend(ds[2:], smallOpts()); err != nil {
			panic(err)
		}
	}
	next, err := s.Pool.AddVolume("child", 1)
	if err != nil {
		panic(err)
	}
	if err := s.Commit(next); err != nil {
		panic(err)
	}
	os.Exit(0)
}

func TestConflictingSeqno(t *testing.T) {
	a, b := newMemDisk("/dev/a", 1<<14), newMemDisk("/dev/b", 1<<14)
	must[*Store](t)(Create("vg0", disks(a, b), smallOpts()))
	// Two writers that each saw one PV commit different seqno-2 documents.
	sa := must[*Store](t)(Load(disks(a)))
	sa.Missing = nil
	delete(sa.Disks, sa.Pool.PVs[1].UUID)
	sb := must[*Store](t)(Load(disks(b)))
	sb.Missing = nil
	delete(sb.Disks, sb.Pool.PVs[0].UUID)
	qa := must[*Pool](t)(sa.Pool.AddVolume("x", 1))
	qb := must[*Pool](t)(sb.Pool.AddVolume("y", 1))
	for _, c := range []struct {
		s *Store
		q *Pool
		u UUID
	}{{sa, qa, qa.PVs[0].UUID}, {sb, qb, qb.PVs[1].UUID}} {
		c.q.Seqno = 2
		h, payload, err := encodeSlot(c.q)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.s.writeSlot(c.u, h, payload); err != nil {
			t.Fatal(err)
		}
	}
	r := must[*Store](t)(Load(disks(a, b)))
	if r.Pool.Seqno != 2 || !strings.Contains(fmt.Sprint(r.Warnings), "metadata seqno 2 differs from the copy on /dev/a") {
		t.Errorf("conflicting copies: seqno %d, warnings %v", r.Pool.Seqno, r.Warnings)
	}
}
