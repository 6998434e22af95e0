package failpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Env names the environment variable that arms failpoints: a
// comma-separated list of names, each optionally followed by "@N" to fire
// the Nth time the point is reached (default the first). A fired failpoint
// prints one line to stderr and exits the process at once with
// [ExitCode], without running deferred functions or syncing anything.
const Env = "DMSNAP_FAILPOINT"

// PauseEnv, set to a duration ("3s"), makes an armed failpoint pause the
// process that long, silently, instead of exiting: tests signal a process
// paused inside a suspend window.
const PauseEnv = "DMSNAP_FAILPOINT_PAUSE"

// ExitCode is the exit status of a process stopped by a failpoint.
const ExitCode = 86

var (
	mu   sync.Mutex
	hits = map[string]int{}
	// exit ends the process; tests replace it (SetExit).
	exit = func(name string) {
		fmt.Fprintf(os.Stderr, "dmsnap: failpoint %s hit, exiting\n", name)
		os.Exit(ExitCode)
	}
)

// Armed counts a pass through name and reports whether the armed failpoint
// fires now. Callers that must do something before exiting (write half a
// header, say) use Armed and then [Exit]; everyone else calls [Hit].
func Armed(name string) bool {
	spec := os.Getenv(Env)
	if spec == "" {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	for _, item := range strings.Split(spec, ",") {
		n, at := strings.TrimSpace(item), 1
		if a, b, ok := strings.Cut(n, "@"); ok {
			v, err := strconv.Atoi(b)
			if err != nil || v < 1 {
				continue
			}
			n, at = a, v
		}
		if n != name {
			continue
		}
		hits[name]++
		return hits[name] == at
	}
	return false
}

// Exit stops the process as a fired failpoint does.
func Exit(name string) { exit(name) }

// Hit exits the process (or pauses it, with [PauseEnv]) if name is armed.
func Hit(name string) {
	if !Armed(name) {
		return
	}
	if d, err := time.ParseDuration(os.Getenv(PauseEnv)); err == nil {
		time.Sleep(d)
		return
	}
	exit(name)
}

// SetExit replaces what a fired failpoint does, and resets the hit counts,
// for tests in one process (a fake kernel's crash, say); the returned
// function restores both.
func SetExit(f func(name string)) (restore func()) {
	mu.Lock()
	saved := exit
	exit, hits = f, map[string]int{}
	mu.Unlock()
	return func() {
		mu.Lock()
		exit, hits = saved, map[string]int{}
		mu.Unlock()
	}
}

// PauseAtEnv names the environment variable that arms pausepoints, for
// tests that act on the system while a command is in the middle of a step:
// "NAME=DIR". The first time the process reaches NAME it creates
// DIR/NAME.paused, then waits until DIR/NAME.resume exists (polling every
// 50 ms, at most 10 minutes), and goes on.
const PauseAtEnv = "DMSNAP_PAUSEPOINT"

var paused sync.Map // name -> struct{}: paused once already

// Pause pauses the process at name if [PauseAtEnv] arms it; otherwise it
// does nothing. It fires once per process.
func Pause(name string) {
	n, dir, ok := strings.Cut(os.Getenv(PauseAtEnv), "=")
	if !ok || n != name {
		return
	}
	if _, done := paused.LoadOrStore(name, struct{}{}); done {
		return
	}
	base := filepath.Join(dir, name)
	if err := os.WriteFile(base+".paused", nil, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "dmsnap: pausepoint %s: %v\n", name, err)
		return
	}
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(base + ".resume"); err == nil {
			return
		}
	}
}
