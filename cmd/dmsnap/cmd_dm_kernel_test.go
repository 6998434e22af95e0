package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestDMStatusKernel runs `dmsnap dm status` and `dm ls` against real
// devices. Scenario:
//  1. a linear device over a 16 MiB loop device, and a snapshot-origin
//     plus persistent snapshot (chunk 8) over a second and third;
//  2. `dm status --json` of the snapshot reports the fresh store exactly:
//     16 sectors allocated (header + first metadata area), 16 metadata;
//  3. `dm ls` lists all of them with their target types.
func TestDMStatusKernel(t *testing.T) {
	// The client closes after every device is removed (cleanups run
	// in reverse).
	c := testutil.Client(t)

	_, origin := testutil.ScratchLoop(t, 16<<20)
	_, cow := testutil.ScratchLoop(t, 8<<20)
	omaj, omin := origin.Dev()
	cmaj, cmin := cow.Dev()
	const sectors = 16 << 20 / 512

	base := testutil.UniqueName(t)
	snap := base + "-snap"
	mk := func(name string, l dm.TargetLine) { testutil.CreateDevice(t, c, name, "", l) }
	orig := dm.DevNum{Major: omaj, Minor: omin}
	mk(base, dm.Segment{Start: 0, Length: sectors, Target: dm.SnapshotOrigin{Origin: orig}}.Line())
	mk(snap, dm.Segment{Start: 0, Length: sectors, Target: dm.Snapshot{
		Origin: orig, COW: dm.DevNum{Major: cmaj, Minor: cmin}, Store: dm.Persistent, ChunkSectors: 8,
	}}.Line())

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"dmsnap", "--json", "dm", "status", snap}, &out, &errb); code != 0 {
		t.Fatalf("dm status: exit %d: %s", code, errb.String())
	}
	var d jsonDevice
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	s := d.Targets[0].Snapshot
	if d.Name != snap || s == nil || s.State != "active" || s.AllocatedSectors != 16 || s.TotalSectors != 8<<20/512 || s.MetadataSectors != 16 {
		t.Fatalf("status of a fresh persistent snapshot: %s", out.String())
	}
	if s.UsedPercent != 0 {
		t.Errorf("used %v%%, want 0 (allocated == metadata)", s.UsedPercent)
	}

	out.Reset()
	if code := run(context.Background(), []string{"dmsnap", "dm", "ls"}, &out, &errb); code != 0 {
		t.Fatalf("dm ls: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{base + " ", snap + " "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dm ls lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), "snapshot-origin") {
		t.Errorf("dm ls does not show the snapshot-origin target:\n%s", out.String())
	}
}
