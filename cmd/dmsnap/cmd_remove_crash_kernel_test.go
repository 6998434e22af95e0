package main

import (
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// TestSnapshotRemoveCrashKernel kills `dmsnap remove` at each of its
// steps (issue #13), then activates, as a boot would:
//  1. the snapshot is gone from the metadata, with no pending record
//     (every crash point is past the intent, and recovery finishes it);
//  2. the kernel has exactly the devices and tables of that metadata: no
//     -cow or -real left, the origin linear again, nothing suspended;
//  3. the origin keeps its data and device number;
//  4. a further lv create works, and the kernel still matches: it got no
//     extent a live device maps.
func TestSnapshotRemoveCrashKernel(t *testing.T) {
	for _, fp := range []string{
		"lvm.snapshot.remove.after-intent", "lvm.snapshot.remove.after-origin-load",
		"lvm.snapshot.remove.suspended", "lvm.snapshot.remove.after-snapshot",
		"lvm.snapshot.remove.after-commit",
	} {
		t.Run(fp, func(t *testing.T) {
			e, pool, a, b := kernelPool(t)
			e.mustRun("lv", "create", pool+"/base", "--size", "8M")
			base := dm.DevicePath(pool + "-base")
			e.mustRun("create", pool+"/base", "snap", "--cow", "4M")
			sum := fill(t, base, 8<<20) // fills the COW too
			dev := info(t, pool+"-base").Dev
			e.crash(fp, "remove", pool+"/snap")
			e.mustRun("activate", pool)
			got, paths := loadImages(t, a, b)
			if got.Volume("snap") != nil || len(got.Pending) != 0 || len(got.Snapshots) != 0 {
				t.Errorf("metadata after activate: %s", poolJSON(got))
			}
			checkKernel(t, got, paths)
			if !strings.HasPrefix(table(t, pool+"-base"), "0 16384 linear") {
				t.Errorf("origin table %q", table(t, pool+"-base"))
			}
			if i := info(t, pool+"-base"); i.Dev != dev || i.Suspended {
				t.Errorf("origin: %+v", i)
			}
			if digest(t, base, 8<<20) != sum {
				t.Error("origin data changed")
			}
			e.mustRun("lv", "create", pool+"/after", "--size", "4M")
			got, paths = loadImages(t, a, b)
			checkKernel(t, got, paths)
		})
	}
}
