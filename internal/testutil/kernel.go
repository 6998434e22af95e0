package testutil

import (
	"flag"
	"os"
	"testing"
)

// InVMEnv is set to 1 by tests/vmrun inside the guest.
const InVMEnv = "DMSNAP_IN_VM"

var rootFlag = flag.Bool("dmsnap.root", false, "run kernel-tier tests on this host (needs root and device-mapper)")

// InVM reports whether the test runs inside the dmsnap test VM.
func InVM() bool { return os.Getenv(InVMEnv) == "1" }

// RequireKernel skips t unless it may touch the real kernel: inside the test
// VM, or on a host with -dmsnap.root. Inside the VM, or with the flag set,
// a missing prerequisite is a failure, never a skip: a skip there would
// hide a broken tier.
func RequireKernel(t testing.TB) {
	t.Helper()
	mandatory := InVM() || *rootFlag
	if !mandatory {
		t.Skip("kernel tier: runs inside the test VM (make test-vm) or with -dmsnap.root on a host with device-mapper")
	}
	if os.Geteuid() != 0 {
		t.Fatal("kernel tier requested but not running as root")
	}
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		t.Fatalf("kernel tier requested but device-mapper is unavailable: %v", err)
	}
}
