//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/zfs"
)

// pausedRun is a dmsnap process (the test binary as dmsnap) armed to
// pause at a pausepoint (failpoint.PauseAtEnv).
type pausedRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	base string // DIR/NAME of the pausepoint
	done chan error
}

// startPaused starts dmsnap args and waits until it reaches pausepoint
// name (or exits, which fails the test).
func (e *cliEnv) startPaused(name string, args ...string) *pausedRun {
	e.t.Helper()
	full := append([]string{"--config-dir", e.path("cfg"), "--lock-dir", e.path("lock"), "--dev-dir", e.path("dev")}, args...)
	spec, _ := json.Marshal(full)
	dir := e.t.TempDir()
	r := &pausedRun{base: filepath.Join(dir, name), done: make(chan error, 1)}
	r.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperDmsnap$")
	r.cmd.Env = append(os.Environ(), helperEnv+"="+string(spec), failpoint.PauseAtEnv+"="+name+"="+dir)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	e.t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.resume()
			<-r.done
		}
	})
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if _, err := os.Stat(r.base + ".paused"); err == nil {
			return r
		}
		select {
		case err := <-r.done:
			e.t.Fatalf("%s exited (%v) before pausepoint %s:\n%s", strings.Join(args, " "), err, name, r.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not reach pausepoint %s", strings.Join(args, " "), name)
		}
	}
}

func (r *pausedRun) resume() { _ = os.WriteFile(r.base+".resume", nil, 0o600) }

// wait resumes the process and returns its exit error and output.
func (r *pausedRun) wait() (string, error) {
	r.resume()
	err := <-r.done
	return r.out.String(), err
}

// TestIngestZFSPoolUnlockedDuringCopy (issue #13): the copy of an
// ingest runs without the pool's lock.
//  1. a snapshot "other" of the origin with a 4 MiB COW, chunk 4K;
//  2. a full ingest is paused halfway through its copy
//     (pausepoint ingest.mid-copy);
//  3. 3 MiB written to the origin fill other's COW past 60%;
//  4. `dmsnap ls` and `dmsnap status` of the pool succeed, and
//     `dmsnap monitor --once --autoextend-threshold 60` grows other's COW
//     (before the fix the ingest held the pool's exclusive lock: both
//     failed with "in use by another dmsnap process");
//  5. the ingest, resumed, commits: the zvol equals its frozen snapshot,
//     and other is still valid with the old data.
func TestIngestZFSPoolUnlockedDuringCopy(t *testing.T) {
	f := newIngestFixture(t)
	old := digest(t, f.origin, f.size)
	f.e.mustRun("create", f.pool+"/base", "other", "--cow", "4M", "--chunksize", "4K")
	run := f.e.startPaused(fpIngestMidCopy, "--json", "ingest", f.pool+"/base", f.ds, "--cow", "8M")
	if err := writeAt(t, f.origin, 0, randBytes(3<<20)); err != nil {
		t.Fatal(err)
	}
	if st := kernelSnapStatus(t, f.pool+"-other"); st.Percent() < 60 || st.State != dm.SnapshotActive {
		t.Fatalf("other after 3 MiB of writes: %+v (%.1f%%), want active and past 60%%", st, st.Percent())
	}
	if code, out, errs := f.e.run("ls", f.pool); code != 0 || !strings.Contains(out, "other") {
		t.Errorf("ls during the ingest's copy: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := f.e.run("status", f.pool+"/other"); code != 0 {
		t.Errorf("status during the ingest's copy: exit %d %q", code, errs)
	}
	code, _, errs := f.e.run("monitor", "--once", "--listen", "", "--autoextend-threshold", "60", "--autoextend-percent", "50")
	st := kernelSnapStatus(t, f.pool+"-other")
	if code != 0 || st.Total.Bytes() <= 4<<20 {
		t.Errorf("monitor --once during the ingest's copy: exit %d, other's COW %d bytes (want > 4 MiB): %s", code, st.Total.Bytes(), errs)
	}
	out, err := run.wait()
	if err != nil {
		t.Fatalf("the paused ingest: %v\n%s", err, out)
	}
	cur := ingest.CursorName("base", 1)
	zv, zerr := (&zfs.Runner{}).ZvolDevice(t.Context(), f.ds, 0)
	if zerr != nil {
		t.Fatal(zerr)
	}
	if digest(t, zv, f.size) != digest(t, f.snapDev(cur), f.size) {
		t.Error("zvol differs from the frozen snapshot after the unlocked copy")
	}
	if st := kernelSnapStatus(t, f.pool+"-other"); st.State != dm.SnapshotActive {
		t.Errorf("other: %+v", st)
	}
	if digest(t, f.snapDev("other"), f.size) != old {
		t.Error("other does not read the old data")
	}
}
