package dm

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// vmLocked returns the VmLck line of /proc/self/status ("" if absent).
func vmLocked(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmLck:") {
			return strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return ""
}

// TestLockMemory: the memory is locked while any window is open,
// windows nest, and the outermost unlock unlocks (checked in VmLck).
func TestLockMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mlockall is Linux-only here")
	}
	if got := vmLocked(t); got != "0 kB" {
		t.Skipf("memory already locked: VmLck %s", got)
	}
	outer, err := LockMemory()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOMEM) {
		outer()
		t.Skipf("mlockall: %v (no CAP_IPC_LOCK)", err)
	}
	if err != nil {
		outer()
		t.Fatal(err)
	}
	if got := vmLocked(t); got == "0 kB" {
		t.Errorf("inside a window: VmLck %s", got)
	}
	inner, err := LockMemory()
	if err != nil {
		t.Fatal(err)
	}
	inner()
	inner() // idempotent
	if got := vmLocked(t); got == "0 kB" {
		t.Errorf("after the inner window: VmLck %s, want still locked", got)
	}
	outer()
	if got := vmLocked(t); got != "0 kB" {
		t.Errorf("after the outer window: VmLck %s", got)
	}
}
