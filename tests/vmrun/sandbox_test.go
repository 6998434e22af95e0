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

// TestPreparationIsSandboxed runs vmrun's real preparation path (an empty
// cache, so it must resolve a kernel through apt) with apt-get and
// apt-cache replaced by a probe that tries to write /etc/apt. The probe
// runs as preparation's child: its write must be refused, which shows
// that every download and unpack step runs inside the sandbox.
func TestPreparationIsSandboxed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CLONE_NEWNS); without root the host's system directories are not writable anyway")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "vmrun")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fake := filepath.Join(tmp, "fakebin")
	if err := os.Mkdir(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(tmp, "probe")
	probe := "#!/bin/sh\nif touch /etc/apt/vmrun-sandbox-probe 2>/dev/null; then rm -f /etc/apt/vmrun-sandbox-probe; echo wrote >>" + report +
		"; else echo refused >>" + report + "; fi\necho 'E: probe' >&2\nexit 100\n"
	for _, n := range []string{"apt-get", "apt-cache"} {
		if err := os.WriteFile(filepath.Join(fake, n), []byte(probe), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--kernel", "bookworm", "--setup")
	cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"), cacheEnv+"="+filepath.Join(tmp, "cache"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("preparation with a failing apt succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), ": probe") {
		t.Errorf("the failure does not carry apt's cause:\n%s", out)
	}
	got, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("the probe never ran (%v):\n%s", err, out)
	}
	if strings.Contains(string(got), "wrote") || !strings.Contains(string(got), "refused") {
		t.Errorf("probe report %q: apt ran outside the sandbox", got)
	}
	if _, err := os.Lstat("/etc/apt/vmrun-sandbox-probe"); err == nil {
		os.Remove("/etc/apt/vmrun-sandbox-probe")
		t.Error("/etc/apt/vmrun-sandbox-probe appeared on the host")
	}
}
