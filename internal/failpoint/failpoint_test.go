package failpoint

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestArmedCountsPasses(t *testing.T) {
	t.Setenv(Env, "a, b@3, c@x, d@0")
	var fired []string
	defer SetExit(func(name string) { fired = append(fired, name) })()
	for i := 0; i < 4; i++ {
		Hit("a")
		Hit("b")
		Hit("c") // a bad count never arms
		Hit("d")
		Hit("other")
	}
	if len(fired) != 2 || fired[0] != "a" || fired[1] != "b" {
		t.Errorf("fired %v, want [a b] (a on its 1st pass, b on its 3rd)", fired)
	}
}

func TestPauseEnvPausesInsteadOfExiting(t *testing.T) {
	t.Setenv(Env, "p")
	t.Setenv(PauseEnv, "50ms")
	defer SetExit(func(name string) { t.Errorf("%s exited", name) })()
	start := time.Now()
	Hit("p")
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("paused %v, want ≥ 50ms", d)
	}
}

// TestHitExitsTheProcess runs the test binary as a child that hits an
// armed failpoint: it must exit with ExitCode, skipping deferred code.
func TestHitExitsTheProcess(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		defer os.WriteFile(os.Getenv("FAILPOINT_MARK"), nil, 0o600)
		Hit("child.step")
		return
	}
	mark := filepath.Join(t.TempDir(), "deferred-ran")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHitExitsTheProcess$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "FAILPOINT_MARK="+mark, Env+"=child.step")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitCode {
		t.Fatalf("child: %v, want exit %d:\n%s", err, ExitCode, out)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("deferred code ran after the failpoint")
	}
}

func TestPauseWaitsForResume(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(PauseAtEnv, "step="+dir)
	done := make(chan struct{})
	go func() { Pause("step"); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "step.paused")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no step.paused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("went on before step.resume")
	case <-time.After(100 * time.Millisecond):
	}
	os.WriteFile(filepath.Join(dir, "step.resume"), nil, 0o600)
	<-done
	Pause("step") // once per process: returns at once
}
