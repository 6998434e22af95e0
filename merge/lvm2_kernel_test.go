//go:build linux

package merge

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// lvm2VG is a volume group on a scratch loop device, driven by LVM2's
// tools with a private configuration directory (LVM_SYSTEM_DIR): no udev
// (libdevmapper creates the nodes itself), no lvmpolld, no dmeventd, no
// metadata backups, and a device filter that admits the loop device
// alone, so the test neither sees nor touches any other volume group.
type lvm2VG struct {
	t    *testing.T
	c    *dm.Client
	name string
	env  []string
}

// lvm2Conf is the private lvm.conf; %[1]s is the loop device, %[2]s a
// private locking directory.
const lvm2Conf = `devices {
	filter = [ "a|^%[1]s$|", "r|.*|" ]
	global_filter = [ "a|^%[1]s$|", "r|.*|" ]
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	use_devicesfile = 0
	hints = "none"
}
global {
	use_lvmpolld = 0
	locking_dir = "%[2]s"
}
activation {
	monitoring = 0
	udev_sync = 0
	udev_rules = 0
	verify_udev_operations = 0
}
backup {
	backup = 0
	archive = 0
}
`

// newLVM2VG creates a volume group over a fresh loop device of sizeBytes
// and removes it, and every device-mapper device left of it, in
// t.Cleanup. Inside the VM a missing lvm2 is a failure: vmrun --tools lvm2
// installs it on the host, and the VM shares the host's root.
func newLVM2VG(t *testing.T, c *dm.Client, sizeBytes int64) *lvm2VG {
	t.Helper()
	if _, err := exec.LookPath("lvm"); err != nil {
		t.Fatalf("lvm2 is not in PATH (vmrun --tools lvm2 puts it there): %v", err)
	}
	loopPath, _ := testutil.ScratchLoop(t, sizeBytes)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "lock"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(lvm2Conf, loopPath, filepath.Join(dir, "lock"))
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &lvm2VG{t: t, c: c, name: testutil.UniqueName(t),
		env: append(os.Environ(), "LVM_SYSTEM_DIR="+dir, "DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1")}
	g.run("vgcreate", "-y", "-s", "4m", g.name, loopPath)
	t.Cleanup(g.remove)
	return g
}

// command returns the lvm command line for args.
func (g *lvm2VG) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "lvm", args...)
	cmd.Env = g.env
	return cmd
}

// run runs one lvm command, fails the test if it fails, logs how long it
// took (each one is slow under TCG) and returns its stdout.
func (g *lvm2VG) run(args ...string) string {
	g.t.Helper()
	out, err := g.tryRun(args...)
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

func (g *lvm2VG) tryRun(args ...string) (string, error) {
	g.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := g.command(context.Background(), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	g.t.Logf("lvm %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		return stdout.String(), fmt.Errorf("lvm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// dmName is LVM2's device-mapper name of an LV of g, or of one of its
// layers ("real", "cow"): LVM2 doubles every '-' in the VG and LV names.
func (g *lvm2VG) dmName(lv string, layer ...string) string {
	n := strings.ReplaceAll(g.name, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
	for _, l := range layer {
		n += "-" + l
	}
	return n
}

// info returns the live device-mapper device of an LV.
func (g *lvm2VG) info(lv string) dm.Info {
	g.t.Helper()
	info, err := g.c.Info(g.dmName(lv))
	if err != nil {
		g.t.Fatal(err)
	}
	return info
}

// lvs returns the names of g's LVs, sorted by LVM2.
func (g *lvm2VG) lvs() []string {
	g.t.Helper()
	return strings.Fields(g.run("lvs", "--noheadings", "-o", "lv_name", "--sort", "lv_name", g.name))
}

// remove deletes the volume group, then removes whatever device-mapper
// device of it is left (a test that failed halfway), top devices first,
// so that TestMain's leak check stays meaningful.
func (g *lvm2VG) remove() {
	if _, err := g.tryRun("vgremove", "-f", g.name); err != nil {
		g.t.Errorf("cleanup: %v", err)
	}
	prefix := g.dmName("")
	for range 5 {
		list, err := g.c.List()
		if err != nil {
			g.t.Errorf("cleanup: %v", err)
			return
		}
		var left []string
		for _, e := range list {
			if strings.HasPrefix(e.Name, prefix) {
				left = append(left, e.Name)
			}
		}
		if len(left) == 0 {
			return
		}
		g.t.Logf("cleanup: removing leftover %v", left)
		for _, name := range left {
			_ = g.c.RemoveIfExists(name, dm.RemoveOptions{})
		}
	}
	g.t.Errorf("cleanup: devices of %s left", g.name)
}

// waitMerge polls FindMerges every 10 ms until it lists origin or exited
// is closed (the merge, or lvconvert, ended first).
func waitMerge(t *testing.T, c *dm.Client, origin string, exited <-chan struct{}) (Merge, bool) {
	t.Helper()
	for {
		ms, err := FindMerges(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Origin == origin {
				return m, true
			}
		}
		select {
		case <-exited:
			return Merge{}, false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestKernelLVM2MergeWatched
//   - a VG on a 256 MiB loop device; LV origin (64 MiB) filled with a
//     pattern; LVM2 snapshot snap (48 MiB COW) of it; hash snap
//   - 40 MiB of different data written to the origin
//   - lvconvert --merge -i 1 VG/snap runs in the foreground (it polls and,
//     when done, collapses the layout itself)
//   - FindMerges sees the merge as LVM2's, with LVM2's device names
//   - Watch follows it to Done with monotonic progress
//   - after lvconvert returns: the origin reads the snapshot's bytes, is
//     linear again, and only the origin LV is left
func TestKernelLVM2MergeWatched(t *testing.T) {
	c := testutil.Client(t)
	g := newLVM2VG(t, c, 256*mib)
	g.run("lvcreate", "-y", "-Zn", "-n", "origin", "-L", "64m", g.name)
	origin := g.info("origin")
	testutil.MustWriteDirect(t, origin.BlockPath(), 0, testutil.Pattern(0x11, 64*mib))
	g.run("lvcreate", "-y", "-s", "-n", "snap", "-L", "48m", g.name+"/origin")
	snap := g.info("snap")
	want := devHash(t, snap.BlockPath())
	testutil.MustWriteDirect(t, origin.BlockPath(), 0, testutil.Pattern(0x22, 40*mib))
	if got := devHash(t, origin.BlockPath()); got == want {
		t.Fatal("origin writes did not change the origin")
	}
	if got := devHash(t, snap.BlockPath()); got != want {
		t.Fatal("origin writes changed the snapshot")
	}

	var lvout bytes.Buffer
	lvc := g.command(context.Background(), "lvconvert", "--merge", "-i", "1", g.name+"/snap")
	lvc.Stdout, lvc.Stderr = &lvout, &lvout
	start := time.Now()
	if err := lvc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var lvErr error
	go func() { lvErr = lvc.Wait(); close(exited) }()
	defer func() { <-exited }()
	defer func() { _ = lvc.Process.Kill() }() // no-op once it exited

	m, found := waitMerge(t, c, origin.Name, exited)
	if !found {
		<-exited
		t.Fatalf("lvconvert ended after %v before FindMerges saw the merge (%v):\n%s", time.Since(start), lvErr, lvout.String())
	}
	t.Logf("FindMerges after %v: %+v", time.Since(start).Round(time.Millisecond), m)
	wantM := Merge{Owner: OwnerLVM2, Origin: g.dmName("origin"), Real: g.dmName("origin", "real"), RealDev: m.RealDev,
		Snapshot: g.dmName("snap"), COW: g.dmName("snap", "cow"), COWDev: m.COWDev, Target: m.Target}
	if m.Snapshot == "" {
		// LVM2 removes the old snapshot device during its handover; seen
		// on 6.12 under load, FindMerges can look after that ("" is then
		// what Merge.Snapshot documents).
		wantM.Snapshot = ""
	}
	if m != wantM {
		t.Errorf("FindMerges: %+v, want %+v", m, wantM)
	}
	var reps []Report
	final, err := Watch(context.Background(), c, m.Origin, MinInterval, ProgressFunc(func(r Report) {
		t.Logf("report %v: remaining %d/%d sectors, %.1f%%, done %v", r.Elapsed.Round(time.Millisecond),
			r.RemainingSectors, r.TotalSectors, r.Percent(), r.Done)
		reps = append(reps, r)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("watched %d polls, merge seen done after %v", len(reps), time.Since(start).Round(time.Millisecond))
	for i := 1; i < len(reps); i++ {
		if reps[i].RemainingSectors > reps[i-1].RemainingSectors || reps[i].Percent() < reps[i-1].Percent() {
			t.Errorf("report %d not monotonic: %+v after %+v", i, reps[i], reps[i-1])
		}
	}
	if !final.Done || final.Percent() != 100 || final.TotalSectors == 0 || final.RemainingSectors != 0 {
		t.Errorf("final report %+v", final)
	}

	<-exited
	t.Logf("lvconvert --merge: %v, %v:\n%s", time.Since(start).Round(time.Millisecond), lvErr, lvout.String())
	if lvErr != nil {
		t.Fatal(lvErr)
	}
	if got := devHash(t, origin.BlockPath()); got != want {
		t.Errorf("origin after the merge %s, want the snapshot's %s", got, want)
	}
	if got := tableType(t, c, origin.Name); got != "linear" {
		t.Errorf("origin table %s after lvconvert, want linear", got)
	}
	for _, gone := range []string{g.dmName("snap"), g.dmName("snap", "cow"), g.dmName("origin", "real")} {
		if got := tableType(t, c, gone); got != "<gone>" {
			t.Errorf("%s: table %s after lvconvert, want it removed", gone, got)
		}
	}
	if lvs := g.lvs(); fmt.Sprint(lvs) != "[origin]" {
		t.Errorf("lvs after the merge: %v, want [origin]", lvs)
	}
}
