//go:build linux

package dm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

var update = flag.Bool("update", false, "write testdata/golden/<kernel>-<scenario>.txt from the kernel tests (inside the VM only)")

// newClient skips outside the kernel tier and opens a Client closed at
// cleanup.
func newClient(t *testing.T) *dm.Client {
	t.Helper()
	testutil.RequireKernel(t)
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// scratch attaches a sparse loop device of sizeBytes and returns its
// device number.
func scratch(t *testing.T, sizeBytes int64) dm.DevNum {
	t.Helper()
	dev, _ := scratchPath(t, sizeBytes)
	return dev
}

// scratchPath is scratch that also returns the loop device's path.
func scratchPath(t *testing.T, sizeBytes int64) (dm.DevNum, string) {
	t.Helper()
	path, d := testutil.ScratchLoop(t, sizeBytes)
	major, minor := d.Dev()
	return dm.DevNum{Major: major, Minor: minor}, path
}

// create creates, loads and resumes a device with a unique name and
// removes it at cleanup (cleanups run in reverse, so stacked devices go
// first).
func create(t *testing.T, c *dm.Client, uuid string, lines ...dm.TargetLine) dm.Info {
	t.Helper()
	name := testutil.UniqueName(t)
	info, err := c.CreateAndLoad(name, uuid, lines, dm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeRetry(t, c, name) })
	return info
}

// removeRetry removes name, retrying EBUSY briefly: a device just closed
// by a test can still be held by the kernel for a moment.
func removeRetry(t *testing.T, c *dm.Client, name string) {
	t.Helper()
	var err error
	for range 50 {
		if err = c.RemoveIfExists(name, dm.RemoveOptions{}); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("cleanup: %v", err)
}

func line(start, length dm.Sector, typ, params string) dm.TargetLine {
	return dm.TargetLine{Start: start, Length: length, Type: typ, Params: params}
}

// dmMajor returns the device-mapper block major from /proc/devices.
func dmMajor(t *testing.T) uint32 {
	t.Helper()
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		var major uint32
		var name string
		if n, _ := fmt.Sscanf(strings.TrimSpace(l), "%d %s", &major, &name); n == 2 && name == "device-mapper" {
			return major
		}
	}
	t.Fatal("no device-mapper in /proc/devices")
	return 0
}

// alignedBuf returns page-aligned memory for O_DIRECT.
func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(b) })
	return b
}

// pattern returns n bytes that differ per seed and per 4 KiB block.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i/4096) ^ byte(i)
	}
	return b
}

// writeDirect writes data at off with O_DIRECT and fsyncs, returning the
// first error (the caller asserts on it).
func writeDirect(t *testing.T, path string, off int64, data []byte) error {
	t.Helper()
	buf := alignedBuf(t, len(data))
	copy(buf, data)
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, off); err != nil {
		return err
	}
	return f.Sync()
}

func mustWrite(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	if err := writeDirect(t, path, off, data); err != nil {
		t.Fatal(err)
	}
}

// readHash reads n bytes at off with O_DIRECT (no stale page cache) and
// returns their sha256.
func readHash(t *testing.T, path string, off int64, n int) string {
	t.Helper()
	buf := alignedBuf(t, n)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// golden collects the table and status lines of one scenario and, with
// -update, writes them to testdata/golden/<kernel>-<scenario>.txt.
type golden struct {
	t        *testing.T
	scenario string
	buf      bytes.Buffer
}

func newGolden(t *testing.T, scenario string) *golden {
	g := &golden{t: t, scenario: scenario}
	t.Cleanup(g.flush)
	return g
}

func (g *golden) add(kind string, lines []dm.TargetLine) {
	for _, l := range lines {
		fmt.Fprintf(&g.buf, "%s: %s\n", kind, l)
	}
}

func (g *golden) comment(format string, args ...any) {
	fmt.Fprintf(&g.buf, "# "+format+"\n", args...)
}

func (g *golden) flush() {
	if !*update || g.t.Failed() {
		return
	}
	if !testutil.InVM() {
		g.t.Error("-update only inside the test VM")
		return
	}
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		g.t.Error(err)
		return
	}
	dir := filepath.Join("testdata", "golden")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		g.t.Error(err)
		return
	}
	name := filepath.Join(dir, strings.TrimSpace(string(rel))+"-"+g.scenario+".txt")
	if err := os.WriteFile(name, g.buf.Bytes(), 0o644); err != nil {
		g.t.Error(err)
	}
}

// table reads name's live table and asserts it equals want.
func wantTable(t *testing.T, c *dm.Client, name string, want ...dm.TargetLine) []dm.TargetLine {
	t.Helper()
	got, _, err := c.Table(name, dm.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equalLines(got, want) {
		t.Fatalf("table of %s:\n got %q\nwant %q", name, got, want)
	}
	return got
}

// wantStatus reads name's status and asserts it equals want.
func wantStatus(t *testing.T, c *dm.Client, name string, want ...dm.TargetLine) []dm.TargetLine {
	t.Helper()
	got, _, err := c.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	if !equalLines(got, want) {
		t.Fatalf("status of %s:\n got %q\nwant %q", name, got, want)
	}
	return got
}

func equalLines(a, b []dm.TargetLine) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
