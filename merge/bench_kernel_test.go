//go:build linux

package merge

import (
	"bufio"
	"bytes"
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

// Sizes of the merge-watch benchmark: a 64 MiB origin, 32 MiB of it
// rewritten after the snapshot (8192 exceptions of 4 KiB chunks), a
// 40 MiB COW.
const (
	benchOriginBytes = 64 << 20
	benchChangeBytes = 32 << 20
	benchCOWBytes    = 40 << 20
	// benchPollStep is the period of the reference poller that timestamps
	// the kernel's end of the merge.
	benchPollStep = 5 * time.Millisecond
	// benchPollLimit bounds one merge.
	benchPollLimit = 5 * time.Minute
)

// Environment of the helper processes: the origin device to follow, and
// the watcher's interval.
const (
	benchPollerEnv   = "DMSNAP_MERGE_POLLER"
	benchWatcherEnv  = "DMSNAP_MERGE_WATCHER"
	benchIntervalEnv = "DMSNAP_MERGE_INTERVAL"
)

// TestMergePollerProcess is not a test: it is the reference poller of
// BenchmarkMergeWatchKernel, started from the test binary so that it runs
// in its own process (the VM has one CPU; goroutines of the benchmark
// would delay it). It reads the status of the origin in $DMSNAP_MERGE_POLLER
// every 5 ms, prints "ready" after the first read, and once it has seen
// the origin run snapshot-merge and then either allocated == metadata or a
// table other than snapshot-merge, prints "done <first-done-unix-ns>
// <last-busy-unix-ns> <first-busy-unix-ns> <polls>" and exits: the kernel
// finished between the first two times, and was merging at the third. The parent's devices exist while it runs, so it exits
// without TestMain's leak check.
func TestMergePollerProcess(t *testing.T) {
	origin := os.Getenv(benchPollerEnv)
	if origin == "" {
		t.Skip("the reference poller of BenchmarkMergeWatchKernel")
	}
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	var firstBusy, lastBusy time.Time
	seen, early := false, 0
	for polls := 1; ; polls++ {
		lines, info, err := c.Status(origin)
		now := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if polls == 1 {
			fmt.Println("ready")
		}
		done := false
		if len(lines) == 1 && lines[0].Type == dm.TypeSnapshotMerge {
			st, err := dm.ParseSnapshotStatus(lines[0].Params)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != dm.SnapshotActive {
				t.Fatalf("merge status %q", lines[0].Params)
			}
			done = st.MergeDone()
			if !done {
				if !seen {
					firstBusy = now
				}
				seen, lastBusy = true, now
			}
		} else if seen {
			done = true // switched back before a poll saw allocated == metadata
		}
		if done && !seen {
			// A snapshot-merge table that reads as done before any
			// busy poll: the handover is still moving the exceptions
			// (seen on 6.12). Log it and keep polling.
			early++
			fmt.Fprintf(os.Stderr, "poll %d, %v after the first: snapshot-merge status %q (suspended %t) before any busy one\n",
				polls, now.Sub(begin).Round(time.Microsecond), lines[0].Params, info.Suspended)
			if early > 400 { // 2 s of it
				t.Fatalf("merge of %s reads as done but was never seen running", origin)
			}
			done = false
		}
		if done {
			fmt.Printf("done %d %d %d %d\n", now.UnixNano(), lastBusy.UnixNano(), firstBusy.UnixNano(), polls)
			os.Exit(0)
		}
		if now.Sub(begin) > benchPollLimit {
			t.Fatalf("no merge end on %s within %v", origin, benchPollLimit)
		}
		time.Sleep(benchPollStep)
	}
}

// TestMergeWatcherProcess is not a test: it is the watcher of
// BenchmarkMergeWatchKernel. It opens device-mapper, prints "ready",
// waits for a line on stdin, runs [Watch] on $DMSNAP_MERGE_WATCHER at
// $DMSNAP_MERGE_INTERVAL and prints "done <return-unix-ns> <watch-ns>
// <cpu-ns> <polls>", cpu being the process's user+system time spent
// during Watch (getrusage), then exits without TestMain's leak check.
func TestMergeWatcherProcess(t *testing.T) {
	origin := os.Getenv(benchWatcherEnv)
	if origin == "" {
		t.Skip("the watcher process of BenchmarkMergeWatchKernel")
	}
	interval, err := time.ParseDuration(os.Getenv(benchIntervalEnv))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cpu0 := selfCPU(t)
	start := time.Now()
	polls := 0
	r, err := Watch(context.Background(), c, origin, interval, ProgressFunc(func(Report) { polls++ }))
	end := time.Now()
	cpu := selfCPU(t) - cpu0
	if err != nil {
		t.Fatal(err)
	}
	if !r.Done {
		t.Fatalf("Watch returned %+v", r)
	}
	fmt.Printf("done %d %d %d %d\n", end.UnixNano(), end.Sub(start), cpu, polls)
	os.Exit(0)
}

// selfCPU returns the user+system time of this process so far.
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchChild is a helper process of the test binary that printed "ready".
type benchChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
}

// startBenchChild runs the test binary's helper test run with env and
// waits for its "ready" line.
func startBenchChild(b *testing.B, run string, env ...string) *benchChild {
	b.Helper()
	ch := &benchChild{cmd: exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.count=1")}
	ch.cmd.Env = append(os.Environ(), env...)
	ch.cmd.Stderr = &ch.stderr
	var err error
	if ch.stdin, err = ch.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	out, err := ch.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	ch.stdout = bufio.NewReader(out)
	if err := ch.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if line := ch.line(b); line != "ready" {
		ch.fail(b, fmt.Errorf("not ready: %q", line))
	}
	return ch
}

// line reads the child's next output line; stdout stays open until the
// child exits, and the child prints its result just before exiting.
func (ch *benchChild) line(b *testing.B) string {
	b.Helper()
	l, err := ch.stdout.ReadString('\n')
	if err != nil {
		ch.fail(b, fmt.Errorf("read: %w (%q)", err, l))
	}
	return strings.TrimSuffix(l, "\n")
}

func (ch *benchChild) fail(b *testing.B, err error) {
	b.Helper()
	ch.stdin.Close()
	rest, _ := io.ReadAll(ch.stdout) // the test's failure message
	_ = ch.cmd.Wait()
	b.Fatalf("%s: %v\n%s%s", ch.cmd.Args[1], err, rest, ch.stderr.String())
}

// result reads the "done ..." line into vals, then reaps the child.
func (ch *benchChild) result(b *testing.B, vals ...*int64) {
	b.Helper()
	l := ch.line(b)
	f := strings.Fields(l)
	if len(f) != len(vals)+1 || f[0] != "done" {
		ch.fail(b, fmt.Errorf("result %q", l))
	}
	for i, v := range vals {
		if _, err := fmt.Sscan(f[i+1], v); err != nil {
			ch.fail(b, fmt.Errorf("result %q: %w", l, err))
		}
	}
	ch.stdin.Close()
	if err := ch.cmd.Wait(); err != nil {
		b.Fatalf("%s: %v\n%s", ch.cmd.Args[1], err, ch.stderr.String())
	}
}

// pollerResult is what the reference poller saw: the kernel finished
// between lastBusy and firstDone.
type pollerResult struct {
	firstDone, lastBusy, firstBusy time.Time
	polls                          int64
}

func (ch *benchChild) pollerResult(b *testing.B) pollerResult {
	b.Helper()
	var done, busy, first, polls int64
	ch.result(b, &done, &busy, &first, &polls)
	if ch.stderr.Len() > 0 {
		b.Logf("reference poller: %s", ch.stderr.String())
	}
	return pollerResult{firstDone: time.Unix(0, done), lastBusy: time.Unix(0, busy), firstBusy: time.Unix(0, first), polls: polls}
}

// writeBench writes n bytes of a pattern seeded with seed at the start of
// path, with O_DIRECT in 1 MiB writes, and syncs.
func writeBench(b *testing.B, path string, seed byte, n int) {
	b.Helper()
	const block = 1 << 20
	buf, err := syscall.Mmap(-1, 0, block, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		b.Fatalf("mmap: %v", err)
	}
	defer syscall.Munmap(buf)
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for off := 0; off < n; off += block {
		copy(buf, testutil.Pattern(seed^byte(off/block), block))
		if _, err := f.WriteAt(buf, int64(off)); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// mergeSamples accumulates the per-iteration measurements of one
// sub-benchmark.
type mergeSamples struct {
	n                                 int
	cpu, watched, delay, merge, resol time.Duration
	procCPU, finish, reportDelay, lag time.Duration
	polls, refPolls                   int64
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (s *mergeSamples) ref(p pollerResult) {
	s.merge += p.firstDone.Sub(p.firstBusy)
	s.resol += p.firstDone.Sub(p.lastBusy)
	s.refPolls += p.polls
}

// report adds the metrics common to both tools, as means per merge.
func (s *mergeSamples) report(b *testing.B, tool string) {
	n := float64(s.n)
	b.ReportMetric(msf(s.cpu)/s.watched.Seconds(), tool+"-cpu-ms-per-s")
	b.ReportMetric(msf(s.cpu)/n, tool+"-cpu-ms")
	b.ReportMetric(msf(s.delay)/n, tool+"-done-delay-ms")
	b.ReportMetric(msf(s.merge)/n, "kernel-merge-ms")
	b.ReportMetric(msf(s.resol)/n, "ref-resolution-ms")
	b.ReportMetric(float64(s.refPolls)/n, "ref-polls")
}

// benchStack is the dm-built LVM-style layout of one dmsnap iteration
// over reused loop devices: <p>-base (snapshot-origin) over <p>-base-real,
// <p>-snap (snapshot P 8) over <p>-snap-cow.
type benchStack struct {
	c                      *dm.Client
	prefix                 string
	originLoop, cowLoop    dm.DevNum
	base, real, snap, cowD string
}

func (s *benchStack) build(b *testing.B) {
	b.Helper()
	c := s.c
	real, err := c.CreateAndLoad(s.real, "", []dm.TargetLine{{Length: benchOriginBytes / 512, Type: dm.TypeLinear, Params: s.originLoop.String() + " 0"}}, dm.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateAndLoad(s.base, "", []dm.TargetLine{{Length: benchOriginBytes / 512, Type: dm.TypeSnapshotOrigin, Params: real.Dev.String()}}, dm.LoadOptions{}); err != nil {
		b.Fatal(err)
	}
	cow, err := c.CreateAndLoad(s.cowD, "", []dm.TargetLine{{Length: benchCOWBytes / 512, Type: dm.TypeLinear, Params: s.cowLoop.String() + " 0"}}, dm.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// A zeroed first chunk: a fresh persistent store, whatever the last
	// iteration left on the loop device.
	f, err := os.OpenFile(cow.BlockPath(), os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	_, err = f.WriteAt(make([]byte, 4096), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Create(s.snap, ""); err != nil {
		b.Fatal(err)
	}
	line := dm.TargetLine{Length: benchOriginBytes / 512, Type: dm.TypeSnapshot, Params: fmt.Sprintf("%v %v P 8", real.Dev, cow.Dev)}
	if err := c.Load(s.snap, []dm.TargetLine{line}, dm.LoadOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := c.WithSuspended(context.Background(), s.base, dm.SuspendOptions{}, func() error {
		_, err := c.Resume(s.snap)
		return err
	}); err != nil {
		b.Fatal(err)
	}
}

// teardown removes whatever of the layout is left, top devices first.
func (s *benchStack) teardown(b *testing.B) {
	for _, name := range []string{s.snap, s.base, s.cowD, s.real} {
		var err error
		for range 50 {
			if err = s.c.RemoveIfExists(name, dm.RemoveOptions{}); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			b.Errorf("cleanup: %v", err)
		}
	}
}

// benchDmsnap runs b.N merges of the dm-built layout watched by a
// separate process at interval.
func benchDmsnap(b *testing.B, c *dm.Client, interval time.Duration) {
	_, ol := testutil.ScratchLoop(b, benchOriginBytes)
	_, cl := testutil.ScratchLoop(b, benchCOWBytes)
	p := testutil.UniqueName(b)
	s := &benchStack{c: c, prefix: p, base: p + "-base", real: p + "-base-real", snap: p + "-snap", cowD: p + "-snap-cow"}
	s.originLoop.Major, s.originLoop.Minor = ol.Dev()
	s.cowLoop.Major, s.cowLoop.Minor = cl.Dev()
	b.Cleanup(func() { s.teardown(b) })
	var ss mergeSamples
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		s.build(b)
		info, err := c.Info(s.base)
		if err != nil {
			b.Fatal(err)
		}
		writeBench(b, info.BlockPath(), byte(i+1), benchChangeBytes)
		watcher := startBenchChild(b, "TestMergeWatcherProcess", benchWatcherEnv+"="+s.base, benchIntervalEnv+"="+interval.String())
		poller := startBenchChild(b, "TestMergePollerProcess", benchPollerEnv+"="+s.base)
		b.StartTimer()
		m, err := Start(context.Background(), c, s.snap, StartOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.WriteString(watcher.stdin, "go\n"); err != nil {
			watcher.fail(b, err)
		}
		var doneNS, watchNS, cpuNS, polls int64
		watcher.result(b, &doneNS, &watchNS, &cpuNS, &polls)
		b.StopTimer()
		ref := poller.pollerResult(b)
		ss.n++
		ss.ref(ref)
		ss.cpu += time.Duration(cpuNS)
		ss.watched += time.Duration(watchNS)
		ss.delay += time.Unix(0, doneNS).Sub(ref.firstDone)
		ss.procCPU += watcher.cmd.ProcessState.UserTime() + watcher.cmd.ProcessState.SystemTime()
		ss.polls += polls
		// The tick that saw the end: Watch polls at once, then every
		// interval; lag is what the poll itself and the wake-up took.
		lastTick := time.Unix(0, doneNS-watchNS).Add(time.Duration(polls-1) * interval)
		ss.lag += time.Unix(0, doneNS).Sub(lastTick)
		fstart := time.Now()
		if _, err := Finish(context.Background(), c, m); err != nil {
			b.Fatal(err)
		}
		ss.finish += time.Since(fstart)
		b.Logf("merge %d: kernel %v, watch %v (%d polls, cpu %v), done delay %v, ref resolution %v",
			i, ref.firstDone.Sub(ref.firstBusy).Round(time.Millisecond), time.Duration(watchNS).Round(time.Millisecond), polls,
			time.Duration(cpuNS), time.Unix(0, doneNS).Sub(ref.firstDone).Round(time.Millisecond), ref.firstDone.Sub(ref.lastBusy))
		s.teardown(b)
	}
	ss.report(b, "dmsnap")
	b.ReportMetric(float64(ss.polls)/float64(ss.n), "polls")
	b.ReportMetric(msf(ss.procCPU)/float64(ss.n), "dmsnap-proc-cpu-ms")
	b.ReportMetric(msf(ss.finish)/float64(ss.n), "dmsnap-finish-ms")
	b.ReportMetric(msf(ss.lag)/float64(ss.n), "dmsnap-tick-lag-ms")
}

// benchLVM2VG is lvm2VG for a benchmark: the same private lvm.conf.
type benchLVM2VG struct {
	name string
	env  []string
}

func newBenchLVM2VG(b *testing.B, c *dm.Client) *benchLVM2VG {
	b.Helper()
	if _, err := exec.LookPath("lvm"); err != nil {
		b.Fatalf("lvm2 is not in PATH (vmrun --tools lvm2 puts it there): %v", err)
	}
	loopPath, _ := testutil.ScratchLoop(b, 256<<20)
	dir := b.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "lock"), 0o700); err != nil {
		b.Fatal(err)
	}
	conf := fmt.Sprintf(lvm2Conf, loopPath, filepath.Join(dir, "lock"))
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	g := &benchLVM2VG{name: testutil.UniqueName(b),
		env: append(os.Environ(), "LVM_SYSTEM_DIR="+dir, "DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1")}
	g.run(b, "vgcreate", "-y", "-s", "4m", g.name, loopPath)
	b.Cleanup(func() {
		if err := g.tryRun("vgremove", "-f", g.name); err != nil {
			b.Errorf("cleanup: %v", err)
		}
		prefix := strings.ReplaceAll(g.name, "-", "--") + "-"
		list, err := c.List()
		if err != nil {
			b.Errorf("cleanup: %v", err)
			return
		}
		for _, e := range list {
			if strings.HasPrefix(e.Name, prefix) {
				b.Errorf("cleanup: %s left; removing", e.Name)
				_ = c.RemoveIfExists(e.Name, dm.RemoveOptions{})
			}
		}
	})
	return g
}

func (g *benchLVM2VG) command(args ...string) *exec.Cmd {
	cmd := exec.Command("lvm", args...)
	cmd.Env = g.env
	return cmd
}

func (g *benchLVM2VG) tryRun(args ...string) error {
	out, err := g.command(args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lvm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (g *benchLVM2VG) run(b *testing.B, args ...string) {
	b.Helper()
	if err := g.tryRun(args...); err != nil {
		b.Fatal(err)
	}
}

func (g *benchLVM2VG) dmName(lv string) string {
	return strings.ReplaceAll(g.name, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// benchLVM2 runs b.N merges by `lvconvert --merge -i 1` of an LVM2
// snapshot with the same sizes, timed against the reference poller.
func benchLVM2(b *testing.B, c *dm.Client) {
	g := newBenchLVM2VG(b, c)
	g.run(b, "lvcreate", "-y", "-Zn", "-n", "origin", "-L", "64m", g.name)
	origin := g.dmName("origin")
	var ss mergeSamples
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		g.run(b, "lvcreate", "-y", "-s", "-c", "4k", "-n", "snap", "-L", "40m", g.name+"/origin")
		info, err := c.Info(origin)
		if err != nil {
			b.Fatal(err)
		}
		writeBench(b, info.BlockPath(), byte(i+1), benchChangeBytes)
		poller := startBenchChild(b, "TestMergePollerProcess", benchPollerEnv+"="+origin)
		lvc := g.command("lvconvert", "--merge", "-i", "1", g.name+"/snap")
		var stderr bytes.Buffer
		lvc.Stderr = &stderr
		out, err := lvc.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := lvc.Start(); err != nil {
			b.Fatal(err)
		}
		// Timestamp lvconvert's lines as they come: the one saying the
		// merge finished is its report of done; its exit follows the
		// clean-up (table swap, removals, metadata commit).
		var finishedAt time.Time
		var lines []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if finishedAt.IsZero() && strings.Contains(sc.Text(), "has finished") {
				finishedAt = time.Now()
			}
		}
		werr := lvc.Wait()
		exit := time.Now()
		b.StopTimer()
		if werr != nil {
			b.Fatalf("lvconvert --merge: %v\n%s\n%s", werr, strings.Join(lines, "\n"), stderr.String())
		}
		if finishedAt.IsZero() {
			b.Fatalf("lvconvert --merge printed no \"has finished\" line:\n%s", strings.Join(lines, "\n"))
		}
		ref := poller.pollerResult(b)
		ss.n++
		ss.ref(ref)
		cpu := lvc.ProcessState.UserTime() + lvc.ProcessState.SystemTime()
		ss.cpu += cpu
		ss.watched += exit.Sub(start)
		ss.delay += exit.Sub(ref.firstDone)
		ss.reportDelay += finishedAt.Sub(ref.firstDone)
		b.Logf("merge %d: kernel %v, lvconvert %v (cpu %v), finished line after %v, exit after %v, ref resolution %v; output:\n%s",
			i, ref.firstDone.Sub(ref.firstBusy).Round(time.Millisecond), exit.Sub(start).Round(time.Millisecond), cpu,
			finishedAt.Sub(ref.firstDone).Round(time.Millisecond), exit.Sub(ref.firstDone).Round(time.Millisecond),
			ref.firstDone.Sub(ref.lastBusy), strings.Join(lines, "\n"))
	}
	ss.report(b, "lvm2")
	b.ReportMetric(msf(ss.reportDelay)/float64(ss.n), "lvm2-finished-line-delay-ms")
}

// BenchmarkMergeWatchKernel
//   - per iteration: a 64 MiB origin with a persistent snapshot of 4 KiB
//     chunks (40 MiB COW), 32 MiB of the origin rewritten (8192
//     exceptions), then merged
//   - a reference poller process reads the origin's status every 5 ms and
//     timestamps the first poll that sees allocated == metadata (or the
//     table switched back): the kernel finished between its last busy
//     poll and that one
//   - dmsnap-500ms, dmsnap-100ms: the dm-built LVM-style layout; Start in
//     the benchmark, Watch in a separate process at the interval; metrics
//     dmsnap-cpu-ms-per-s (the watcher's user+sys time during Watch per
//     second watched), dmsnap-cpu-ms (per merge), dmsnap-done-delay-ms
//     (Watch's return minus the reference poller's first done),
//     dmsnap-proc-cpu-ms (the whole watcher process: start-up included),
//     dmsnap-finish-ms (Finish, run afterwards in the benchmark), polls
//   - lvm2: an LVM2 VG (private lvm.conf) with the same sizes; `lvm
//     lvconvert --merge -i 1 VG/snap` as a process; lvm2-cpu-ms-per-s and
//     lvm2-cpu-ms from its rusage over its wall time (start-up, scanning
//     and clean-up included), lvm2-done-delay-ms its exit minus the
//     reference poller's first done (includes its clean-up),
//     lvm2-finished-line-delay-ms when its "has finished" line reached us
//   - all: kernel-merge-ms (merge start to the reference's done),
//     ref-resolution-ms (the reference's last busy to first done poll)
func BenchmarkMergeWatchKernel(b *testing.B) {
	testutil.RequireKernel(b)
	c, err := dm.Open()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for _, interval := range []time.Duration{DefaultInterval, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("dmsnap-%v", interval), func(b *testing.B) { benchDmsnap(b, c, interval) })
	}
	b.Run("lvm2", func(b *testing.B) { benchLVM2(b, c) })
}
