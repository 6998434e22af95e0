package lvm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FailpointEnv names the environment variable that arms failpoints for
// crash-injection tests: a comma-separated list of failpoint names, each
// optionally followed by "@N" to fire at the Nth time the point is reached
// (default the first). A fired failpoint prints one line to stderr and
// exits the process at once with [FailpointExitCode], without running
// deferred functions or syncing anything: as close to a crash as a process
// can get. The failpoints are listed in docs/formats.md:
//
//	lvm.create.after-metadata  Create: metadata written to every PV, no label yet
//	lvm.commit.before-write    a commit is encoded, nothing written
//	lvm.commit.after-payload   a slot's document written and synced, its header not
//	lvm.commit.torn-header     half of a slot header written and synced, then exit
//	lvm.commit.after-slot-write  one PV's slot fully written and synced (fires per PV)
//	lvm.commit.done            every PV written
//	lvm.extend.after-new-pvs   Extend: new PVs labelled and written, old PVs not yet
//	lvm.snapshot.*             snapshot create/remove/extend/rename steps (docs/formats.md)
//
// Other packages' failpoints go through [Failpoint]: "ingest.*",
// "replicate.*", "pool.remove.*", "zfs.prune.*" of the CLI.
const FailpointEnv = "DMSNAP_FAILPOINT"

// FailpointPauseEnv, set to a duration ("3s"), makes an armed failpoint
// pause the process that long, silently, instead of exiting: tests
// signal a process paused inside a suspend window.
const FailpointPauseEnv = "DMSNAP_FAILPOINT_PAUSE"

// FailpointExitCode is the exit status of a process stopped by a failpoint.
const FailpointExitCode = 86

var (
	failpointMu   sync.Mutex
	failpointHits = map[string]int{}
	// failpointExit ends the process; tests replace it.
	failpointExit = func(name string) {
		fmt.Fprintf(os.Stderr, "dmsnap: failpoint %s hit, exiting\n", name)
		os.Exit(FailpointExitCode)
	}
)

// failpointArmed counts a pass through name and reports whether the armed
// failpoint fires now.
func failpointArmed(name string) bool {
	spec := os.Getenv(FailpointEnv)
	if spec == "" {
		return false
	}
	failpointMu.Lock()
	defer failpointMu.Unlock()
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
		failpointHits[name]++
		return failpointHits[name] == at
	}
	return false
}

// failpoint exits the process if name is armed.
func failpoint(name string) {
	if !failpointArmed(name) {
		return
	}
	if d, err := time.ParseDuration(os.Getenv(FailpointPauseEnv)); err == nil {
		time.Sleep(d)
		return
	}
	failpointExit(name)
}

// Failpoint exits the process if name is armed in [FailpointEnv]: the
// same mechanism for failpoints of other packages and commands (ingest's
// "ingest.*").
func Failpoint(name string) { failpoint(name) }

// PausepointEnv names the environment variable that arms pausepoints for
// tests that act on the system while a command is in the middle of a
// step: "NAME=DIR". The first time the process reaches NAME it creates
// DIR/NAME.paused, then waits until DIR/NAME.resume exists (polling every
// 50 ms, at most 10 minutes), and goes on.
const PausepointEnv = "DMSNAP_PAUSEPOINT"

var pausepointOnce sync.Map // name -> struct{}: paused once already

// Pausepoint pauses the process at name if [PausepointEnv] arms it (see
// there); otherwise it does nothing. It fires once per process.
func Pausepoint(name string) {
	n, dir, ok := strings.Cut(os.Getenv(PausepointEnv), "=")
	if !ok || n != name {
		return
	}
	if _, done := pausepointOnce.LoadOrStore(name, struct{}{}); done {
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
