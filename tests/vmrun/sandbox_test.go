package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sandboxChildEnv runs TestSandboxChild's body; the parent sets it.
const sandboxChildEnv = "VMRUN_SANDBOX_CHILD_DIR"

// TestSandboxProtectsHost runs TestSandboxChild in the sandbox that
// preparation runs in (a new mount namespace, enterSandbox) and checks
// that it could write only under the repository's cache, and that nothing
// it tried to write outside appeared on the host.
func TestSandboxProtectsHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CLONE_NEWNS); without root the host's system directories are not writable anyway")
	}
	dir := t.TempDir()
	cmd := sandboxed(exec.Command(os.Args[0], "-test.run=^TestSandboxChild$", "-test.v"))
	cmd.Env = append(cmd.Env, sandboxChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("sandboxed child: %v", err)
	}
	if !strings.Contains(string(out), "sandbox-child-ran") {
		t.Fatal("the child did not run its checks")
	}
	for _, p := range probes {
		if _, err := os.Lstat(p); err == nil {
			os.Remove(p)
			t.Errorf("%s was written on the host from inside the sandbox", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "allowed")); err != nil {
		t.Errorf("the sandbox could not write outside the protected directories: %v", err)
	}
}

// probes are files the child must fail to create: apt's configuration,
// kernel modules, /usr and dkms's tree, the places a setup step that
// installed something would write.
var probes = []string{
	"/etc/apt/sources.list.d/vmrun-sandbox-probe.sources",
	"/lib/modules/vmrun-sandbox-probe",
	"/usr/vmrun-sandbox-probe",
	"/var/lib/vmrun-sandbox-probe",
	"/etc/vmrun-sandbox-probe",
}

func TestSandboxChild(t *testing.T) {
	dir := os.Getenv(sandboxChildEnv)
	if dir == "" {
		t.Skip("run by TestSandboxProtectsHost")
	}
	if os.Getenv(sandboxEnv) != "1" {
		t.Fatal("not started through sandboxed()")
	}
	if err := inOwnMountNamespace(); err != nil {
		t.Fatal(err)
	}
	if err := enterSandbox(); err != nil {
		t.Fatal(err)
	}
	for _, p := range probes {
		err := os.WriteFile(p, []byte("x"), 0o644)
		if err == nil {
			os.Remove(p)
			t.Errorf("wrote %s inside the sandbox", p)
		} else if !errors.Is(err, syscall.EROFS) && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("write %s: %v, want EROFS", p, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "allowed"), []byte("x"), 0o644); err != nil {
		t.Errorf("write under the test's directory: %v", err)
	}
	t.Log("sandbox-child-ran")
}

// TestSandboxRefusesHostNamespace: a child told to sandbox itself but
// sharing its parent's mount namespace must refuse, or it would remount
// the host's directories read-only.
func TestSandboxRefusesHostNamespace(t *testing.T) {
	if err := inOwnMountNamespace(); !errors.Is(err, errNotSandboxed) {
		t.Fatalf("inOwnMountNamespace in the test's own namespace: %v, want errNotSandboxed", err)
	}
}
