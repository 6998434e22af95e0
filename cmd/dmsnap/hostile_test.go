package main

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"runtime"
	"strings"
	"testing"
)

// writeHostileLabel turns the file at path into the image of issue #13: a
// label with a valid checksum claiming 2^50-sector metadata slots, and slot
// A's header (valid checksum too) claiming a 2^40-byte payload.
func writeHostileLabel(t *testing.T, path string) {
	t.Helper()
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	le := binary.LittleEndian
	label := make([]byte, 512)
	copy(label, "DMSNAPPV")
	le.PutUint32(label[8:], 1)
	le.PutUint32(label[12:], 512)
	copy(label[16:], strings.Repeat("1", 32))
	copy(label[48:], strings.Repeat("2", 32))
	le.PutUint64(label[80:], 2048)     // device size
	le.PutUint64(label[88:], 8)        // metadata start
	le.PutUint64(label[96:], 1<<50)    // slot size
	le.PutUint64(label[104:], 8+2<<50) // first extent
	le.PutUint32(label[508:], crc32.Checksum(label[:508], castagnoli))
	slot := make([]byte, 512)
	copy(slot, "DMSNAPMD")
	le.PutUint32(slot[8:], 1)
	le.PutUint32(slot[12:], 512)
	le.PutUint64(slot[16:], 1)     // seqno
	le.PutUint64(slot[24:], 1<<40) // payload length
	copy(slot[36:], strings.Repeat("2", 32))
	le.PutUint32(slot[508:], crc32.Checksum(slot[:508], castagnoli))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(label, 512); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(slot, 8*512); err != nil {
		t.Fatal(err)
	}
}

// TestHostileImageCLI: the image of issue #13 among the remembered images
// costs one warning naming it; the other pools are found and usable, and
// importing it explicitly is a clean error naming it. Nothing allocates
// more than a few MiB.
func TestHostileImageCLI(t *testing.T) {
	e := newCLIEnv(t)
	good := e.image("good.img", 16<<20)
	bad := e.image("hostile.img", 16<<20)
	e.mustRun("pool", "create", "vg", good)
	e.mustRun("pool", "create", "vg2", bad)
	e.mustRun("lv", "create", "vg/x", "--size", "4M", "--no-activate")
	writeHostileLabel(t, bad)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, out, errs := e.run("pool", "ls")
	if code != 0 || !strings.Contains(out, "vg ") || strings.Contains(out, "vg2") {
		t.Errorf("pool ls: exit %d:\n%s%s", code, out, errs)
	}
	if n := strings.Count(errs, "warning:"); n != 1 || !strings.Contains(errs, "skipped "+bad+": ") || !strings.Contains(errs, "slot size") {
		t.Errorf("pool ls: want one warning naming %s and its bad slot size, got %q", bad, errs)
	}
	if out := e.mustRun("lv", "ls", "vg"); !strings.Contains(out, "x") {
		t.Errorf("lv ls vg:\n%s", out)
	}
	code, _, errs = e.run("pool", "import", bad)
	if code != exitError || !strings.Contains(errs, "cannot import "+bad) || !strings.Contains(errs, "corrupt metadata") {
		t.Errorf("pool import %s: exit %d: %q", bad, code, errs)
	}
	code, _, errs = e.run("lv", "ls", "vg2")
	if code != exitError || !strings.Contains(errs, "no pool named vg2") || !strings.Contains(errs, bad) {
		t.Errorf("lv ls vg2: exit %d: %q", code, errs)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("four commands allocated %d bytes", n)
	}
}

// TestCowInspectHugeChunks: a store whose header names 1 GiB chunks is
// inspected in a few MiB (it took over 1 GiB: the reader allocated a
// whole chunk per metadata area).
func TestCowInspectHugeChunks(t *testing.T) {
	e := newCLIEnv(t)
	path := e.image("huge-chunks.cow", 3<<30)
	hdr := make([]byte, 16)
	le := binary.LittleEndian
	le.PutUint32(hdr[0:], 0x70416e53) // SnAp
	le.PutUint32(hdr[4:], 1)
	le.PutUint32(hdr[8:], 1)
	le.PutUint32(hdr[12:], 1<<21) // 1 GiB chunks
	rec := make([]byte, 16)
	le.PutUint64(rec[0:], 7)
	le.PutUint64(rec[8:], 2)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(hdr, 0)
	if err == nil {
		_, err = f.WriteAt(rec, 1<<30)
	}
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, out, errs := e.run("cow", "inspect", path)
	runtime.ReadMemStats(&after)
	if code != 0 || !strings.Contains(out, "chunk 2097152 sectors") || !strings.Contains(out, "7") {
		t.Errorf("cow inspect: exit %d:\n%s%s", code, out, errs)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("cow inspect allocated %d bytes", n)
	}
}

// TestUnsafeDirs: a config or lock directory another user could write to
// is refused naming it, before any pool is read or changed.
func TestUnsafeDirs(t *testing.T) {
	e := newCLIEnv(t)
	img := e.image("a.img", 16<<20)
	e.mustRun("pool", "create", "vg", img)
	for _, dir := range []string{e.path("cfg"), e.path("lock")} {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		code, _, errs := e.run("lv", "create", "vg/x", "--size", "4M", "--no-activate")
		if code != exitError || !strings.Contains(errs, "directory "+dir+" is writable by group or others") {
			t.Errorf("%s 0777: exit %d: %q", dir, code, errs)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.mustRun("lv", "create", "vg/x", "--size", "4M", "--no-activate")
}

// TestUnreadableSlotsOfPooledPV: a PV whose label is good but whose two
// metadata slots are damaged stays part of its pool, whose description
// comes from the other PV; discovery says so once, naming it.
func TestUnreadableSlotsOfPooledPV(t *testing.T) {
	e := newCLIEnv(t)
	a := e.image("a.img", 16<<20)
	b := e.image("b.img", 16<<20)
	e.mustRun("pool", "create", "vg", a, b)
	f, err := os.OpenFile(b, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{8*512 + 16, (8+2048)*512 + 16} {
		if _, err := f.WriteAt([]byte{0xff}, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	code, out, errs := e.run("pool", "ls")
	if code != 0 || !strings.Contains(out, "vg ") {
		t.Errorf("pool ls: exit %d:\n%s%s", code, out, errs)
	}
	if n := strings.Count(errs, "(pool vg is read from its other PVs)"); n != 1 || !strings.Contains(errs, b+": ") {
		t.Errorf("pool ls: want one discovery warning naming %s, got %q", b, errs)
	}
}
