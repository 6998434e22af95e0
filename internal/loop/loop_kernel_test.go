package loop

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// backingFile skips the test unless it runs as root with loop devices, and
// returns a zeroed file of size bytes to attach.
func backingFile(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control")
	}
	file := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(file, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestAttach needs root and a kernel with loop devices; it runs on the host
// when possible (the host kernel has loop but not device-mapper).
//
// Scenario:
//   - attach a 1 MiB file read-write, write through the device, read it back from the file
//   - the device shows up in Find and in sysfs with the expected flags
//   - Close detaches; a second Close is a no-op
func TestAttach(t *testing.T) {
	file := backingFile(t, 1<<20)
	d, err := Attach(file, Options{AutoClear: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })

	major, minor := d.Dev()
	if major != 7 {
		t.Errorf("major = %d, want 7", major)
	}
	if want := filepath.Base(d.Path()); want != "loop"+strconv.FormatUint(uint64(minor), 10) {
		t.Errorf("path %s vs minor %d", d.Path(), minor)
	}
	found, err := Find(file)
	if err != nil || len(found) != 1 || found[0] != d.Path() {
		t.Fatalf("Find = %v, %v; want [%s]", found, err, d.Path())
	}
	ac, err := os.ReadFile("/sys/block/" + filepath.Base(d.Path()) + "/loop/autoclear")
	if err != nil || string(ac) != "1\n" {
		t.Errorf("autoclear = %q, %v", ac, err)
	}

	pattern := bytes.Repeat([]byte("dmsnap!!"), 512)
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern, 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[4096:8192], pattern) {
		t.Fatal("write through the loop device did not reach the file")
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if found, _ := Find(file); len(found) != 0 {
		t.Fatalf("still attached after Close: %v", found)
	}
}

func TestAttachReadOnly(t *testing.T) {
	file := backingFile(t, 64<<10)
	d, err := Attach(file, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ro, err := os.ReadFile("/sys/block/" + filepath.Base(d.Path()) + "/ro")
	if err != nil || string(ro) != "1\n" {
		t.Fatalf("ro = %q, %v", ro, err)
	}
	// Depending on the kernel the open or the write fails.
	if f, err := os.OpenFile(d.Path(), os.O_WRONLY, 0); err == nil {
		_, werr := f.WriteAt(make([]byte, 4096), 0)
		serr := f.Sync()
		f.Close()
		if werr == nil && serr == nil {
			t.Fatal("wrote to a read-only loop device")
		}
	}
}

// TestHold: an autoclear device found attached and held by Hold outlives
// its other holders (here a plain open standing in for a dm table) until
// the hold is closed; Hold refuses a device bound to another file.
func TestHold(t *testing.T) {
	file := backingFile(t, 1<<20)
	d, err := Attach(file, Options{AutoClear: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.Open(d.Path()) // the "dm table"
	if err != nil {
		t.Fatal(err)
	}
	// Drop the attaching descriptor without LOOP_CLR_FD, as a finished
	// dmsnap process does: only other holds the device now.
	if err := d.f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(d.Path(), file+".other"); !errors.Is(err, ErrNotBound) {
		t.Fatalf("Hold with the wrong backing file: %v, want ErrNotBound", err)
	}
	h, err := Hold(d.Path(), file)
	if err != nil {
		t.Fatal(err)
	}
	other.Close() // the table goes; the hold keeps the device bound
	if found, _ := Find(file); len(found) != 1 || found[0] != d.Path() {
		t.Fatalf("held device detached: Find = %v", found)
	}
	h.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		found, _ := Find(file)
		if len(found) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("autoclear device still attached after its last close: %v", found)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
