//go:build linux

package bench

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

// BenchmarkCompare measures every figure of the comparison once (run it
// with -benchtime 1x) and prints the table; with $DMSNAP_BENCH_OUT set it
// also writes it there. Each row is also printed as soon as it is
// measured ("row: | … |"), so a slow or failing run still shows what it
// got. $DMSNAP_BENCH_ONLY (a regular expression over the section names:
// startup, commands, stall, merge, ls, snapread, cow) runs a subset;
// $DMSNAP_BENCH_QUICK=1 shrinks every size and count, to try the harness
// out (its figures are not the published ones). Guest only:
// `make bench-compare`.
func BenchmarkCompare(b *testing.B) {
	testutil.RequireKernel(b)
	bin := benchBinary(b)
	if _, err := exec.LookPath("lvm"); err != nil {
		b.Fatalf("lvm2 is not in PATH (vmrun --tools lvm2 puts it there): %v", err)
	}
	runSections(b, bin, []section{
		{"startup", startupRows},
		{"commands", func(b *testing.B, bin string, emit func(Row)) { commandRows(b, bin, quickOr(20, 5), emit) }},
		{"stall", stallRows},
		{"merge", mergeRows},
		{"ls", lsRows},
		{"snapread", snapReadRows},
		{"cow", cowPenaltyRows},
	})
}

// section is one group of figures; it emits each row once measured.
type section struct {
	name string
	run  func(b *testing.B, bin string, emit func(Row))
}

// benchBinary copies $DMSNAP_BIN or the repository's bin/dmsnap into the
// guest's tmpfs and returns the copy: run from the host share, every exec
// reads the 20 MB binary over 9p again (a 43 s `create` on a loaded host
// in a first run), which measures the share, not dmsnap. lvm runs from
// the tools cache, which the guest mounts with caching.
func benchBinary(b *testing.B) string {
	src := os.Getenv("DMSNAP_BIN")
	if src == "" {
		src = filepath.Join(testutil.RepoRoot(b), "bin", "dmsnap")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatalf("the dmsnap binary (make build): %v", err)
	}
	bin := filepath.Join(b.TempDir(), "dmsnap")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		b.Fatal(err)
	}
	return bin
}

// quick reports whether $DMSNAP_BENCH_QUICK asks for the small sizes.
func quick() bool { return os.Getenv("DMSNAP_BENCH_QUICK") == "1" }

// quickOr is full, or small under $DMSNAP_BENCH_QUICK=1.
func quickOr[T any](full, small T) T {
	if quick() {
		return small
	}
	return full
}

// runSections runs the selected sections in order, prints the table and
// writes it to $DMSNAP_BENCH_OUT.
func runSections(b *testing.B, bin string, sections []section) {
	var rows []Row
	emit := func(r Row) {
		rows = append(rows, r)
		fmt.Printf("row: %s\n", r.Markdown())
	}
	for range b.N {
		rows = nil
		for _, s := range sections {
			ok, err := Selected(os.Getenv("DMSNAP_BENCH_ONLY"), s.name)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				continue
			}
			start := time.Now()
			fmt.Printf("section %s\n", s.name)
			s.run(b, bin, emit)
			fmt.Printf("section %s: %v\n", s.name, time.Since(start).Round(time.Second))
		}
	}
	var out bytes.Buffer
	if err := WriteMarkdown(&out, rows); err != nil {
		b.Fatal(err)
	}
	fmt.Print(out.String())
	if p := os.Getenv("DMSNAP_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// dmsnap runs the binary with its directories under dir.
type dmsnap struct {
	bin, dir string
}

func (d dmsnap) run(tb testing.TB, args ...string) string {
	tb.Helper()
	full := append([]string{"--config-dir", filepath.Join(d.dir, "cfg"), "--lock-dir", filepath.Join(d.dir, "lock"), "--dev-dir", filepath.Join(d.dir, "dev")}, args...)
	cmd := exec.Command(d.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("dmsnap %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// newPool creates a pool on a sparse image file with origin base of
// originBytes and returns the origin's device; the pool is deactivated
// at cleanup.
func newPool(b *testing.B, d dmsnap, name string, poolSize string, originBytes int64) string {
	b.Helper()
	d.run(b, "pool", "create", name, "--file", filepath.Join(d.dir, name+".img"), "--size", poolSize)
	b.Cleanup(func() { d.run(b, "deactivate", name) })
	d.run(b, "lv", "create", name+"/base", "--size", fmt.Sprintf("%dM", originBytes>>20))
	return "/dev/mapper/" + name + "-base"
}

// startupRows: `dmsnap --help` against `lvm help`, best of 5 (page cache
// warm), and the two binaries' sizes.
func startupRows(b *testing.B, bin string, emit func(Row)) {
	lvmPath, err := exec.LookPath("lvm")
	if err != nil {
		b.Fatal(err)
	}
	best := func(name string, args ...string) time.Duration {
		var min time.Duration
		for i := range 5 {
			d := timed(func() {
				// lvm help exits non-zero on some versions: only the
				// time counts, the output is discarded.
				_ = exec.Command(name, args...).Run()
			})
			if i == 0 || d < min {
				min = d
			}
		}
		return min
	}
	size := func(p string) float64 {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		return float64(st.Size()) / 1e6
	}
	emit(Seconds("`dmsnap --help` startup (best of 5)", "`lvm version`", best(bin, "--help"), best(lvmPath, "version")))
	emit(Row{Figure: "binary size", Anchor: "lvm", Dmsnap: size(bin), Ref: size(lvmPath), Unit: "MB"})
}

// commandRows: n snapshots of one 64 MiB origin created one after
// another, listed, and removed, against the same with LVM2 on a loop
// device of the same size.
func commandRows(b *testing.B, bin string, n int, emit func(Row)) {
	d := dmsnap{bin, b.TempDir()}
	pool := "bc" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	newPool(b, d, pool, "512M", 64<<20)
	g := newLVM2(b, 512<<20)
	g.run(b, "lvcreate", "-y", "-L", "64M", "-n", "origin", g.vg)

	var dc, lc, dl, ll, dr, lr time.Duration
	dc = timed(func() {
		for i := range n {
			d.run(b, "create", pool+"/base", fmt.Sprintf("s%d", i), "--cow", "4M", "--chunksize", "4K")
		}
	})
	lc = timed(func() {
		for i := range n {
			g.run(b, "lvcreate", "-y", "-s", "-L", "4M", "-c", "4k", "-n", fmt.Sprintf("s%d", i), g.vg+"/origin")
		}
	})
	dl = timed(func() { d.run(b, "ls") })
	ll = timed(func() { g.run(b, "lvs", g.vg) })
	dr = timed(func() {
		for i := range n {
			d.run(b, "remove", fmt.Sprintf("%s/s%d", pool, i))
		}
	})
	lr = timed(func() {
		for i := range n {
			g.run(b, "lvremove", "-f", fmt.Sprintf("%s/s%d", g.vg, i))
		}
	})
	emit(Seconds(fmt.Sprintf("`create` of %d snapshots of one origin, one after another", n), fmt.Sprintf("`lvcreate -s` ×%d", n), dc, lc))
	emit(Seconds(fmt.Sprintf("`ls` with %d snapshots", n), "`lvs`", dl, ll))
	emit(Seconds(fmt.Sprintf("`remove` of %d snapshots", n), fmt.Sprintf("`lvremove` ×%d", n), dr, lr))
}

// The COW penalty writer: cowWriteBytes per run, O_DIRECT, on a
// cowOriginBytes origin.
const (
	cowOriginBytes = 64 << 20
	cowWriteBytes  = 16 << 20
)

// directWrite writes total bytes to the first span bytes of dev with
// O_DIRECT in blocks of bs, sequentially (wrapping at span) or at random
// aligned offsets, and returns the MB/s. The data is non-zero.
func directWrite(b *testing.B, dev string, span int64, bs int, random bool, total int64) float64 {
	b.Helper()
	buf, err := syscall.Mmap(-1, 0, bs, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		b.Fatalf("mmap: %v", err)
	}
	defer syscall.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	blocks := span / int64(bs)
	start := time.Now()
	for i := int64(0); i < total/int64(bs); i++ {
		off := (i % blocks) * int64(bs)
		if random {
			off = mrand.Int64N(blocks) * int64(bs)
		}
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return float64(total) / 1e6 / time.Since(start).Seconds()
}

// cowPenaltyRows: origin write throughput with 1, 2 and 4 snapshots
// (chunk 64K) and with 1 snapshot at chunks 4K and 512K, each against
// the same origin without snapshots (the floor, measured before each
// case), for 1 MiB sequential and 4 KiB random O_DIRECT writes. Each
// case writes to fresh snapshots, so every first write to a chunk copies.
func cowPenaltyRows(b *testing.B, bin string, emit func(Row)) {
	d := dmsnap{bin, b.TempDir()}
	pool := "bw" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	origin := newPool(b, d, pool, "1G", cowOriginBytes)
	directWrite(b, origin, cowOriginBytes, 1<<20, false, cowOriginBytes) // allocate and fill once
	type kase struct {
		snaps int
		chunk string
	}
	cases := []kase{{1, "4K"}, {1, "64K"}, {1, "512K"}, {2, "64K"}, {4, "64K"}}
	if quick() {
		cases = cases[:1]
	}
	for _, w := range []struct {
		name   string
		bs     int
		random bool
		total  int64
	}{{"1 MiB sequential", 1 << 20, false, cowWriteBytes}, {"4 KiB random", 4 << 10, true, 4 << 20}} {
		for _, c := range cases {
			floor := directWrite(b, origin, cowOriginBytes, w.bs, w.random, w.total)
			for i := range c.snaps {
				d.run(b, "create", pool+"/base", fmt.Sprintf("p%d", i), "--cow", "80M", "--chunksize", c.chunk)
			}
			got := directWrite(b, origin, cowOriginBytes, w.bs, w.random, w.total)
			for i := range c.snaps {
				d.run(b, "remove", fmt.Sprintf("%s/p%d", pool, i))
			}
			emit(Row{
				Figure: fmt.Sprintf("origin write, %s O_DIRECT, %d snapshot(s), chunk %s", w.name, c.snaps, c.chunk),
				Anchor: "no snapshot", Dmsnap: got, Ref: floor, Unit: "MB/s", Higher: true,
			})
		}
	}
}
