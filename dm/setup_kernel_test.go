//go:build linux

package dm_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

var update = flag.Bool("update", false, "write testdata/golden/<kernel>-<scenario>.txt from the kernel tests (inside the VM only)")

// scratch attaches a sparse loop device of sizeBytes and returns its
// device number.
func scratch(t *testing.T, sizeBytes int64) dm.DevNum {
	t.Helper()
	dev, _ := testutil.ScratchDev(t, sizeBytes)
	return dev
}

// create creates, loads and resumes a device with a unique name and
// removes it at cleanup (cleanups run in reverse, so stacked devices go
// first).
func create(t *testing.T, c *dm.Client, uuid string, lines ...dm.TargetLine) dm.Info {
	t.Helper()
	return testutil.CreateDevice(t, c, testutil.UniqueName(t), uuid, lines...)
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
