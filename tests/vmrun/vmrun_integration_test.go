package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// vmTestsEnv enables the tests that boot the VM (make test-vm sets it).
const vmTestsEnv = "DMSNAP_VM_TESTS"

var (
	buildOnce sync.Once
	runnerBin string
	buildErr  error
)

// runner builds the vmrun binary once per test process.
func runner(t *testing.T) string {
	t.Helper()
	if os.Getenv(vmTestsEnv) != "1" {
		t.Skipf("boots QEMU; set %s=1 (make test-vm) to run", vmTestsEnv)
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmrun-test-")
		if err != nil {
			buildErr = err
			return
		}
		runnerBin = filepath.Join(dir, "vmrun")
		out, err := exec.Command("go", "build", "-o", runnerBin, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return runnerBin
}

// vmrun runs the runner and returns stdout, stderr and the exit status.
func vmrun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(runner(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vmrun: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// TestVM boots the default kernel ($DMSNAP_VM_KERNEL, else bookworm).
//
//  1. --setup prepares (or reuses) the kernel cache and prints its release.
//  2. `sh -c 'exit 7'` makes vmrun exit 7.
//  3. `echo hello` comes back as exactly "hello\n" on stdout.
//  4. In the guest: DMSNAP_IN_VM=1, /dev/mapper/control exists, uname -r is
//     the cached release, the cwd is the caller's and writable.
//  5. A kernel panic gives 125 with the console tail; --timeout gives 124.
//  6. go test -exec runs a test binary in the guest.
func TestVM(t *testing.T) {
	out, errOut, code := vmrun(t, "--setup")
	if code != 0 {
		t.Fatalf("--setup: exit %d: %s", code, errOut)
	}
	release := strings.TrimSpace(out)
	if release == "" {
		t.Fatal("--setup printed no kernel release")
	}

	t.Run("exit status", func(t *testing.T) {
		t.Parallel()
		if _, errOut, code := vmrun(t, "--timeout", "120s", "sh", "-c", "exit 7"); code != 7 {
			t.Errorf("exit %d, want 7; stderr:\n%s", code, errOut)
		}
	})
	t.Run("output", func(t *testing.T) {
		t.Parallel()
		out, errOut, code := vmrun(t, "--timeout", "120s", "echo", "hello")
		if code != 0 || out != "hello\n" {
			t.Errorf("exit %d, stdout %q; want 0, %q; stderr:\n%s", code, out, "hello\n", errOut)
		}
	})
	t.Run("guest", func(t *testing.T) {
		t.Parallel()
		cwd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		marker := "vmrun-marker-" + filepath.Base(t.TempDir())
		t.Cleanup(func() { os.Remove(filepath.Join(cwd, marker)) })
		script := `echo "in_vm=$DMSNAP_IN_VM"; echo "release=$(uname -r)"; ` +
			`test -c /dev/mapper/control && echo control=yes; echo "cwd=$(pwd)"; echo "x=$X"; ` +
			`touch "$1"`
		out, errOut, code := vmrun(t, "--timeout", "120s", "--env", "X=a b", "sh", "-c", script, "sh", marker)
		if code != 0 {
			t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		want := "in_vm=1\nrelease=" + release + "\ncontrol=yes\ncwd=" + cwd + "\nx=a b\n"
		if out != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
		}
		if _, err := os.Stat(filepath.Join(cwd, marker)); err != nil {
			t.Errorf("file written in the guest's cwd is not on the host: %v", err)
		}
	})
	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		_, errOut, code := vmrun(t, "--timeout", "120s", "sh", "-c", "echo c >/proc/sysrq-trigger")
		if code != exitFailure || !strings.Contains(errOut, "no exit status") || !strings.Contains(errOut, "sysrq") {
			t.Errorf("exit %d, want %d with a console tail; stderr:\n%s", code, exitFailure, errOut)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		_, errOut, code := vmrun(t, "--timeout", "2s", "sleep", "100")
		if code != exitTimeout || !strings.Contains(errOut, "timeout") {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, exitTimeout, errOut)
		}
	})
	t.Run("go test -exec", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command("go", "test", "-count=1", "-v", "-run", "^TestGuestSide$",
			"-exec", runner(t)+" --timeout 120s", ".")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestGuestSide") {
			t.Errorf("go test -exec: %v\n%s", err, out)
		}
	})
}

// TestGuestSide runs only inside the guest, where TestVM starts it through
// go test -exec; on the host it skips.
func TestGuestSide(t *testing.T) {
	if os.Getenv(inVMEnv) != "1" {
		t.Skip("runs inside the VM (started by TestVM through go test -exec)")
	}
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		t.Fatalf("device-mapper missing in the guest: %v", err)
	}
	if os.Getenv("HOME") != "/root" {
		t.Errorf("HOME = %q, want /root", os.Getenv("HOME"))
	}
}

// TestGuestToolsFromCache boots with --tools zfs,lvm2 and checks that the
// guest's zfs, zpool, zstream, zvol_id, lvm and dmsetup are the ones
// unpacked under the cache, never the host's, that the OpenZFS module
// loaded matches the userland, and that lvm runs.
func TestGuestToolsFromCache(t *testing.T) {
	cache, err := cacheRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := `for b in zfs zpool zstream zvol_id lvm dmsetup; do printf '%s=' $b; command -v $b || echo; done
zfs version
lvm version | head -1`
	out, errOut, code := vmrun(t, "--kernel", "bookworm", "--tools", "zfs,lvm2", "--mem", "2048", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("guest:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var userland, kmod string
	for _, l := range lines {
		name, p, ok := strings.Cut(l, "=")
		switch {
		case ok && !strings.Contains(name, " "):
			if !strings.HasPrefix(p, cache+"/") {
				t.Errorf("guest runs %s from %q, want a path under %s", name, p, cache)
			}
		case strings.HasPrefix(l, "zfs-kmod-"):
			kmod = strings.TrimPrefix(l, "zfs-kmod-")
		case strings.HasPrefix(l, "zfs-"):
			userland = strings.TrimPrefix(l, "zfs-")
		}
	}
	if userland == "" || userland != kmod {
		t.Errorf("zfs version: userland %q, kernel module %q: want the same non-empty version", userland, kmod)
	}
	if !strings.Contains(out, "LVM version:") {
		t.Errorf("lvm version printed no \"LVM version:\" line")
	}
}
