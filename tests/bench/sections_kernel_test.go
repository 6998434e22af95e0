//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

// alignedBuf is an anonymous mapping of n bytes (page aligned, as
// O_DIRECT needs), unmapped at cleanup.
func alignedBuf(b *testing.B, n int) []byte {
	b.Helper()
	buf, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		b.Fatalf("mmap: %v", err)
	}
	b.Cleanup(func() { _ = syscall.Munmap(buf) })
	return buf
}

// directRead reads the first total bytes of dev sequentially with
// O_DIRECT in 1 MiB blocks and returns how long it took.
func directRead(b *testing.B, dev string, total int64) time.Duration {
	b.Helper()
	buf := alignedBuf(b, 1<<20)
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	for off := int64(0); off < total; off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatalf("read %s at %d: %v", dev, off, err)
		}
	}
	return time.Since(start)
}

// start runs dmsnap in the background with its directories under d.dir;
// the caller waits for or kills it.
func (d dmsnap) start(tb testing.TB, stdout *bytes.Buffer, args ...string) *exec.Cmd {
	tb.Helper()
	full := append([]string{"--config-dir", filepath.Join(d.dir, "cfg"), "--lock-dir", filepath.Join(d.dir, "lock"), "--dev-dir", filepath.Join(d.dir, "dev")}, args...)
	cmd := exec.Command(d.bin, full...)
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		tb.Fatalf("dmsnap %s: %v", strings.Join(args, " "), err)
	}
	return cmd
}

// --- origin stall during create ---

// stallWrite is one timed 4 KiB write of the stall writer.
type stallWrite struct {
	start time.Time
	lat   time.Duration
}

// stallPace is the writer's pause between two writes.
const stallPace = 2 * time.Millisecond

// stallWriter issues 4 KiB O_DIRECT writes at random aligned offsets of
// the first span bytes of dev, one every stallPace plus the write's own
// time, on a locked OS thread (the guest has two vCPUs; the benchmark's
// goroutine only waits for child processes), and times each.
type stallWriter struct {
	stop chan struct{}
	done chan error
	ws   []stallWrite
}

func startStallWriter(b *testing.B, dev string, span int64) *stallWriter {
	b.Helper()
	buf := alignedBuf(b, 4<<10)
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	w := &stallWriter{stop: make(chan struct{}), done: make(chan error, 1), ws: make([]stallWrite, 0, 1<<14)}
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer f.Close()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				w.done <- nil
				return
			default:
			}
			buf[0] = byte(i)
			off := mrand.Int64N(span/int64(len(buf))) * int64(len(buf))
			t := time.Now()
			if _, err := f.WriteAt(buf, off); err != nil {
				w.done <- err
				if i == 0 {
					close(ready)
				}
				return
			}
			w.ws = append(w.ws, stallWrite{t, time.Since(t)})
			if i == 0 {
				close(ready)
			}
			// Paced, not a tight loop: on a shared TCG host a
			// writer that never sleeps starves the command it
			// measures (a 43 s `create` in a first run). A stall
			// still shows as the one write that waits for it.
			time.Sleep(stallPace)
		}
	}()
	<-ready
	return w
}

// worstDuring stops the writer and returns the worst latency of the
// writes that overlapped [from, to] and how many there were.
func (w *stallWriter) worstDuring(b *testing.B, from, to time.Time) (time.Duration, int) {
	b.Helper()
	close(w.stop)
	if err := <-w.done; err != nil {
		b.Fatalf("stall writer: %v", err)
	}
	var worst time.Duration
	n := 0
	for _, x := range w.ws {
		if x.start.Add(x.lat).Before(from) || x.start.After(to) {
			continue
		}
		n++
		worst = max(worst, x.lat)
	}
	if n == 0 {
		b.Fatalf("stall writer: no write overlapped the %v window", to.Sub(from))
	}
	return worst, n
}

// stallWindow runs the writer on dev, calls act after 200 ms and returns
// the worst latency of the writes overlapping act and act's wall time.
func stallWindow(b *testing.B, dev string, span int64, act func()) (worst, took time.Duration) {
	b.Helper()
	w := startStallWriter(b, dev, span)
	time.Sleep(200 * time.Millisecond)
	from := time.Now()
	act()
	to := time.Now()
	time.Sleep(50 * time.Millisecond)
	worst, _ = w.worstDuring(b, from, to)
	return worst, to.Sub(from)
}

// stallRows: the worst 4 KiB O_DIRECT write latency on a 64 MiB origin
// while a snapshot is taken (`dmsnap create … --cow 16M --chunksize 4K`
// against `lvcreate -s -L 16M -c 4k`), over N snapshot/remove cycles;
// and the no-snapshot floor: the worst latency of the same writer over a
// window as long as dmsnap's create, with nothing taken.
func stallRows(b *testing.B, bin string, emit func(Row)) {
	const span = 64 << 20
	iters := quickOr(5, 2)
	d := dmsnap{bin, b.TempDir()}
	pool := "bs" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	origin := newPool(b, d, pool, "256M", span)
	directWrite(b, origin, span, 1<<20, false, span)
	g := newLVM2(b, 256<<20)
	g.run(b, "lvcreate", "-y", "-L", "64M", "-n", "origin", g.vg)
	lvOrigin := "/dev/mapper/" + g.dmName("origin")
	directWrite(b, lvOrigin, span, 1<<20, false, span)

	var dw, lw, fw []time.Duration
	for i := range iters {
		worst, took := stallWindow(b, origin, span, func() {
			d.run(b, "create", pool+"/base", fmt.Sprintf("st%d", i), "--cow", "16M", "--chunksize", "4K")
		})
		d.run(b, "remove", fmt.Sprintf("%s/st%d", pool, i))
		dw = append(dw, worst)
		floor, _ := stallWindow(b, origin, span, func() { time.Sleep(took) })
		fw = append(fw, floor)
		worst, ltook := stallWindow(b, lvOrigin, span, func() {
			g.run(b, "lvcreate", "-y", "-s", "-L", "16M", "-c", "4k", "-n", fmt.Sprintf("st%d", i), g.vg+"/origin")
		})
		g.run(b, "lvremove", "-f", fmt.Sprintf("%s/st%d", g.vg, i))
		lw = append(lw, worst)
		fmt.Printf("stall %d: worst write: dmsnap %v (create %v), floor %v, lvcreate %v (lvcreate %v)\n",
			i, dw[i], took.Round(time.Millisecond), fw[i], lw[i], ltook.Round(time.Millisecond))
	}
	emit(Seconds(fmt.Sprintf("worst 4 KiB O_DIRECT write latency on the origin while a snapshot is taken, worst of %d", iters),
		"`lvcreate -s`", slices.Max(dw), slices.Max(lw)))
	emit(Seconds(fmt.Sprintf("the same, median of the %d per-snapshot worsts", iters), "`lvcreate -s`", Median(dw), Median(lw)))
	emit(Seconds(fmt.Sprintf("the same against the no-snapshot floor (writer alone, window as long as `create`), worst of %d", iters),
		"no snapshot", slices.Max(dw), slices.Max(fw)))
}

// dmName is LVM2's device-mapper name of an LV of g.
func (g *lvm2) dmName(lv string) string {
	return strings.ReplaceAll(g.vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// --- merge ---

// mergeLine is the part of `dmsnap --json merge`'s lines the benchmark
// reads.
type mergeLine struct {
	MessageType string `json:"message_type"`
}

// dmsnapMerge runs `dmsnap --json merge POOL/SNAP` and returns its wall
// time and the time from its merge_done line (the kernel reported the
// merge complete) to its exit (the layout collapsed and committed).
func dmsnapMerge(b *testing.B, d dmsnap, snap string) (wall, collapse time.Duration) {
	b.Helper()
	full := append([]string{"--config-dir", filepath.Join(d.dir, "cfg"), "--lock-dir", filepath.Join(d.dir, "lock"), "--dev-dir", filepath.Join(d.dir, "dev")}, "--json", "merge", snap)
	cmd := exec.Command(d.bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var doneAt time.Time
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var l mergeLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.MessageType == "merge_done" && doneAt.IsZero() {
			doneAt = time.Now()
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("dmsnap merge %s: %v: %s", snap, err, stderr.String())
	}
	end := time.Now()
	if doneAt.IsZero() {
		b.Fatalf("dmsnap merge %s: no merge_done line", snap)
	}
	return end.Sub(start), end.Sub(doneAt)
}

// mergeRows: a snapshot of a 64 MiB origin (chunk 64K), then 1, 10 or
// 100% of the origin rewritten (1 MiB O_DIRECT writes from the start),
// then rolled back: `dmsnap merge` (default 500 ms poll) against
// `lvconvert --merge -i 1` (LVM2's shortest interval, 1 s). Throughput
// is the changed data over the command's wall time. The collapse row is
// dmsnap's time from the kernel's merge_done to the command's exit.
func mergeRows(b *testing.B, bin string, emit func(Row)) {
	span := int64(quickOr(64, 16)) << 20
	d := dmsnap{bin, b.TempDir()}
	pool := "bm" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	origin := newPool(b, d, pool, "512M", span)
	directWrite(b, origin, span, 1<<20, false, span)
	g := newLVM2(b, 512<<20)
	g.run(b, "lvcreate", "-y", "-L", fmt.Sprintf("%dM", span>>20), "-n", "origin", g.vg)
	lvOrigin := "/dev/mapper/" + g.dmName("origin")
	directWrite(b, lvOrigin, span, 1<<20, false, span)
	cow := fmt.Sprintf("%dM", span>>20+16)
	for i, pct := range []int64{1, 10, 100} {
		changed := max(span*pct/100/(1<<20), 1) << 20
		name := fmt.Sprintf("m%d", i)
		d.run(b, "create", pool+"/base", name, "--cow", cow, "--chunksize", "64K")
		directWrite(b, origin, changed, 1<<20, false, changed)
		wall, collapse := dmsnapMerge(b, d, pool+"/"+name)

		g.run(b, "lvcreate", "-y", "-s", "-L", cow, "-c", "64k", "-n", name, g.vg+"/origin")
		directWrite(b, lvOrigin, changed, 1<<20, false, changed)
		lwall := timed(func() { g.run(b, "lvconvert", "--merge", "-i", "1", g.vg+"/"+name) })
		fmt.Printf("merge %d%%: dmsnap %v (collapse %v), lvconvert %v\n", pct, wall.Round(time.Millisecond), collapse.Round(time.Millisecond), lwall.Round(time.Millisecond))
		emit(Row{Figure: fmt.Sprintf("merge throughput, %d%% of %d MiB changed (%d MiB rolled back)", pct, span>>20, changed>>20),
			Anchor: "`lvconvert --merge -i 1`", Dmsnap: MBps(changed, wall), Ref: MBps(changed, lwall), Unit: "MB/s", Higher: true})
		emit(Seconds(fmt.Sprintf("merge, %d%% changed: kernel's completion (`merge_done`) → layout collapsed", pct),
			"the whole `dmsnap merge`", collapse, wall))
	}
}

// --- ls and the monitor at scale ---

// monitorCPU runs `dmsnap monitor --interval 2s --listen ""` for 4 s of
// warm-up and then window, and returns its CPU% (utime+stime from
// /proc/PID/stat) over the window.
func monitorCPU(b *testing.B, d dmsnap, window time.Duration) float64 {
	b.Helper()
	var out bytes.Buffer
	cmd := d.start(b, &out, "monitor", "--interval", "2s", "--listen", "")
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	stat := func() uint64 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if err != nil {
			b.Fatalf("monitor exited early: %v: %s", err, out.String())
		}
		t, err := ProcCPUTicks(string(data))
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	time.Sleep(4 * time.Second)
	t0, s0 := stat(), time.Now()
	time.Sleep(window)
	t1, s1 := stat(), time.Now()
	// utime and stime count USER_HZ ticks, 100 per second on Linux.
	return CPUPercent(t1-t0, 100, s1.Sub(s0))
}

// bestLs is the best of 3 `dmsnap ls` wall times.
func bestLs(b *testing.B, d dmsnap) time.Duration {
	var best time.Duration
	for i := range 3 {
		t := timed(func() { d.run(b, "ls") })
		if i == 0 || t < best {
			best = t
		}
	}
	return best
}

// lsRows: one pool with 10 origins of 4 MiB, snapshots (COW 4M, chunk
// 4K) added evenly until 10 and 100 exist ($DMSNAP_BENCH_LS=10,100,1000
// for the goal's 1,000: on the shared TCG host a `create` costs seconds,
// so 1,000 do not fit the run's budget); `dmsnap ls` (best of
// 3) at each count against itself at 10, and the monitor's CPU% at a 2 s
// interval at 1,000 against itself at 10.
func lsRows(b *testing.B, bin string, emit func(Row)) {
	const origins = 10
	totals, err := LsTotals(os.Getenv("DMSNAP_BENCH_LS"), quickOr([]int{10, 100}, []int{10, 30}))
	if err != nil {
		b.Fatal(err)
	}
	window := quickOr(20*time.Second, 6*time.Second)
	top := totals[len(totals)-1]
	d := dmsnap{bin, b.TempDir()}
	pool := "bl" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	d.run(b, "pool", "create", pool, "--file", filepath.Join(d.dir, pool+".img"), "--size", fmt.Sprintf("%dM", 4*(top+origins)+64))
	b.Cleanup(func() { d.run(b, "deactivate", pool) })
	for o := range origins {
		d.run(b, "lv", "create", fmt.Sprintf("%s/o%d", pool, o), "--size", "4M")
	}
	have := make([]int, origins)
	var ls10 time.Duration
	var cpu10 float64
	for _, total := range totals {
		start := time.Now()
		for o, want := range LsCounts(total, origins) {
			for ; have[o] < want; have[o]++ {
				d.run(b, "create", fmt.Sprintf("%s/o%d", pool, o), fmt.Sprintf("o%ds%d", o, have[o]), "--cow", "4M", "--chunksize", "4K")
			}
		}
		fmt.Printf("ls: %d snapshots in place (%v)\n", total, time.Since(start).Round(time.Second))
		ls := bestLs(b, d)
		if total == totals[0] {
			ls10 = ls
			cpu10 = monitorCPU(b, d, window)
			fmt.Printf("ls: %d snapshots: ls %v, monitor %.2f%% CPU\n", total, ls, cpu10)
			continue
		}
		emit(Seconds(fmt.Sprintf("`ls` with %d snapshots (%d origins)", total, origins), fmt.Sprintf("`ls` with %d", totals[0]), ls, ls10))
		if total == top {
			cpu := monitorCPU(b, d, window)
			emit(Row{Figure: fmt.Sprintf("monitor CPU at a 2 s interval, %d snapshots (%v window)", total, window),
				Anchor: fmt.Sprintf("the same at %d", totals[0]), Dmsnap: cpu, Ref: cpu10, Unit: "%"})
		}
	}
}

// --- snapshot-side reads ---

// snapReadRows: 1 MiB O_DIRECT sequential reads of a 64 MiB snapshot
// (chunk 64K) against the same of its origin, best of 2 each: with no
// chunk changed (every read goes through to the origin) and after the
// whole origin was rewritten (every read comes from the COW).
func snapReadRows(b *testing.B, bin string, emit func(Row)) {
	span := int64(quickOr(64, 16)) << 20
	d := dmsnap{bin, b.TempDir()}
	pool := "br" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	origin := newPool(b, d, pool, "256M", span)
	directWrite(b, origin, span, 1<<20, false, span)
	d.run(b, "create", pool+"/base", "r", "--cow", fmt.Sprintf("%dM", span>>20+16), "--chunksize", "64K")
	snap := "/dev/mapper/" + pool + "-r"
	best := func(dev string) time.Duration {
		return min(directRead(b, dev, span), directRead(b, dev, span))
	}
	emit(Row{Figure: fmt.Sprintf("snapshot read, 1 MiB O_DIRECT sequential, %d MiB, no chunk changed", span>>20),
		Anchor: "origin read", Dmsnap: MBps(span, best(snap)), Ref: MBps(span, best(origin)), Unit: "MB/s", Higher: true})
	directWrite(b, origin, span, 1<<20, false, span)
	emit(Row{Figure: "the same after the whole origin was rewritten (reads from the COW)",
		Anchor: "origin read", Dmsnap: MBps(span, best(snap)), Ref: MBps(span, best(origin)), Unit: "MB/s", Higher: true})
	d.run(b, "remove", pool+"/r")
}
