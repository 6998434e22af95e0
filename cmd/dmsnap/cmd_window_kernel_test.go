package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/failpoint"
)

// windowOp is an operation with a suspend window, with the failpoint
// inside it and the device suspended there.
type windowOp struct {
	name      string
	setup     func(e *cliEnv, pool string) // before the operation
	args      func(pool string) []string
	failpoint string
	suspended func(pool string) string
}

var windowOps = []windowOp{
	{
		name:      "create",
		args:      func(pool string) []string { return []string{"-v", "create", pool + "/base", "snap", "--cow", "4M"} },
		failpoint: "lvm.snapshot.suspended",
		suspended: func(pool string) string { return pool + "-base" },
	},
	{
		name:      "remove",
		setup:     func(e *cliEnv, pool string) { e.mustRun("create", pool+"/base", "snap", "--cow", "4M") },
		args:      func(pool string) []string { return []string{"-v", "remove", pool + "/snap"} },
		failpoint: "lvm.snapshot.remove.suspended",
		suspended: func(pool string) string { return pool + "-base" },
	},
	{
		name:      "extend",
		setup:     func(e *cliEnv, pool string) { e.mustRun("create", pool+"/base", "snap", "--cow", "4M") },
		args:      func(pool string) []string { return []string{"-v", "extend", pool + "/snap", "--cow", "+4M"} },
		failpoint: "lvm.snapshot.extend.suspended",
		suspended: func(pool string) string { return pool + "-base" },
	},
	{
		name:      "merge",
		setup:     func(e *cliEnv, pool string) { e.mustRun("create", pool+"/base", "snap", "--cow", "4M") },
		args:      func(pool string) []string { return []string{"-v", "merge", "--background", pool + "/snap"} },
		failpoint: "lvm.merge.origin-suspended",
		suspended: func(pool string) string { return pool + "-base" },
	},
}

// suspendedDevices returns every dm device that is suspended.
func suspendedDevices(t *testing.T, c *dm.Client) []string {
	t.Helper()
	list, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list {
		if i, err := c.Info(e.Name); err == nil && i.Suspended {
			out = append(out, e.Name)
		}
	}
	return out
}

// vmLck returns the VmLck of process pid, in kB as printed.
func vmLck(pid int) string {
	b, _ := os.ReadFile("/proc/" + itoa(pid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmLck:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmLck:"))
		}
	}
	return ""
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestSuspendWindowSignalsKernel: dmsnap -v runs create, remove, extend
// and merge, paused inside the suspend window (DMSNAP_FAILPOINT_PAUSE),
// and there gets SIGHUP (the ssh session dropped), or has the reader of
// its stderr pipe go away, so that its next write raises SIGPIPE
// (`dmsnap -v merge vg/snap 2>&1 | head -1`):
//  1. inside the window, the process's memory is locked (VmLck > 0);
//  2. the process is not killed by the signal: it resumes what it
//     suspended, and when it exits no dm device is suspended;
//  3. activate afterwards succeeds, and a plain pool matches its metadata.
func TestSuspendWindowSignalsKernel(t *testing.T) {
	for _, op := range windowOps {
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGPIPE} {
			t.Run(op.name+"/"+sig.String(), func(t *testing.T) {
				e, pool, a, b := kernelPool(t)
				e.mustRun("lv", "create", pool+"/base", "--size", "8M")
				if op.setup != nil {
					op.setup(e, pool)
				}
				full := append([]string{"--config-dir", e.path("cfg"), "--lock-dir", e.path("lock"), "--dev-dir", e.path("dev")}, op.args(pool)...)
				spec, _ := json.Marshal(full)
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDmsnap$")
				cmd.Env = append(os.Environ(), helperEnv+"="+string(spec), failpoint.Env+"="+op.failpoint, failpoint.PauseEnv+"=3s")
				// stderr is a real pipe, read here until the test
				// closes its read end.
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				var out syncBuilder
				cmd.Stdout, cmd.Stderr = &out, pw
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				pw.Close()
				copied := make(chan struct{})
				go func() { defer close(copied); readAll(pr, &out) }()
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				c, err := dm.Open()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				dev := op.suspended(pool)
				deadline := time.Now().Add(60 * time.Second)
				for {
					if i, err := c.Info(dev); err == nil && i.Suspended {
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("%s never suspended: %s", dev, out.String())
					}
					time.Sleep(5 * time.Millisecond)
				}
				if l := vmLck(cmd.Process.Pid); l == "" || l == "0 kB" {
					t.Errorf("inside the window: VmLck %q, want locked memory", l)
				}
				if sig == syscall.SIGPIPE {
					pr.Close() // the next write to stderr gets EPIPE
				} else if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				var werr error
				select {
				case werr = <-done:
				case <-time.After(120 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("dmsnap did not exit: %s", out.String())
				}
				pr.Close()
				<-copied
				if ee, ok := werr.(*exec.ExitError); ok {
					if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						t.Errorf("dmsnap was killed by %s", ws.Signal())
					}
				}
				if s := suspendedDevices(t, c); len(s) > 0 {
					t.Errorf("left suspended: %v (dmsnap: %v)\n%s", s, werr, out.String())
					for _, n := range s {
						c.Resume(n)
					}
				}
				e.mustRun("activate", pool)
				if op.name != "merge" {
					got, paths := loadImages(t, a, b)
					checkKernel(t, got, paths)
				}
			})
		}
	}
}

// syncBuilder is a strings.Builder safe for a writer and a reader.
type syncBuilder struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuilder) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuilder) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

// readAll copies r to w until r fails (it is closed).
func readAll(r *os.File, w *syncBuilder) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		w.Write(buf[:n])
		if err != nil {
			return
		}
	}
}

// suspendCheckWriter is a slow stderr (each write blocks for a while,
// as a full pipe would) that records whether any dm device was
// suspended when something was written.
type suspendCheckWriter struct {
	t  *testing.T
	c  *dm.Client
	mu sync.Mutex
	sb strings.Builder
	// during lists lines written while devices were suspended.
	during []string
}

func (w *suspendCheckWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := suspendedDevices(w.t, w.c); len(s) > 0 {
		w.during = append(w.during, strings.TrimSpace(string(p))+" (suspended: "+strings.Join(s, ",")+")")
	}
	time.Sleep(50 * time.Millisecond)
	return w.sb.Write(p)
}

// TestSuspendWindowOutputKernel runs create, remove, extend and merge with
// -v and a stderr that blocks on every write: nothing is written while
// any device is suspended (the step messages of the window come after
// the resume), and every step message still arrives.
func TestSuspendWindowOutputKernel(t *testing.T) {
	for _, op := range windowOps {
		t.Run(op.name, func(t *testing.T) {
			e, pool, _, _ := kernelPool(t)
			e.mustRun("lv", "create", pool+"/base", "--size", "8M")
			if op.setup != nil {
				op.setup(e, pool)
			}
			c, err := dm.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w := &suspendCheckWriter{t: t, c: c}
			var stdout strings.Builder
			full := append([]string{"dmsnap", "--config-dir", e.path("cfg"), "--lock-dir", e.path("lock"), "--dev-dir", e.path("dev")}, op.args(pool)...)
			if code := run(context.Background(), full, &stdout, w); code != 0 {
				t.Fatalf("exit %d: %s", code, w.sb.String())
			}
			if len(w.during) > 0 {
				t.Errorf("written while suspended:\n%s", strings.Join(w.during, "\n"))
			}
			if op.name == "merge" && !strings.Contains(w.sb.String(), "resume-origin") {
				t.Errorf("the window's step messages were lost:\n%s", w.sb.String())
			}
			if s := suspendedDevices(t, c); len(s) > 0 {
				t.Errorf("left suspended: %v", s)
			}
		})
	}
}
