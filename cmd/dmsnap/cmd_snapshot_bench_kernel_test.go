//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// Sizes of the stall benchmark: both tools snapshot a 64 MiB origin with
// a 16 MiB COW and 4 KiB chunks, while a writer issues 4 KiB direct
// writes to the origin.
const (
	stallOriginBytes = 64 << 20
	stallWriteBytes  = 4 << 10
	// stallLead and stallTail are how long the writer runs before the
	// snapshot command starts and after it returns.
	stallLead = 200 * time.Millisecond
	stallTail = 50 * time.Millisecond
)

// stallWriterEnv names the origin the writer process writes to; the
// records go to the file named by stallOutEnv.
const (
	stallWriterEnv = "DMSNAP_STALL_WRITER"
	stallOutEnv    = "DMSNAP_STALL_OUT"
)

// stallWrite is one timed write of the writer.
type stallWrite struct {
	start time.Time
	lat   time.Duration
}

// TestStallWriterProcess is not a test: it is the writer process of
// BenchmarkSnapshotStallKernel, started from the test binary (as os/exec's
// helper processes are) so that its latencies do not include waiting for
// the benchmark's own goroutines (the VM has one CPU, so GOMAXPROCS is 1).
// It writes 4 KiB with O_DIRECT at random aligned offsets of the origin
// in $DMSNAP_STALL_WRITER, prints "ready" after the first write, stops
// when its stdin closes, and then writes "start-unix-ns latency-ns" lines
// to $DMSNAP_STALL_OUT.
func TestStallWriterProcess(t *testing.T) {
	dev := os.Getenv(stallWriterEnv)
	if dev == "" {
		t.Skip("the writer process of BenchmarkSnapshotStallKernel")
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	// O_DIRECT needs an aligned buffer: an anonymous mapping is page
	// aligned.
	buf, err := syscall.Mmap(-1, 0, stallWriteBytes, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer syscall.Munmap(buf)
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ws := make([]stallWrite, 0, 1<<16)
	for i := 0; ; i++ {
		select {
		case <-stop:
			var out bytes.Buffer
			for _, w := range ws {
				fmt.Fprintf(&out, "%d %d\n", w.start.UnixNano(), w.lat)
			}
			if err := os.WriteFile(os.Getenv(stallOutEnv), out.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		buf[0] = byte(i)
		off := mrand.Int64N(stallOriginBytes/stallWriteBytes) * stallWriteBytes
		start := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, stallWrite{start, time.Since(start)})
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

// startStallWriter starts the writer process on dev and returns, once it
// has written, a function that stops it and returns its writes.
func startStallWriter(b *testing.B, dev string) (stop func() []stallWrite) {
	b.Helper()
	outPath := filepath.Join(b.TempDir(), "writes")
	cmd := exec.Command(os.Args[0], "-test.run=^TestStallWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), stallWriterEnv+"="+dev, stallOutEnv+"="+outPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	fail := func(err error) {
		b.Helper()
		stdin.Close()
		_ = cmd.Wait()
		b.Fatalf("writer on %s: %v: %s", dev, err, stderr.String())
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		fail(fmt.Errorf("not ready: %q: %w", line, err))
	}
	return func() []stallWrite {
		b.Helper()
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			fail(err)
		}
		data, err := os.ReadFile(outPath)
		if err != nil {
			fail(err)
		}
		var ws []stallWrite
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var startNS, latNS int64
			if _, err := fmt.Sscanf(l, "%d %d", &startNS, &latNS); err != nil {
				fail(fmt.Errorf("record %q: %w", l, err))
			}
			ws = append(ws, stallWrite{time.Unix(0, startNS), time.Duration(latNS)})
		}
		return ws
	}
}

// stallSample is what one iteration measured.
type stallSample struct {
	cmd       time.Duration   // wall time of the snapshot command
	suspended time.Duration   // dmsnap's reported suspended window (0 for lvm2)
	during    []time.Duration // latencies of writes overlapping the command
	baseline  []time.Duration // latencies of writes that ended before it
}

// measureStall starts the writer on dev, takes a snapshot with snap once
// the writer has run for stallLead, and stops the writer stallTail after
// snap returns.
func measureStall(b *testing.B, dev string, snap func() time.Duration) stallSample {
	b.Helper()
	stop := startStallWriter(b, dev)
	time.Sleep(stallLead)
	b.StartTimer()
	cmdStart := time.Now()
	suspended := snap()
	cmdEnd := time.Now()
	b.StopTimer()
	time.Sleep(stallTail)
	ws := stop()
	s := stallSample{cmd: cmdEnd.Sub(cmdStart), suspended: suspended}
	for _, w := range ws {
		end := w.start.Add(w.lat)
		switch {
		case end.Before(cmdStart):
			s.baseline = append(s.baseline, w.lat)
		case w.start.Before(cmdEnd):
			s.during = append(s.during, w.lat)
		}
	}
	if len(s.baseline) == 0 || len(s.during) == 0 {
		b.Fatalf("writer on %s: %d writes before the command, %d during it", dev, len(s.baseline), len(s.during))
	}
	return s
}

// percentile returns the p-th percentile (0 < p <= 100) of ds, which it
// sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.999999) - 1
	return ds[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reportStall runs b.N snapshot/remove cycles and reports: over the
// writes that overlapped a snapshot command, the worst and the p99
// latency; the median of each cycle's worst; the p99 of the writes before
// the command (the baseline); the command's mean wall time and, for
// dmsnap, its mean and worst suspended window. ns/op is the snapshot
// command alone.
func reportStall(b *testing.B, dev string, snap func(i int) time.Duration, remove func(i int)) {
	b.Helper()
	var during, baseline, worsts []time.Duration
	var cmdSum, suspSum, suspMax time.Duration
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		s := measureStall(b, dev, func() time.Duration { return snap(i) })
		remove(i)
		worst := slices.Max(s.during)
		b.Logf("iteration %d: command %v, suspended %v, %d writes during it: worst %v, p99 %v; baseline p99 %v",
			i, s.cmd.Round(time.Microsecond), s.suspended.Round(time.Microsecond), len(s.during),
			worst.Round(time.Microsecond), percentile(s.during, 99).Round(time.Microsecond),
			percentile(s.baseline, 99).Round(time.Microsecond))
		worsts = append(worsts, worst)
		during = append(during, s.during...)
		baseline = append(baseline, s.baseline...)
		cmdSum += s.cmd
		suspSum += s.suspended
		suspMax = max(suspMax, s.suspended)
	}
	b.ReportMetric(ms(slices.Max(during)), "worst-ms")
	b.ReportMetric(ms(percentile(worsts, 50)), "worst-median-ms")
	b.ReportMetric(ms(percentile(during, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(baseline, 99)), "base-p99-ms")
	b.ReportMetric(ms(cmdSum)/float64(b.N), "cmd-ms")
	if suspMax > 0 {
		b.ReportMetric(ms(suspSum)/float64(b.N), "suspended-ms")
		b.ReportMetric(ms(suspMax), "suspended-max-ms")
	}
}

// fillZero writes zeros over the first n bytes of dev, so that the
// benchmark's writes never allocate backing store.
func fillZero(b *testing.B, dev string, n int) {
	b.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n)); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// stallDmsnap runs dmsnap in-process with its directories under dir and
// returns its stdout, failing b unless it exits 0.
func stallDmsnap(b *testing.B, dir string, args ...string) string {
	b.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"dmsnap", "--config-dir", filepath.Join(dir, "cfg"), "--lock-dir", filepath.Join(dir, "lock"), "--dev-dir", filepath.Join(dir, "dev")}, args...)
	if code := run(context.Background(), full, &out, &errb); code != 0 {
		b.Fatalf("dmsnap %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// stallLVM2 is an LVM2 volume group on a scratch loop device, driven with
// a private lvm.conf: the setup of merge/lvm2_kernel_test.go and
// cmd_merge_lvm2_kernel_test.go (no udev, lvmpolld, dmeventd or metadata
// backups; a filter that admits the loop device alone).
type stallLVM2 struct {
	b   *testing.B // the benchmark that owns the VG (cleanup errors)
	vg  string
	env []string
}

func newStallLVM2(b *testing.B, sizeBytes int64) *stallLVM2 {
	b.Helper()
	if _, err := exec.LookPath("lvm"); err != nil {
		b.Fatalf("lvm2 is not in PATH (vmrun --tools lvm2 puts it there): %v", err)
	}
	loopPath, _ := testutil.ScratchLoop(b, sizeBytes)
	dir := b.TempDir()
	conf := fmt.Sprintf(`devices { filter = [ "a|^%[1]s$|", "r|.*|" ] global_filter = [ "a|^%[1]s$|", "r|.*|" ]
	obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 hints = "none" }
global { use_lvmpolld = 0 locking_dir = "%[2]s" }
activation { monitoring = 0 udev_sync = 0 udev_rules = 0 verify_udev_operations = 0 }
backup { backup = 0 archive = 0 }
`, loopPath, dir)
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	g := &stallLVM2{b: b, vg: testutil.UniqueName(b),
		env: append(os.Environ(), "LVM_SYSTEM_DIR="+dir, "DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1")}
	g.run(b, "vgcreate", "-y", "-s", "4m", g.vg, loopPath)
	b.Cleanup(g.remove)
	return g
}

func (g *stallLVM2) tryRun(args ...string) error {
	cmd := exec.Command("lvm", args...)
	cmd.Env = g.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lvm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// run runs one lvm command and fails tb if it fails.
func (g *stallLVM2) run(tb testing.TB, args ...string) {
	tb.Helper()
	if err := g.tryRun(args...); err != nil {
		tb.Fatal(err)
	}
}

// dmName is LVM2's device-mapper name of an LV of g.
func (g *stallLVM2) dmName(lv string) string {
	return strings.ReplaceAll(g.vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// remove deletes the volume group and then any device-mapper device of it
// that is left, so that TestMain's leak check stays meaningful.
func (g *stallLVM2) remove() {
	err := g.tryRun("vgremove", "-f", g.vg)
	c, cerr := dm.Open()
	if cerr != nil {
		g.b.Errorf("cleanup: %v", errors.Join(err, cerr))
		return
	}
	defer c.Close()
	list, lerr := c.List()
	if lerr != nil {
		g.b.Errorf("cleanup: %v", errors.Join(err, lerr))
		return
	}
	prefix := g.dmName("")
	for range 3 { // snapshot devices before their -cow and -real
		for _, e := range list {
			if strings.HasPrefix(e.Name, prefix) {
				_ = c.RemoveIfExists(e.Name, dm.RemoveOptions{})
			}
		}
	}
	if err != nil {
		g.b.Errorf("cleanup: %v", err)
	}
}

// BenchmarkSnapshotStallKernel measures how long a snapshot stalls the
// origin's I/O, dmsnap next to LVM2 in the same VM run.
//   - dmsnap: a pool on a 256 MiB image file, origin base (64 MiB);
//     lvm2: a VG on a 256 MiB loop device (4 MiB extents), origin LV
//     (64 MiB). Both origins are zero-filled first.
//   - each iteration: a writer process (TestStallWriterProcess) issues 4 KiB O_DIRECT writes at
//     random offsets of the origin and times each; after 200 ms, the
//     snapshot (`dmsnap --json create … --cow 16M --chunksize 4K`
//     in-process, or `lvm lvcreate -s -L 16M -c 4k` as a process); the
//     writer stops 50 ms after the command returns; the snapshot is
//     removed (`dmsnap remove`, `lvm lvremove -f`), which collapses the
//     origin back to linear, so every iteration is a first snapshot.
//   - metrics: worst-ms and p99-ms over the writes that overlapped a
//     snapshot command, worst-median-ms the median of each iteration's
//     worst, base-p99-ms over the writes before the command, cmd-ms the
//     command's wall time (ns/op as well), and for dmsnap suspended-ms
//     (mean) and suspended-max-ms, the window `create` reports.
func BenchmarkSnapshotStallKernel(b *testing.B) {
	testutil.RequireKernel(b)
	b.Setenv(defaultPoolEnv, "")
	dir := b.TempDir()
	for _, d := range []string{"cfg", "lock", "dev"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	pool := "s" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	stallDmsnap(b, dir, "pool", "create", pool, "--file", filepath.Join(dir, "pool.img"), "--size", "256M")
	b.Cleanup(func() { stallDmsnap(b, dir, "deactivate", pool) })
	stallDmsnap(b, dir, "lv", "create", pool+"/base", "--size", "64M")
	dmsnapOrigin := dm.DevicePath(pool + "-base")
	fillZero(b, dmsnapOrigin, stallOriginBytes)

	g := newStallLVM2(b, 256<<20)
	g.run(b, "lvcreate", "-y", "-L", "64M", "-n", "origin", g.vg)
	lvmOrigin := dm.DevicePath(g.dmName("origin"))
	fillZero(b, lvmOrigin, stallOriginBytes)

	b.Run("dmsnap", func(b *testing.B) {
		reportStall(b, dmsnapOrigin, func(i int) time.Duration {
			out := stallDmsnap(b, dir, "--json", "create", pool+"/base", fmt.Sprintf("snap%d", i), "--cow", "16M", "--chunksize", "4K")
			var r jsonSnapCreate
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				b.Fatalf("create --json: %v: %s", err, out)
			}
			if r.SuspendedSeconds <= 0 {
				b.Fatalf("create --json reports no suspended window: %s", out)
			}
			return time.Duration(r.SuspendedSeconds * float64(time.Second))
		}, func(i int) {
			stallDmsnap(b, dir, "remove", fmt.Sprintf("%s/snap%d", pool, i))
		})
	})
	b.Run("lvm2", func(b *testing.B) {
		reportStall(b, lvmOrigin, func(i int) time.Duration {
			g.run(b, "lvcreate", "-y", "-s", "-L", "16M", "-c", "4k", "-n", fmt.Sprintf("snap%d", i), g.vg+"/origin")
			return 0
		}, func(i int) {
			g.run(b, "lvremove", "-f", fmt.Sprintf("%s/snap%d", g.vg, i))
		})
	})
}
