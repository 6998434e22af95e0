package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type cpioEntry struct {
	name        string
	mode        uint32
	rdev        [2]uint32
	data        string
	headerIndex int
}

// parseCpio is an independent newc reader used to check the writer.
func parseCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	field := func(i int) uint32 {
		s := string(b[off+6+8*i : off+6+8*i+8])
		n, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			t.Fatalf("field %d at %d: %v", i, off, err)
		}
		return uint32(n)
	}
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		start := off
		name := string(b[off+110 : off+110+int(namesize)-1])
		if b[off+110+int(namesize)-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off += 110 + int(namesize)
		align()
		data := string(b[off : off+int(size)])
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			if len(b)%512 != 0 {
				t.Errorf("archive length %d not a multiple of 512", len(b))
			}
			if strings.Trim(string(b[off:]), "\x00") != "" {
				t.Errorf("non-zero bytes after trailer")
			}
			return out
		}
		out = append(out, cpioEntry{name, mode, [2]uint32{rmaj, rmin}, data, start})
	}
}

func writeSample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	steps := []error{
		w.Dir("bin", 0o755),
		w.File("bin/hello", 0o755, []byte("#!/bin/sh\necho hi\n")),
		w.File("empty", 0o644, nil),
		w.File("odd", 0o600, []byte("abcde")),
		w.Symlink("bin/sh", "busybox"),
		w.CharDev("/dev/console", 0o600, 5, 1),
		w.Close(),
		w.Close(), // idempotent
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.File("late", 0o644, nil); err == nil {
		t.Fatal("File after Close succeeded")
	}
	return buf.Bytes()
}

func TestCpioRoundTrip(t *testing.T) {
	got := parseCpio(t, writeSample(t))
	want := []cpioEntry{
		{name: "bin", mode: 0o040755},
		{name: "bin/hello", mode: 0o100755, data: "#!/bin/sh\necho hi\n"},
		{name: "empty", mode: 0o100644},
		{name: "odd", mode: 0o100600, data: "abcde"},
		{name: "bin/sh", mode: 0o120777, data: "busybox"},
		{name: "dev/console", mode: 0o020600, rdev: [2]uint32{5, 1}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.mode != w.mode || g.rdev != w.rdev || g.data != w.data {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
		if g.headerIndex%4 != 0 {
			t.Errorf("entry %s header at %d, not 4-aligned", g.name, g.headerIndex)
		}
	}
}

func TestCpioHeaderBytes(t *testing.T) {
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	if err := w.File("a", 0o644, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// magic, ino 1, mode 0100644, uid, gid, nlink 1, mtime, size 1, dev
	// 0:0, rdev 0:0, namesize 2, check; then "a\0", pad to 4, data, pad.
	want := "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" +
		"00000000" + "00000001" + "00000000" + "00000000" + "00000000" + "00000000" +
		"00000002" + "00000000" + "a\x00" + "" + "x\x00\x00\x00"
	if got := buf.String(); got != want {
		t.Errorf("header:\n%s\nwant\n%s", hex.Dump(buf.Bytes()), hex.Dump([]byte(want)))
	}
}

// TestCpioTool lists and extracts the archive with GNU cpio, if present.
func TestCpioTool(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio(1) not installed; the in-process reader covers the format")
	}
	archive := writeSample(t)
	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	want := "bin\nbin/hello\nempty\nodd\nbin/sh\ndev/console\n"
	if string(out) != want {
		t.Errorf("cpio -t = %q, want %q", out, want)
	}
	dir := t.TempDir()
	// Device nodes need privileges; extract everything else.
	cmd = exec.Command(cpio, "-i", "-d", "--quiet", "--no-absolute-filenames", "bin", "bin/*", "empty", "odd")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "bin", "hello"))
	if err != nil || string(data) != "#!/bin/sh\necho hi\n" {
		t.Errorf("bin/hello = %q, %v", data, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "odd")); err != nil || st.Mode().Perm() != 0o600 || st.Size() != 5 {
		t.Errorf("odd: %v, %v", st, err)
	}
}

// TestCpioConcatenation checks that concatenated archives stay parseable
// from the second one's start, as the kernel reads them.
func TestCpioConcatenation(t *testing.T) {
	a := writeSample(t)
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	if err := w.File("init", 0o755, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	all := append(append([]byte(nil), a...), buf.Bytes()...)
	got := parseCpio(t, all[len(a):])
	if len(got) != 1 || got[0].name != "init" {
		t.Errorf("second archive = %+v", got)
	}
}
