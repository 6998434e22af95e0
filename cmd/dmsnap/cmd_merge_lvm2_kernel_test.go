//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/merge"
)

// lvm2Env runs LVM2's tools against one loop device with a private
// configuration: no udev, no lvmpolld, no dmeventd, no metadata backups,
// and a filter that hides every other device (the same setup as
// merge/lvm2_kernel_test.go).
func lvm2Env(t *testing.T, loopPath string) []string {
	t.Helper()
	if _, err := exec.LookPath("lvm"); err != nil {
		t.Fatalf("lvm2 is not in PATH (vmrun --tools lvm2 puts it there): %v", err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`devices { filter = [ "a|^%[1]s$|", "r|.*|" ] global_filter = [ "a|^%[1]s$|", "r|.*|" ]
	obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 hints = "none" }
global { use_lvmpolld = 0 locking_dir = "%[2]s" }
activation { monitoring = 0 udev_sync = 0 udev_rules = 0 verify_udev_operations = 0 }
backup { backup = 0 archive = 0 }
`, loopPath, dir)
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "LVM_SYSTEM_DIR="+dir, "DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1")
}

func lvmRun(t *testing.T, env []string, args ...string) error {
	t.Helper()
	cmd := exec.Command("lvm", args...)
	cmd.Env = env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("lvm %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("lvm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// TestMergeWatchLVM2Kernel
//   - an LVM2 VG on a loop device: origin (64 MiB), snapshot snap (48 MiB
//     COW), then 40 MiB of new data on the origin
//   - lvconvert --merge -i 1 runs in the foreground; once the origin runs
//     snapshot-merge, `dmsnap --json merge --watch --interval 50ms` (no
//     argument: every merge on the machine) follows it
//   - progress lines for the LVM2 origin never go back, and one merge_done
//     line with the merged size ends it; dmsnap tidies nothing up (LVM2
//     finishes its own merges), and lvconvert completes normally
func TestMergeWatchLVM2Kernel(t *testing.T) {
	testutil.RequireKernel(t)
	c, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // after the VG's cleanup below
	loopPath, _ := testutil.ScratchLoop(t, 256<<20)
	env := lvm2Env(t, loopPath)
	vg := testutil.UniqueName(t)
	if err := lvmRun(t, env, "vgcreate", "-y", "-s", "4m", vg, loopPath); err != nil {
		t.Fatal(err)
	}
	dmPrefix := strings.ReplaceAll(vg, "-", "--") + "-"
	t.Cleanup(func() {
		if err := lvmRun(t, env, "vgremove", "-f", vg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		// What a failed test left behind, top devices first.
		for range 3 {
			list, err := c.List()
			if err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
			for _, e := range list {
				if strings.HasPrefix(e.Name, dmPrefix) {
					_ = c.RemoveIfExists(e.Name, dm.RemoveOptions{})
				}
			}
		}
	})
	for _, args := range [][]string{
		{"lvcreate", "-y", "-Zn", "-n", "origin", "-L", "64m", vg},
		{"lvcreate", "-y", "-s", "-n", "snap", "-L", "48m", vg + "/origin"},
	} {
		if err := lvmRun(t, env, args...); err != nil {
			t.Fatal(err)
		}
	}
	origin := dmPrefix + "origin"
	info, err := c.Info(origin)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, info.BlockPath(), 40<<20)

	var lvout bytes.Buffer
	lvc := exec.Command("lvm", "lvconvert", "--merge", "-i", "1", vg+"/snap")
	lvc.Env, lvc.Stdout, lvc.Stderr = env, &lvout, &lvout
	if err := lvc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var lvErr error
	go func() { lvErr = lvc.Wait(); close(exited) }()
	defer func() { <-exited }()
	defer func() { _ = lvc.Process.Kill() }() // no-op once it exited

	for seen := false; !seen; {
		ms, err := merge.FindMerges(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			seen = seen || m.Origin == origin
		}
		select {
		case <-exited:
			t.Fatalf("lvconvert ended before the merge was seen (%v):\n%s", lvErr, lvout.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"dmsnap", "--json", "merge", "--watch", "--interval", "50ms"}, &out, &errb); code != 0 {
		t.Fatalf("merge --watch: exit %d: %s", code, errb.String())
	}
	t.Logf("dmsnap --json merge --watch:\n%s", out.String())
	prev, progress := -1.0, 0
	var done []jsonMergeDone
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var p jsonMergeProgress
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		switch {
		case p.MessageType == "merge_done":
			var d jsonMergeDone
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Fatal(err)
			}
			done = append(done, d)
		case p.MessageType == "merge_progress" && p.Origin == origin:
			progress++
			if p.Percent < prev {
				t.Errorf("percent %v after %v", p.Percent, prev)
			}
			prev = p.Percent
		}
	}
	if progress == 0 || prev != 100 {
		t.Errorf("%d progress lines for %s, last percent %v", progress, origin, prev)
	}
	found := false
	for _, d := range done {
		if d.Origin == origin {
			found = true
			if d.TotalBytes == 0 || d.Finished || len(d.Removed) != 0 {
				t.Errorf("merge_done %+v: want the merged size, and nothing tidied up by dmsnap", d)
			}
		}
	}
	if !found {
		t.Errorf("no merge_done line for %s", origin)
	}
	<-exited
	t.Logf("lvconvert: %v\n%s", lvErr, lvout.String())
	if lvErr != nil {
		t.Fatal(lvErr)
	}
	lines, _, err := c.Table(origin, dm.TableOptions{})
	if err != nil || len(lines) != 1 || lines[0].Type != "linear" {
		t.Errorf("origin table after lvconvert %v, %v; want linear", lines, err)
	}
}
