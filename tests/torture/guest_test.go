package torture

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Environment of the guest run, set by TestTorture through vmrun --env.
const (
	dirEnv        = "DMSNAP_TORTURE_DIR"
	binEnv        = "DMSNAP_TORTURE_BIN"
	iterationsEnv = "DMSNAP_TORTURE_ITERATIONS"
	seedEnv       = "DMSNAP_TORTURE_SEED"
)

const pool = "tt"

// state is what survives a power-off: the model, where the run is, and
// the command that was killed when the VM went down.
type state struct {
	Seed       uint64             `json:"seed"`
	Iterations int                `json:"iterations"`
	Next       int                `json:"next"` // the iteration to run next
	Model      *model             `json:"model"`
	Pending    *op                `json:"pending,omitempty"` // killed, then powered off
	PowerOffs  int                `json:"power_offs"`
	Kills      int                `json:"kills"`
	Finished   int                `json:"finished"` // commands that ended before their kill
	NewWon     int                `json:"new_won"`
	Durations  map[string]float64 `json:"durations"` // seconds, per kind, of runs that finished
	Done       bool               `json:"done"`
}

// guest is one boot's view of the run.
type guest struct {
	t   *testing.T
	dir string
	bin string
	st  *state
}

func (g *guest) statePath() string { return filepath.Join(g.dir, "state.json") }

// save writes the state durably: a power-off may follow at once.
func (g *guest) save() {
	g.t.Helper()
	data, err := json.MarshalIndent(g.st, "", " ")
	if err != nil {
		g.t.Fatal(err)
	}
	tmp := g.statePath() + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		g.t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		g.t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		g.t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(tmp, g.statePath()); err != nil {
		g.t.Fatal(err)
	}
	if d, err := os.Open(g.dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// dmsnap runs one command to completion.
func (g *guest) dmsnap(args ...string) (string, error) {
	cmd := exec.Command(g.bin, args...)
	cmd.Env = g.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (g *guest) must(args ...string) string {
	g.t.Helper()
	out, err := g.dmsnap(args...)
	if err != nil {
		g.fail("dmsnap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (g *guest) env() []string {
	return append(os.Environ(),
		"DMSNAP_CONFIG_DIR="+filepath.Join(g.dir, "etc"),
		"DMSNAP_LOCK_DIR=/run/dmsnap-torture",
		"DMSNAP_POOL=")
}

// fail stops the run with the seed and iteration, so it can be replayed.
func (g *guest) fail(format string, args ...any) {
	g.t.Helper()
	g.t.Fatalf("torture seed %d iteration %d: %s", g.st.Seed, g.st.Next, fmt.Sprintf(format, args...))
}

// TestTortureGuest runs inside the VM, from TestTorture.
func TestTortureGuest(t *testing.T) {
	dir := os.Getenv(dirEnv)
	if dir == "" || os.Getenv("DMSNAP_IN_VM") != "1" {
		t.Skip("the guest half of TestTorture")
	}
	g := &guest{t: t, dir: dir, bin: os.Getenv(binEnv)}
	data, err := os.ReadFile(g.statePath())
	if err != nil {
		t.Fatal(err)
	}
	g.st = &state{}
	if err := json.Unmarshal(data, g.st); err != nil {
		t.Fatal(err)
	}
	if g.st.Durations == nil {
		g.st.Durations = map[string]float64{}
	}
	if g.st.Model == nil {
		g.setup()
	}
	if p := g.st.Pending; p != nil {
		// The previous boot killed p and powered off.
		t.Logf("iteration %d: after power-off during %s", g.st.Next, strings.Join(p.Args, " "))
		g.recover(p)
		g.st.Pending = nil
		g.st.Next++
		g.save()
	}
	for g.st.Next < g.st.Iterations {
		g.iteration()
		if g.st.Pending != nil {
			g.powerOff() // does not return
		}
	}
	g.finalCheck()
	g.st.Done = true
	g.save()
	t.Logf("torture seed %d: %d iterations, %d kills (%d commands finished first), %d power-offs, new state won %d times",
		g.st.Seed, g.st.Iterations, g.st.Kills, g.st.Finished, g.st.PowerOffs, g.st.NewWon)
}

// setup makes the pool on two 160 MiB image files with two volumes.
func (g *guest) setup() {
	g.must("pool", "create", pool, "--file", filepath.Join(g.dir, "a.img"), "--size", "160M")
	g.must("pool", "extend", pool, "--file", filepath.Join(g.dir, "b.img"), "--size", "160M")
	g.st.Model = newModel()
	for _, n := range []string{"v1", "v2"} {
		g.must("lv", "create", pool+"/"+n, "--size", "12M")
		g.st.Model.Vols[n] = &object{Size: 12 * mib}
	}
	g.st.Model.Seq = 2
	r := rand.New(rand.NewPCG(g.st.Seed, 1<<40))
	for _, n := range []string{"v1", "v2"} {
		g.write(r, n)
	}
	g.save()
}

// iteration runs one command with a kill at a random moment, then either
// recovers in this boot or leaves st.Pending for a power-off.
func (g *guest) iteration() {
	i := g.st.Next
	r := rand.New(rand.NewPCG(g.st.Seed, uint64(i)))
	o := pick(r, g.st.Model, pool)
	est := g.st.Durations[o.Kind]
	if est == 0 {
		est = 0.5
	}
	delay := time.Duration(r.Float64() * est * 1.2 * float64(time.Second))
	powerOff := r.IntN(2) == 0
	g.t.Logf("iteration %d: %s, kill after %v%s", i, strings.Join(o.Args, " "), delay.Round(time.Millisecond), map[bool]string{true: ", then power off"}[powerOff])

	if powerOff {
		g.st.Pending = &o
		g.save()
	}
	cmd := exec.Command(g.bin, o.Args...)
	cmd.Env = g.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		g.fail("start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
		g.st.Finished++
		if err == nil {
			d := time.Since(start).Seconds()
			if old := g.st.Durations[o.Kind]; old > 0 {
				d = 0.7*old + 0.3*d
			}
			g.st.Durations[o.Kind] = d
		}
	case <-time.After(delay):
		cmd.Process.Kill()
		err = <-done
		g.st.Kills++
		// Until a run of this kind finishes, its duration is unknown:
		// grow the estimate so later kills reach the later steps too.
		g.st.Durations[o.Kind] = min(max(est, delay.Seconds())*1.5, 30)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		g.fail("%s: %v", strings.Join(o.Args, " "), err)
	}
	if ee != nil && ee.ExitCode() > 0 {
		// A command that failed on its own (not killed) must say why; the
		// state must then be the old one, which recover checks.
		g.t.Logf("%s exited %d: %s", strings.Join(o.Args, " "), ee.ExitCode(), strings.TrimSpace(out.String()))
	}
	if powerOff {
		return
	}
	g.recover(&o)
	g.st.Next++
	g.save()
}

// powerOff switches the VM off at once: no sync, no device teardown.
func (g *guest) powerOff() {
	g.st.PowerOffs++
	g.save()
	os.WriteFile("/proc/sys/kernel/sysrq", []byte("1"), 0)
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("o"), 0); err != nil {
		g.fail("sysrq: %v", err)
	}
	time.Sleep(time.Minute)
	g.fail("still running a minute after sysrq o")
}

// recover runs activate after o was killed and checks every invariant;
// the model becomes whichever of o's states the pool is in. A data write
// to one volume follows, so content keeps changing.
func (g *guest) recover(o *op) {
	g.must("activate", pool)
	if o.Kind == "merge" {
		// activate restarts a merge the kill interrupted; wait for it.
		if snaps := g.snapshots(); snaps[o.Target].State == "merging" {
			g.must("merge", "--watch", pool+"/"+o.Target)
		}
	}
	g.checkNotSuspended()
	got := g.observe()
	var m *model
	switch got {
	case o.Old.shape():
		m = o.Old
	case o.Next.shape():
		m = o.Next
		g.st.NewWon++
	default:
		g.fail("after %s the pool is neither the old nor the new state:\n got  %s\n old  %s\n new  %s",
			strings.Join(o.Args, " "), got, o.Old.shape(), o.Next.shape())
	}
	g.st.Model = m
	g.checkDevices()
	g.checkContent()
	g.checkExtents()
	r := rand.New(rand.NewPCG(g.st.Seed, uint64(g.st.Next)|1<<32))
	vols := sortedKeys(m.Vols)
	g.write(r, vols[r.IntN(len(vols))])
	g.gc()
}

// finalCheck deactivates and activates the pool once more and checks
// everything.
func (g *guest) finalCheck() {
	g.must("deactivate", pool)
	g.must("activate", pool)
	g.checkNotSuspended()
	if got, want := g.observe(), g.st.Model.shape(); got != want {
		g.fail("after the run: pool %s, model %s", got, want)
	}
	g.checkDevices()
	g.checkContent()
	g.checkExtents()
}

// checkDevices: the kernel has exactly the pool's devices the model calls
// for (LVM2's layout: -real under an origin with snapshots, -cow under
// each snapshot), nothing left over from a killed command.
func (g *guest) checkDevices() {
	want := map[string]bool{}
	for n := range g.st.Model.Vols {
		want[pool+"-"+n] = true
		if g.st.Model.snapsOf(n) > 0 {
			want[pool+"-"+n+"-real"] = true
		}
	}
	for n := range g.st.Model.Snaps {
		want[pool+"-"+n] = true
		want[pool+"-"+n+"-cow"] = true
	}
	entries, err := os.ReadDir("/dev/mapper")
	if err != nil {
		g.fail("%v", err)
	}
	got := map[string]bool{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), pool+"-") {
			got[e.Name()] = true
		}
	}
	for n := range want {
		if !got[n] {
			g.fail("device %s is missing", n)
		}
	}
	for n := range got {
		if !want[n] {
			g.fail("device %s is left over", n)
		}
	}
}

type lsSnap struct {
	Name     string `json:"name"`
	Origin   string `json:"origin"`
	COWBytes uint64 `json:"cow_bytes"`
	State    string `json:"state"`
}

func (g *guest) snapshots() map[string]lsSnap {
	var list []lsSnap
	if err := json.Unmarshal([]byte(g.must("--json", "ls", pool)), &list); err != nil {
		g.fail("ls --json: %v", err)
	}
	out := map[string]lsSnap{}
	for _, s := range list {
		out[s.Name] = s
	}
	return out
}

type poolShow struct {
	TotalExtents uint64 `json:"total_extents"`
	FreeExtents  uint64 `json:"free_extents"`
	Volumes      []struct {
		Name      string `json:"name"`
		Kind      string `json:"kind"`
		SizeBytes uint64 `json:"size_bytes"`
		Extents   uint64 `json:"extents"`
	} `json:"volumes"`
}

func (g *guest) poolShow() poolShow {
	var p poolShow
	if err := json.Unmarshal([]byte(g.must("--json", "pool", "show", pool)), &p); err != nil {
		g.fail("pool show --json: %v", err)
	}
	return p
}

// observe renders the pool as dmsnap reports it, in model.shape's form.
func (g *guest) observe() string {
	snaps := g.snapshots()
	var parts []string
	for _, v := range g.poolShow().Volumes {
		switch v.Kind {
		case "snapshot-cow":
			s := snaps[v.Name]
			if s.State != "active" {
				g.fail("snapshot %s is %q after recovery", v.Name, s.State)
			}
			parts = append(parts, fmt.Sprintf("snap %s of %s cow %d", v.Name, s.Origin, v.SizeBytes))
		default:
			parts = append(parts, fmt.Sprintf("vol %s %d", v.Name, v.SizeBytes))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// checkNotSuspended fails if any device-mapper device is suspended.
func (g *guest) checkNotSuspended() {
	m, _ := filepath.Glob("/sys/block/dm-*/dm/suspended")
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // removed meanwhile
		}
		if strings.TrimSpace(string(b)) != "0" {
			name, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "name"))
			g.fail("device %s is suspended", strings.TrimSpace(string(name)))
		}
	}
}

// checkContent compares every volume's and snapshot's device with its
// model file, and runs cow verify on every snapshot.
func (g *guest) checkContent() {
	check := func(name string, o *object) {
		if o.Content == "" {
			return
		}
		want, err := os.ReadFile(filepath.Join(g.dir, "model", o.Content))
		if err != nil {
			g.fail("model file of %s: %v", name, err)
		}
		f, err := os.Open("/dev/mapper/" + pool + "-" + name)
		if err != nil {
			g.fail("%v", err)
		}
		defer f.Close()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(f, got); err != nil {
			g.fail("read %s: %v", name, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(want) {
			g.fail("%s does not hold its modelled content (%s)", name, o.Content)
		}
	}
	for _, n := range sortedKeys(g.st.Model.Vols) {
		check(n, g.st.Model.Vols[n])
	}
	for _, n := range sortedKeys(g.st.Model.Snaps) {
		check(n, g.st.Model.Snaps[n])
		g.must("cow", "verify", pool+"/"+n)
	}
}

// checkExtents: free plus the extents of every volume (COWs included)
// equal the pool's total.
func (g *guest) checkExtents() {
	p := g.poolShow()
	used := uint64(0)
	for _, v := range p.Volumes {
		used += v.Extents
	}
	if used+p.FreeExtents != p.TotalExtents {
		g.fail("extents: %d used + %d free != %d total", used, p.FreeExtents, p.TotalExtents)
	}
}

// write changes a volume's content: the whole modelled region the first
// time, then 256 KiB at a random offset in it; the model file is written
// first (a new file: snapshots may share the old one), then the device,
// with fsync.
func (g *guest) write(r *rand.Rand, name string) {
	o := g.st.Model.Vols[name]
	size := min(o.Size, contentMax)
	var content []byte
	if o.Content != "" {
		old, err := os.ReadFile(filepath.Join(g.dir, "model", o.Content))
		if err != nil {
			g.fail("%v", err)
		}
		content = old
	}
	off, n := uint64(0), size
	if uint64(len(content)) == size {
		n = 256 << 10
		off = uint64(r.IntN(int((size-n)/4096)+1)) * 4096
	} else {
		content = make([]byte, size)
	}
	buf := content[off : off+n]
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	if err := os.MkdirAll(filepath.Join(g.dir, "model"), 0o755); err != nil {
		g.fail("%v", err)
	}
	g.st.Model.Seq++
	file := fmt.Sprintf("c%d", g.st.Model.Seq)
	if err := os.WriteFile(filepath.Join(g.dir, "model", file), content, 0o644); err != nil {
		g.fail("%v", err)
	}
	f, err := os.OpenFile("/dev/mapper/"+pool+"-"+name, os.O_WRONLY, 0)
	if err != nil {
		g.fail("%v", err)
	}
	if _, err := f.WriteAt(buf, int64(off)); err != nil {
		g.fail("write %s: %v", name, err)
	}
	if err := f.Sync(); err != nil {
		g.fail("fsync %s: %v", name, err)
	}
	f.Close()
	o.Content = file
}

// gc removes model files that nothing refers to any more.
func (g *guest) gc() {
	used := map[string]bool{}
	for _, o := range g.st.Model.Vols {
		used[o.Content] = true
	}
	for _, o := range g.st.Model.Snaps {
		used[o.Content] = true
	}
	files, _ := os.ReadDir(filepath.Join(g.dir, "model"))
	for _, f := range files {
		if !used[f.Name()] {
			os.Remove(filepath.Join(g.dir, "model", f.Name()))
		}
	}
}
