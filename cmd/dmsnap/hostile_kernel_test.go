//go:build linux

package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// TestHostileImageActivateKernel: `activate`, as at boot, over a setup
// where one image file the state file remembers is the hostile image of
// issue #13 (its pool was created there, then the label and slot header
// were replaced):
//  1. activate of every pool exits 0, activates the good pool's volume
//     (its device reads what was written) and warns once, naming the bad
//     file; it allocates < 64 MiB;
//  2. activate of the hostile image's pool by name is an error naming the
//     unreadable file, and changes nothing of the good pool.
func TestHostileImageActivateKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/x", "--size", "4M")
	sum := fill(t, dm.DevicePath(pool+"-x"), 1<<20)
	bad := e.image("hostile.img", 16<<20)
	e.mustRun("pool", "create", pool+"h", bad)
	writeHostileLabel(t, bad)
	e.mustRun("deactivate", pool)
	if exists(pool + "-x") {
		t.Fatalf("%s-x still there after deactivate", pool)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, out, errs := e.run("activate")
	runtime.ReadMemStats(&after)
	if code != 0 || !strings.Contains(out, "activated pool "+pool) {
		t.Fatalf("activate: exit %d:\n%s%s", code, out, errs)
	}
	if n := strings.Count(errs, "warning:"); n != 1 || !strings.Contains(errs, "skipped "+bad+": ") {
		t.Errorf("activate: want one warning naming %s, got %q", bad, errs)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("activate allocated %d bytes", n)
	}
	if digest(t, dm.DevicePath(pool+"-x"), 1<<20) != sum {
		t.Errorf("%s-x does not read what was written", pool)
	}

	code, _, errs = e.run("activate", pool+"h")
	if code != exitError || !strings.Contains(errs, "no pool named "+pool+"h") || !strings.Contains(errs, bad) {
		t.Errorf("activate %sh: exit %d: %q", pool, code, errs)
	}
	if digest(t, dm.DevicePath(pool+"-x"), 1<<20) != sum {
		t.Errorf("%s-x changed after the failed activate", pool)
	}
}
