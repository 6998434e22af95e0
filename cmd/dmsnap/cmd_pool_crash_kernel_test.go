package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
)

// loadImages reads the pool from those of imgs that carry a PV label,
// read-only, the way a fresh process would, and returns it with the image
// of each labelled PV.
func loadImages(t *testing.T, imgs ...string) (*lvm.Pool, map[lvm.UUID]string) {
	t.Helper()
	var disks []lvm.Disk
	paths := map[lvm.UUID]string{}
	for _, img := range imgs {
		d, err := lvm.OpenDisk(img, false)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		l, err := lvm.ReadLabel(d)
		if errors.Is(err, lvm.ErrNoLabel) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, d)
		paths[l.PV] = img
	}
	s, err := lvm.Load(disks)
	if err != nil {
		t.Fatal(err)
	}
	return s.Pool, paths
}

// comparable returns p without what a commit or a load may change
// without changing the state: the seqno, device hints, and empty versus
// nil lists.
func comparable(p *lvm.Pool) *lvm.Pool {
	q := p.Clone()
	q.Seqno = 0
	for i := range q.PVs {
		q.PVs[i].DeviceHint = ""
	}
	for i := range q.Volumes {
		if len(q.Volumes[i].Segments) == 0 {
			q.Volumes[i].Segments = nil
		}
	}
	if len(q.Volumes) == 0 {
		q.Volumes = nil
	}
	if len(q.Snapshots) == 0 {
		q.Snapshots = nil
	}
	if len(q.Pending) == 0 {
		q.Pending = nil
	}
	return q
}

func samePool(a, b *lvm.Pool) bool { return reflect.DeepEqual(comparable(a), comparable(b)) }

func poolJSON(p *lvm.Pool) string {
	b, _ := json.Marshal(comparable(p))
	return string(b)
}

// checkKernel asserts that the kernel holds exactly the devices the
// metadata p calls for, with exactly the planned tables (device numbers
// of the PVs' loop devices and of planned dependencies resolved), and no
// other device of the pool.
func checkKernel(t *testing.T, p *lvm.Pool, paths map[lvm.UUID]string) {
	t.Helper()
	devs := map[lvm.UUID]dm.DevNum{}
	for u, img := range paths {
		l, err := loop.Find(img)
		if err != nil {
			t.Fatal(err)
		}
		if p.PV(u) == nil || len(l) == 0 {
			continue // an unused PV's loop device is detached (autoclear)
		}
		dn, err := devNumOf(l[0])
		if err != nil {
			t.Fatal(err)
		}
		devs[u] = dn
	}
	desired, _, err := lvm.Plan(p, devs, lvm.PlanOptions{})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	k, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	want := map[string]string{}
	var names []string
	for _, d := range desired {
		lines, err := lvm.ResolveLines(d.Lines, func(name string) (dm.DevNum, bool) {
			info, err := k.Info(name)
			return info.Dev, err == nil
		})
		if err != nil {
			t.Fatalf("resolve %s: %v", d.Name, err)
		}
		want[d.Name] = d.UUID + " " + linesString(lines)
		names = append(names, d.Name)
	}
	cur, err := lvm.CurrentDevices(k, p.UUID, names)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range cur {
		got[d.Name] = d.UUID + " " + linesString(d.Lines)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kernel devices differ from the metadata:\n got  %v\n want %v", got, want)
	}
}

func linesString(lines []dm.TargetLine) string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = l.String()
	}
	return strings.Join(s, "; ")
}

// outcome is which state a crash at a failpoint must leave.
type outcome int

const (
	wantOld    outcome = iota // no PV's slot completed: the old state
	wantNew                   // some PV holds the complete new slot: the new state
	wantEither                // depends on what discovery finds (pool extend)
)

// commitPoints are the failpoints of one Commit on a pool of two PVs, in
// the order they fire: PV a is written before PV b.
var commitPoints = []struct {
	fp   string
	want outcome
}{
	{"lvm.commit.before-write", wantOld},
	{"lvm.commit.after-payload", wantOld},
	{"lvm.commit.torn-header", wantOld},
	{"lvm.commit.after-slot-write", wantNew},
	{"lvm.commit.after-payload@2", wantNew},
	{"lvm.commit.torn-header@2", wantNew},
	{"lvm.commit.after-slot-write@2", wantNew},
	{"lvm.commit.done", wantNew},
}

// crashRig is a pool on two image files with two 8 MiB volumes of random
// data: keep, which the crashed command leaves alone, and victim, which
// it changes.
type crashRig struct {
	e          *cliEnv
	pool       string
	imgs       []string
	old        *lvm.Pool
	keep, vict [32]byte
}

func newCrashRig(t *testing.T) *crashRig {
	e, pool, a, b := kernelPool(t)
	r := &crashRig{e: e, pool: pool, imgs: []string{a, b}}
	e.mustRun("lv", "create", pool+"/keep", "--size", "8M")
	e.mustRun("lv", "create", pool+"/victim", "--size", "8M")
	r.keep = fill(t, dm.DevicePath(pool+"-keep"), 8<<20)
	r.vict = fill(t, dm.DevicePath(pool+"-victim"), 8<<20)
	r.old, _ = loadImages(t, r.imgs...)
	return r
}

// settle runs activate after a crash, as a boot would, and checks the
// result: the metadata is exactly the old state or exactly next (when
// next is nil, whatever matches isNext), as want demands; the kernel
// matches the metadata; keep's data is intact. It returns whether the
// new state won and the pool as read.
func (r *crashRig) settle(t *testing.T, want outcome, next *lvm.Pool, isNext func(*lvm.Pool) bool) (bool, *lvm.Pool) {
	t.Helper()
	r.e.mustRun("activate", r.pool)
	got, paths := loadImages(t, r.imgs...)
	var isNew bool
	switch {
	case samePool(got, r.old):
	case next != nil && samePool(got, next), isNext != nil && isNext(got):
		isNew = true
	default:
		t.Fatalf("metadata is neither the old nor the new state:\n got %s\n old %s\n new %s", poolJSON(got), poolJSON(r.old), poolJSON(next))
	}
	if want == wantOld && isNew {
		t.Errorf("the new state won though no PV completed its slot")
	}
	if want == wantNew && !isNew {
		t.Errorf("the old state won though a PV completed its new slot")
	}
	checkKernel(t, got, paths)
	if digest(t, dm.DevicePath(r.pool+"-keep"), 8<<20) != r.keep {
		t.Error("data of the untouched volume changed")
	}
	return isNew, got
}

// further checks that the pool still takes a change after the crash.
func (r *crashRig) further(t *testing.T) {
	t.Helper()
	r.e.mustRun("lv", "create", r.pool+"/after", "--size", "4M")
	got, paths := loadImages(t, r.imgs...)
	if got.Volume("after") == nil {
		t.Fatal("lv create after the crash did not reach the metadata")
	}
	checkKernel(t, got, paths)
}

// TestCrashLVRemoveKernel kills `lv remove` at each commit failpoint
// (after it removed the device, as it does first), then activates:
//  1. the metadata is the old state (victim there) or the new one (gone),
//     as the failpoint demands;
//  2. the kernel has exactly the devices and tables of that state: an
//     old-state victim is rebuilt, a new-state one stays away;
//  3. keep's data, and an old-state victim's data, are intact;
//  4. a further lv create works.
func TestCrashLVRemoveKernel(t *testing.T) {
	for _, pt := range commitPoints {
		t.Run(pt.fp, func(t *testing.T) {
			r := newCrashRig(t)
			next, err := r.old.RemoveVolume("victim")
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(pt.fp, "lv", "remove", r.pool+"/victim")
			isNew, _ := r.settle(t, pt.want, next, nil)
			dev := dm.DevicePath(r.pool + "-victim")
			if !isNew && digest(t, dev, 8<<20) != r.vict {
				t.Error("data of the volume whose removal did not commit changed")
			}
			if isNew && exists(r.pool+"-victim") {
				t.Error("removed volume's device is back")
			}
			r.further(t)
		})
	}
}

// TestCrashLVExtendKernel kills `lv extend +8M` of an active volume at
// each commit failpoint (the table reload comes after the commit), then
// activates: the metadata is one state or the other, the device's table
// and size follow it (a new-state volume is reloaded bigger), the first
// 8 MiB of the volume and keep's data are intact, and a further lv create
// works.
func TestCrashLVExtendKernel(t *testing.T) {
	for _, pt := range commitPoints {
		t.Run(pt.fp, func(t *testing.T) {
			r := newCrashRig(t)
			next, err := r.old.ExtendVolume("victim", 2)
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(pt.fp, "lv", "extend", r.pool+"/victim", "--size", "+8M")
			isNew, _ := r.settle(t, pt.want, next, nil)
			dev := dm.DevicePath(r.pool + "-victim")
			want := int64(8 << 20)
			if isNew {
				want = 16 << 20
			}
			if n := devSize(t, dev); n != want {
				t.Errorf("%s is %d bytes, want %d", dev, n, want)
			}
			if digest(t, dev, 8<<20) != r.vict {
				t.Error("data of the extended volume changed")
			}
			r.further(t)
		})
	}
}

// TestCrashLVRenameKernel kills `lv rename victim renamed` of an active
// volume at each commit failpoint (the device rename comes after the
// commit), then activates: the metadata is one state or the other, the
// device carries the name of that state and no device the other name,
// the data is intact under that name, and a further lv create works.
func TestCrashLVRenameKernel(t *testing.T) {
	for _, pt := range commitPoints {
		t.Run(pt.fp, func(t *testing.T) {
			r := newCrashRig(t)
			next, err := r.old.RenameVolume("victim", "renamed")
			if err != nil {
				t.Fatal(err)
			}
			r.e.crash(pt.fp, "lv", "rename", r.pool+"/victim", "renamed")
			isNew, _ := r.settle(t, pt.want, next, nil)
			name, gone := r.pool+"-victim", r.pool+"-renamed"
			if isNew {
				name, gone = gone, name
			}
			if exists(gone) {
				t.Errorf("device %s exists in the state that has no such volume", gone)
			}
			if digest(t, dm.DevicePath(name), 8<<20) != r.vict {
				t.Errorf("data of %s changed", name)
			}
			r.further(t)
		})
	}
}

// TestCrashPoolExtendKernel kills `pool extend POOL c.img` at each of its
// failpoints: the new PV is labelled and written in full first
// (lvm.extend.after-new-pvs), then the old PVs' slots. After activate
// the metadata is the old pool or the old pool plus one PV on c.img with
// nothing else changed; the kernel matches it, keep's data is intact,
// and the pool takes a further lv create, which must not fail for a PV
// it cannot find.
func TestCrashPoolExtendKernel(t *testing.T) {
	points := []struct {
		fp   string
		want outcome
	}{
		{"lvm.commit.before-write", wantOld},
		// From here on c.img holds the new state, so whether it wins
		// before an old PV completes its slot depends on whether
		// discovery finds c.img.
		{"lvm.extend.after-new-pvs", wantEither},
		{"lvm.commit.after-payload", wantEither},
		{"lvm.commit.torn-header", wantEither},
		{"lvm.commit.after-slot-write", wantNew},
		{"lvm.commit.after-payload@2", wantNew},
		{"lvm.commit.torn-header@2", wantNew},
		{"lvm.commit.after-slot-write@2", wantNew},
		{"lvm.commit.done", wantNew},
	}
	for _, pt := range points {
		t.Run(pt.fp, func(t *testing.T) {
			r := newCrashRig(t)
			c := r.e.image("c.img", 48<<20)
			r.imgs = append(r.imgs, c)
			r.e.crash(pt.fp, "pool", "extend", r.pool, c)
			// The new state: the old one plus a PV of c.img's size.
			isNext := func(p *lvm.Pool) bool {
				n := len(r.old.PVs)
				if len(p.PVs) != n+1 || p.PVs[n].Size != dm.Sector(48<<20/dm.SectorSize) {
					return false
				}
				q := p.Clone()
				q.PVs = q.PVs[:n]
				return samePool(q, r.old)
			}
			isNew, got := r.settle(t, pt.want, nil, isNext)
			if isNew {
				if _, paths := loadImages(t, c); len(paths) != 1 {
					t.Fatal("the new PV is in the metadata but c.img has no label")
				}
				if got.FreeExtents() <= r.old.FreeExtents() {
					t.Errorf("extended pool has %d free extents, had %d", got.FreeExtents(), r.old.FreeExtents())
				}
			}
			r.further(t)
		})
	}
}

// slotOffset is the byte offset of metadata slot i (0 = A) of a PV made
// with the default slot size (docs/formats.md).
func slotOffset(i int) int64 {
	return int64((lvm.MetadataStart + dm.Sector(i)*lvm.DefaultSlotSize).Bytes())
}

// patchFile rewrites n bytes at off of path through fn.
func patchFile(t *testing.T, path string, off int64, n int, fn func(b []byte)) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	fn(b)
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// resealHeader recomputes a slot header's checksum (CRC-32C of bytes
// 0..507, stored little-endian at 508).
func resealHeader(h []byte) {
	binary.LittleEndian.PutUint32(h[508:], crc32.Checksum(h[:508], crc32.MakeTable(crc32.Castagnoli)))
}

// metadataPool makes a one-PV pool with a unique name (the kernel parts
// create devices) and four commits: seqno 4, the newest, is in slot B,
// seqno 3 in slot A.
func metadataPool(t *testing.T) (e *cliEnv, img, vg string) {
	t.Helper()
	e = newCLIEnv(t)
	vg = "t" + strings.TrimPrefix(testutil.UniqueName(t), testutil.DMNamePrefix)
	img = e.image("a.img", 8<<20)                                           // small: refusals hash every file twice
	e.mustRun("pool", "create", vg, img, "--extent-size", "1M")             // seqno 1, slot A
	e.mustRun("lv", "create", vg+"/one", "--size", "1M", "--no-activate")   // seqno 2, slot B
	e.mustRun("lv", "create", vg+"/two", "--size", "1M", "--no-activate")   // seqno 3, slot A
	e.mustRun("lv", "create", vg+"/three", "--size", "1M", "--no-activate") // seqno 4, slot B
	return e, img, vg
}

// TestPoolBadInputCorruptSlot: a corrupt payload checksum in the newest
// slot of a one-PV pool. Every command falls back to the other slot and
// says which, in one warning line (in --json, in "warnings"); the pool
// reads as of the older commit; the next commit overwrites the damaged
// slot. In the VM, activate does the same and builds exactly that state.
func TestPoolBadInputCorruptSlot(t *testing.T) {
	t.Run("cli", func(t *testing.T) {
		e, img, vg := metadataPool(t)
		// One byte of slot B's document flipped.
		patchFile(t, img, slotOffset(1)+512+40, 1, func(b []byte) { b[0] ^= 0x20 })
		code, out, errs := e.run("--json", "pool", "show", vg)
		var jp jsonPool
		if err := json.Unmarshal([]byte(out), &jp); code != 0 || err != nil {
			t.Fatalf("pool show: exit %d, %v: %s", code, err, errs)
		}
		if jp.Seqno != 3 || len(jp.Volumes) != 2 {
			t.Errorf("pool show after the fallback: seqno %d, %d volumes; want slot A's seqno 3, 2 volumes", jp.Seqno, len(jp.Volumes))
		}
		says := func(s string) bool {
			return strings.Contains(s, "slot B is damaged") && strings.Contains(s, "checksum") && strings.Contains(s, "using slot A, seqno 3")
		}
		if len(jp.Warnings) != 1 || !says(jp.Warnings[0]) {
			t.Errorf("pool show --json: want one warning naming the damaged slot and the fallback, got %q", jp.Warnings)
		}
		if code, _, errs := e.run("pool", "show", vg); code != 0 || strings.Count(errs, "\n") != 1 || !says(errs) {
			t.Errorf("pool show: exit %d; want one warning line naming the damaged slot and the fallback, got %q", code, errs)
		}
		// The next commit overwrites the damaged slot and the warning goes.
		_, _, errs = e.run("lv", "create", vg+"/four", "--size", "1M", "--no-activate")
		if !strings.Contains(errs, "slot B is damaged") {
			t.Errorf("lv create: no fallback warning: %q", errs)
		}
		code, out, errs = e.run("lv", "ls", vg)
		if code != 0 || errs != "" || strings.Contains(out, "three") || !strings.Contains(out, "four") {
			t.Errorf("lv ls after the repairing commit: exit %d %q %q", code, out, errs)
		}
	})
	t.Run("activate", func(t *testing.T) {
		testutil.RequireKernel(t)
		e, img, vg := metadataPool(t)
		patchFile(t, img, slotOffset(1)+512+40, 1, func(b []byte) { b[0] ^= 0x20 })
		code, out, errs := e.run("activate", vg)
		t.Cleanup(func() { e.run("deactivate", vg) })
		if code != 0 || !strings.Contains(errs, "slot B is damaged") || !strings.Contains(errs, "using slot A") {
			t.Fatalf("activate: exit %d: %s%s", code, out, errs)
		}
		got, paths := loadImages(t, img)
		if got.Seqno != 3 || got.Volume("three") != nil {
			t.Errorf("activate used seqno %d", got.Seqno)
		}
		checkKernel(t, got, paths)
	})
}

// TestPoolBadInputUnknownVersion: a slot or document version from a newer
// dmsnap (valid checksums) makes reading and writing commands refuse with
// one line naming the unknown version, exit 1, and change no file (nor,
// in the VM, create a device). The older slot is not used instead: a
// newer dmsnap wrote the newest state.
func TestPoolBadInputUnknownVersion(t *testing.T) {
	for _, tt := range []struct {
		name  string
		patch func(t *testing.T, img string)
	}{
		{"unknown slot version", func(t *testing.T, img string) {
			patchFile(t, img, slotOffset(1), 512, func(h []byte) {
				binary.LittleEndian.PutUint32(h[8:], 7)
				resealHeader(h)
			})
		}},
		{"unknown document version", func(t *testing.T, img string) {
			// The document is JSON with "version":2; make it 9 and
			// reseal the payload and header checksums.
			h := make([]byte, 512)
			patchFile(t, img, slotOffset(1), 512, func(b []byte) { copy(h, b) })
			n := int(binary.LittleEndian.Uint64(h[24:]))
			var sum uint32
			patchFile(t, img, slotOffset(1)+512, n, func(p []byte) {
				i := strings.Index(string(p), `"version":2`)
				if i < 0 {
					t.Fatalf("no version field in %q", p)
				}
				p[i+len(`"version":`)] = '9'
				sum = crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
			})
			patchFile(t, img, slotOffset(1), 512, func(h []byte) {
				binary.LittleEndian.PutUint32(h[32:], sum)
				resealHeader(h)
			})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, img, vg := metadataPool(t)
			tt.patch(t, img)
			cmds := [][]string{
				{"pool", "show", vg},
				{"lv", "ls", vg},
				{"lv", "create", vg + "/x", "--size", "1M", "--no-activate"},
				{"pool", "import", img},
			}
			if testutil.InVM() {
				cmds = append(cmds, []string{"activate", vg})
			}
			for _, args := range cmds {
				before := snapshotFiles(t, e.dir)
				code, _, errs := e.run(args...)
				if code != exitError || !strings.Contains(errs, "unknown metadata version") {
					t.Errorf("%v: exit %d %q; want exit %d naming the unknown version", args, code, errs, exitError)
				}
				if n := strings.Count(strings.TrimSpace(errs), "\n"); n > 0 {
					t.Errorf("%v: error is not one line: %q", args, errs)
				}
				sameFiles(t, before, snapshotFiles(t, e.dir))
				if testutil.InVM() && exists(vg+"-one") {
					t.Errorf("%v: created a device", args)
				}
			}
		})
	}
}
