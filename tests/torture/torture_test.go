package torture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/dmsnap/dmsnap/internal/testutil"
	"time"
)

// vmTestsEnv enables the tests that boot the VM (make test-vm sets it).
const vmTestsEnv = "DMSNAP_VM_TESTS"

// exitGuestFailure is vmrun's status for a guest that reported none: what
// a power-off through sysrq looks like from the host.
const exitGuestFailure = 125

// TestTorture drives the guest half over as many boots as its power-offs
// need. See the package documentation.
func TestTorture(t *testing.T) {
	if os.Getenv(vmTestsEnv) != "1" {
		t.Skipf("boots QEMU; set %s=1 (make test-vm, make torture) to run", vmTestsEnv)
	}
	root := testutil.RepoRoot(t)
	vmrun := filepath.Join(root, ".cache", "bin", "vmrun")
	bin := filepath.Join(root, "bin", "dmsnap")
	for _, p := range []string{vmrun, bin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (run `make vmrun build` first)", err)
		}
	}
	iterations := 20
	if v := os.Getenv(iterationsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", iterationsEnv, v)
		}
		iterations = n
	}
	seed := rand.Uint64()
	if v := os.Getenv(seedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", seedEnv, v)
		}
		seed = s
	}
	kernel := os.Getenv("DMSNAP_VM_KERNEL")
	if kernel == "" {
		kernel = "bookworm"
	}
	t.Logf("torture: seed %d, %d iterations, kernel %s (replay: %s=%d)", seed, iterations, kernel, seedEnv, seed)

	base := filepath.Join(root, ".cache", "torture")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "run-")
	if err != nil {
		t.Fatal(err)
	}
	guestBin := filepath.Join(dir, "torture.test")
	if out, err := exec.Command("go", "test", "-c", "-o", guestBin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	st := &state{Seed: seed, Iterations: iterations}
	data, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Each boot runs until a power-off or the end; every power-off needs
	// one more boot.
	powerOffs := 0
	for boot := 1; ; boot++ {
		if boot > iterations+2 {
			t.Fatalf("still not done after %d boots", boot-1)
		}
		start := time.Now()
		code, out := runGuest(t, vmrun, kernel, dir, guestBin, bin)
		st := readState(t, dir)
		t.Logf("boot %d: exit %d after %v, at iteration %d of %d", boot, code, time.Since(start).Round(time.Second), st.Next, iterations)
		switch {
		case code == 0 && st.Done:
			t.Logf("torture seed %d: %d iterations, %d kills (%d commands finished first), %d power-offs (%d boots), new state won %d times",
				seed, iterations, st.Kills, st.Finished, st.PowerOffs, boot, st.NewWon)
			os.RemoveAll(dir)
			return
		case code == exitGuestFailure && st.Pending != nil && st.PowerOffs == powerOffs+1:
			powerOffs++ // powered off on purpose, right after a kill
			continue
		default:
			t.Fatalf("torture seed %d: boot %d exited %d at iteration %d (images and state kept in %s):\n%s", seed, boot, code, st.Next, dir, out)
		}
	}
}

func runGuest(t *testing.T, vmrun, kernel, dir, guestBin, bin string) (int, string) {
	t.Helper()
	cmd := exec.Command(vmrun, "--kernel", kernel, "--timeout", "1200s",
		"--env", dirEnv+"="+dir, "--env", binEnv+"="+bin,
		guestBin, "-test.run", "^TestTortureGuest$", "-test.v", "-test.timeout", "19m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

func readState(t *testing.T, dir string) *state {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	st := &state{}
	if err := json.Unmarshal(data, st); err != nil {
		t.Fatal(fmt.Errorf("state.json: %w", err))
	}
	return st
}
