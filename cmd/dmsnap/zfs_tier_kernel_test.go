//go:build linux

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

// requireZFSTier skips unless this is the ZFS tier (make test-zfs sets
// DMSNAP_ZFS_TIER=1 in the VM), where a missing module or userland
// fails. Nothing else decides: zfs(8) loads the module by itself where it
// is installed, so /dev/zfs may appear in any VM run.
func requireZFSTier(t testing.TB) {
	t.Helper()
	testutil.RequireKernel(t)
	if os.Getenv("DMSNAP_ZFS_TIER") != "1" {
		t.Skip("ZFS tier: make test-zfs")
	}
	if _, err := os.Stat("/dev/zfs"); err != nil {
		t.Fatalf("zfs module not loaded: %v", err)
	}
	if _, err := exec.LookPath("zpool"); err != nil {
		if _, err := os.Stat("/usr/sbin/zpool"); err != nil {
			t.Fatal("zpool not installed")
		}
		t.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin")
	}
}

// scratchZpool creates a zpool named after the test on a loop device of
// sizeBytes (pools on files are not supported inside the VM's overlay)
// and destroys it at cleanup. It returns the pool name.
func scratchZpool(t testing.TB, sizeBytes int64) string {
	t.Helper()
	dev, _ := testutil.ScratchLoop(t, sizeBytes)
	name := "z" + strings.TrimPrefix(testutil.UniqueName(t), testutil.DMNamePrefix)
	if out, err := exec.Command("zpool", "create", "-f", "-o", "cachefile=none", "-m", "none", name, dev).CombinedOutput(); err != nil {
		t.Fatalf("zpool create %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("zpool", "destroy", "-f", name).CombinedOutput(); err != nil {
			t.Errorf("zpool destroy %s: %v: %s", name, err, out)
		}
	})
	return name
}
