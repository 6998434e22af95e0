//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// monitorBenchEnv holds the state directory of the pool the monitor
// process of BenchmarkMonitor100Kernel watches.
const monitorBenchEnv = "DMSNAP_MONITOR_BENCH_DIR"

// monitorBenchWindow is how long the idle monitor is measured.
const monitorBenchWindow = 5 * time.Second

// TestMonitorBenchProcess is not a test: it is the monitor process of
// BenchmarkMonitor100Kernel, started from the test binary so that its
// rusage is its own. It runs `dmsnap monitor --interval 2s --listen ""
// --autoextend-threshold 100` on the state in $DMSNAP_MONITOR_BENCH_DIR
// with its log on stderr; each line on stdin makes it print "ru <user ns>
// <sys ns> <voluntary switches> <involuntary switches>" on stdout, and
// EOF stops it.
func TestMonitorBenchProcess(t *testing.T) {
	dir := os.Getenv(monitorBenchEnv)
	if dir == "" {
		t.Skip("the monitor process of BenchmarkMonitor100Kernel")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			fmt.Printf("ru %d %d %d %d\n", ru.Utime.Nano(), ru.Stime.Nano(), ru.Nvcsw, ru.Nivcsw)
		}
	}()
	args := []string{"dmsnap", "--config-dir", filepath.Join(dir, "cfg"), "--lock-dir", filepath.Join(dir, "lock"), "--dev-dir", filepath.Join(dir, "dev"),
		"monitor", "--interval", "2s", "--listen", "", "--autoextend-threshold", "100"}
	if code := run(ctx, args, io.Discard, os.Stderr); code != 0 {
		t.Fatalf("monitor: exit %d", code)
	}
}

// rusageSample is one "ru" line of the monitor process.
type rusageSample struct {
	at         time.Time
	cpu        time.Duration // user + sys
	vcsw, ivcs int64
}

// BenchmarkMonitor100Kernel:
//  1. a pool with 10 origins of 4 MiB, each with 10 snapshots of 1 MiB
//     COW (4 KiB chunks): 100 snapshots; origin o9's snapshots s1..s9 get
//     a 4 MiB COW so that only o9s0 can fill;
//  2. `dmsnap monitor --interval 2s` (auto-extend off) runs in a child
//     process; after its first poll, its CPU time (user+sys) and its
//     voluntary context switches (each one a thread going to sleep, so
//     one per wake-up) are measured over 5 s of idling;
//  3. writes to o9 in 64 KiB pieces invalidate o9s0: the time from the
//     start of the piece that invalidated it to the monitor's "is
//     invalid" log line bounds the reaction time (react-max-ms; the
//     piece itself took piece-ms).
func BenchmarkMonitor100Kernel(b *testing.B) {
	testutil.RequireKernel(b)
	dir := b.TempDir()
	for _, d := range []string{"cfg", "lock", "dev"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.Setenv(defaultPoolEnv, "")
	pool := "m" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	benchDmsnap(b, dir, "pool", "create", pool, "--file", filepath.Join(dir, "pool.img"), "--size", "256M", "--extent-size", "1M")
	b.Cleanup(func() { benchDmsnap(b, dir, "deactivate", pool) })
	for o := range 10 {
		benchDmsnap(b, dir, "lv", "create", fmt.Sprintf("%s/o%d", pool, o), "--size", "4M")
		for s := range 10 {
			cow := "1M"
			if o == 9 && s > 0 {
				cow = "4M"
			}
			benchDmsnap(b, dir, "create", fmt.Sprintf("%s/o%d", pool, o), fmt.Sprintf("o%ds%d", o, s), "--cow", cow, "--chunksize", "4K")
		}
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestMonitorBenchProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), monitorBenchEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stdin.Close()
		_ = cmd.Wait()
	}
	defer stop()
	type logLine struct {
		at   time.Time
		text string
	}
	logs := make(chan logLine, 100)
	var logText strings.Builder
	go func() {
		defer close(logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- logLine{time.Now(), sc.Text()}
		}
	}()
	waitLog := func(what string, timeout time.Duration) time.Time {
		b.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-logs:
				if !ok {
					b.Fatalf("monitor exited before %q:\n%s", what, logText.String())
				}
				logText.WriteString(l.text + "\n")
				if strings.Contains(l.text, what) {
					return l.at
				}
			case <-deadline:
				b.Fatalf("no %q in the monitor log within %s:\n%s", what, timeout, logText.String())
			}
		}
	}
	out := bufio.NewReader(stdout)
	sample := func() rusageSample {
		b.Helper()
		if _, err := io.WriteString(stdin, "\n"); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		var u, s, v, iv int64
		if _, err := fmt.Sscanf(line, "ru %d %d %d %d", &u, &s, &v, &iv); err != nil {
			b.Fatalf("monitor process: %q: %v", line, err)
		}
		return rusageSample{time.Now(), time.Duration(u + s), v, iv}
	}

	waitLog("watching snapshots", 30*time.Second)
	time.Sleep(500 * time.Millisecond) // the first poll
	b.ResetTimer()
	r0 := sample()
	time.Sleep(monitorBenchWindow)
	r1 := sample()
	b.StopTimer()
	secs := r1.at.Sub(r0.at).Seconds()
	b.ReportMetric(float64(r1.cpu-r0.cpu)/secs/1e6, "cpu-ms/s")
	b.ReportMetric(float64(r1.vcsw-r0.vcsw)/secs, "wakeups/s")
	b.ReportMetric(float64(r1.ivcs-r0.ivcs)/secs, "preempt/s")

	// Write o9 in 64 KiB direct pieces, reading o9s0's state after each:
	// it became invalid during the first piece after which it reads
	// Invalid, so the reaction took at most log time - that piece's start.
	k, err := dm.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	const piece = 64 << 10
	buf, err := syscall.Mmap(-1, 0, piece, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Munmap(buf)
	f, err := os.OpenFile(dm.DevicePath(pool+"-o9"), os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var start, end time.Time
	for off := int64(0); ; off += piece {
		if off >= 4<<20 {
			b.Fatal("4 MiB written and o9s0 is still valid")
		}
		copy(buf, randBytes(piece))
		start = time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		end = time.Now()
		lines, _, err := k.Status(pool + "-o9s0")
		if err != nil {
			b.Fatal(err)
		}
		if st, err := dm.ParseSnapshotStatus(lines[0].Params); err == nil && st.State == dm.SnapshotInvalid {
			break
		}
	}
	seen := waitLog(pool+"/o9s0 is invalid", 10*time.Second)
	b.ReportMetric(float64(seen.Sub(start).Microseconds())/1e3, "react-max-ms")
	b.ReportMetric(float64(end.Sub(start).Microseconds())/1e3, "piece-ms")
	stop()
}
