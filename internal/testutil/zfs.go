package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ZFSTierEnv is set to 1 inside the VM by the ZFS tier (make test-zfs).
// The Makefile also finds the packages whose kernel tests run in that
// tier by this name or by [RequireZFSTier].
const ZFSTierEnv = "DMSNAP_ZFS_TIER"

// RequireZFSTier skips t unless this is the ZFS tier, where a missing
// module or userland fails. Nothing else decides: zfs(8) loads the module
// by itself where it is installed, so /dev/zfs may appear in any VM run.
func RequireZFSTier(t testing.TB) {
	t.Helper()
	RequireKernel(t)
	if os.Getenv(ZFSTierEnv) != "1" {
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

// ScratchZpool creates a zpool named after the test on a loop device of
// sizeBytes (pools on files are not supported inside the VM's overlay)
// and destroys it at cleanup. It returns the pool name.
func ScratchZpool(t testing.TB, sizeBytes int64) string {
	t.Helper()
	dev, _ := ScratchLoop(t, sizeBytes)
	name := "z" + strings.TrimPrefix(UniqueName(t), DMNamePrefix)
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

// ZFS runs zfs(8) with args, fails t on error, and returns its output
// trimmed.
func ZFS(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
