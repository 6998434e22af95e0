//go:build linux

package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestCowDiffKernel runs `dmsnap diff` and `dmsnap cow inspect` on the COW
// of a real snapshot. Scenario:
//  1. a 16 MiB origin loop device and a 4 MiB COW loop device (first 4 KiB
//     zeroed), a persistent snapshot (chunk 8) and a snapshot-origin;
//  2. origin writes to chunks 3-5 (one write), 10, 11 and 40;
//  3. `diff --json` on the COW device while the snapshot is active says it
//     is live, held by the snapshot, and lists extents 3+3, 10+2, 40+1;
//  4. after the devices are removed, `cow inspect --json` is not live and
//     reports 6 exceptions and exactly the status the kernel printed;
//     `diff` lists the same extents as byte ranges; `cow verify` exits 0.
func TestCowDiffKernel(t *testing.T) {
	// The client closes after every device is removed (cleanups run
	// in reverse).
	c := testutil.Client(t)

	_, origin := testutil.ScratchLoop(t, 16<<20)
	cowPath, cowDev := testutil.ScratchLoop(t, 4<<20)
	zero, err := os.OpenFile(cowPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zero.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := zero.Sync(); err != nil {
		t.Fatal(err)
	}
	zero.Close()
	omaj, omin := origin.Dev()
	cmaj, cmin := cowDev.Dev()
	orig := dm.DevNum{Major: omaj, Minor: omin}
	const sectors = 16 << 20 / 512

	base := testutil.UniqueName(t)
	snap := base + "-snap"
	mk := func(name string, l dm.TargetLine) dm.Info { return testutil.CreateDevice(t, c, name, "", l) }
	mk(snap, dm.Segment{Start: 0, Length: sectors, Target: dm.Snapshot{
		Origin: orig, COW: dm.DevNum{Major: cmaj, Minor: cmin}, Store: dm.Persistent, ChunkSectors: 8,
	}}.Line())
	baseInfo := mk(base, dm.Segment{Start: 0, Length: sectors, Target: dm.SnapshotOrigin{Origin: orig}}.Line())

	for _, w := range [][2]int64{{3, 3}, {10, 1}, {11, 1}, {40, 1}} {
		writeDirectChunks(t, baseInfo.BlockPath(), w[0]*4096, int(w[1])*4096)
	}
	wantX := []jsonDiffExtent{{3 * 4096, 3 * 4096, 3, 3}, {10 * 4096, 2 * 4096, 10, 2}, {40 * 4096, 4096, 40, 1}}

	code, out, errOut := runCLI(t, "diff", "--json", cowPath)
	var d jsonDiff
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 {
		t.Fatalf("live diff: exit %d: %s %s", code, out, errOut)
	}
	if !d.Live || len(d.InUseBy) != 1 || !strings.Contains(d.InUseBy[0], snap) || !slices.Equal(d.Extents, wantX) {
		t.Fatalf("live diff: %s", out)
	}
	st, _, err := c.Status(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{base, snap} {
		if err := c.Remove(n, dm.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errOut = runCLI(t, "cow", "inspect", "--json", cowPath)
	var in jsonCowInspect
	if err := json.Unmarshal([]byte(out), &in); err != nil || code != 0 {
		t.Fatalf("inspect: exit %d: %s %s", code, out, errOut)
	}
	if in.Live || in.Kind != "block" || !in.Direct || in.Exceptions != 6 || in.Usage.Status != st[0].Params {
		t.Fatalf("inspect: %s; kernel status %q", out, st[0].Params)
	}
	code, out, _ = runCLI(t, "diff", cowPath)
	if code != 0 || !hasRow(out, "12288", "12288", "3-5") || !hasRow(out, "40960", "8192", "10-11") || !hasRow(out, "163840", "4096", "40-40") {
		t.Fatalf("diff: exit %d:\n%s", code, out)
	}
	if code, out, errOut = runCLI(t, "cow", "verify", "--chunk-size", "8", "--origin-size", "16M", cowPath); code != 0 {
		t.Fatalf("verify: exit %d: %s %s", code, out, errOut)
	}
}

// writeDirectChunks writes n bytes of a pattern at off with O_DIRECT.
func writeDirectChunks(t *testing.T, path string, off int64, n int) {
	t.Helper()
	buf, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i) ^ 0x5a
	}
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}
