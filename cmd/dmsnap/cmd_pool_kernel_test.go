package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
)

// kernelPool makes a pool with a unique name on two 48 MiB image files
// and deactivates it in t.Cleanup.
func kernelPool(t testing.TB) (e *cliEnv, pool, a, b string) {
	t.Helper()
	testutil.RequireKernel(t)
	e = newCLIEnv(t)
	pool = strings.TrimPrefix(testutil.UniqueName(t), testutil.DMNamePrefix)
	pool = "t" + pool
	a = e.image("a.img", 48<<20)
	b = e.image("b.img", 48<<20)
	e.mustRun("pool", "create", pool, a, b)
	t.Cleanup(func() {
		if code, _, errs := e.run("deactivate", pool); code != 0 {
			t.Errorf("cleanup: deactivate %s: %s", pool, errs)
		}
	})
	return e, pool, a, b
}

// fill writes n random bytes to the device and returns their digest.
func fill(t *testing.T, dev string, n int) [32]byte {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(buf)
}

// digest returns the sha256 of the first n bytes of the device.
func digest[N int | int64](t testing.TB, dev string, n N) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, int64(n)); err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

func devSize(t *testing.T, dev string) int64 {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func activation(t *testing.T, out string) jsonActivation {
	t.Helper()
	var r []jsonActivation
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r) != 1 {
		t.Fatalf("activate --json: %v: %s", err, out)
	}
	return r[0]
}

func exists(name string) bool {
	c, err := dm.Open()
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.Info(name)
	return err == nil
}

// TestPoolActivateKernel: the main flow on a real kernel.
//  1. pool on two image files; lv a (12 MiB, one PV) and lv b (60 MiB,
//     spanning both); write random data through /dev/mapper.
//  2. activate again: only "keep" actions (idempotent).
//  3. deactivate: devices gone, loop devices detached (autoclear);
//     activate: same data.
//  4. a leftover device with the pool's UUID prefix is removed by
//     activate.
//  5. lv extend of an active volume reloads it bigger, data kept; lv
//     rename renames the device; lv remove of an open volume refuses
//     with no change, closed it removes.
//  6. a missing PV: activate fails naming it; --partial activates a
//     (exit 3) but not b.
func TestPoolActivateKernel(t *testing.T) {
	e, pool, a, b := kernelPool(t)
	var va jsonVolume
	if err := json.Unmarshal([]byte(e.mustRun("--json", "lv", "create", pool+"/a", "--size", "12M")), &va); err != nil {
		t.Fatal(err)
	}
	devA := dm.DevicePath(pool + "-a")
	if va.Device != devA || va.Active == nil || !*va.Active {
		t.Fatalf("lv create: %+v", va)
	}
	e.mustRun("lv", "create", pool+"/b", "--size", "60M")
	devB := dm.DevicePath(pool + "-b")
	if n := devSize(t, devB); n != 60<<20 {
		t.Fatalf("%s is %d bytes, want 60 MiB", devB, n)
	}
	sumA := fill(t, devA, 12<<20)
	sumB := fill(t, devB, 60<<20)

	r := activation(t, e.mustRun("--json", "activate", pool))
	for _, act := range r.Actions {
		if act.Kind != string(lvm.ActionKeep) {
			t.Errorf("second activate: %s", act.Text)
		}
	}
	if len(r.Actions) != 2 || r.Devices["a"] != devA || r.Devices["b"] != devB {
		t.Errorf("second activate: %+v", r)
	}

	e.mustRun("deactivate", pool)
	if exists(pool+"-a") || exists(pool+"-b") {
		t.Fatal("devices left after deactivate")
	}
	for _, img := range []string{a, b} {
		if l, _ := loop.Find(img); len(l) != 0 {
			t.Errorf("%s still attached to %v after deactivate", img, l)
		}
	}
	r = activation(t, e.mustRun("--json", "activate", pool))
	if len(r.Actions) != 2 || r.Actions[0].Kind != string(lvm.ActionCreate) {
		t.Errorf("activate after deactivate: %+v", r.Actions)
	}
	if digest(t, devA, 12<<20) != sumA || digest(t, devB, 60<<20) != sumB {
		t.Fatal("data changed across deactivate/activate")
	}

	// A leftover: a device of this pool the metadata does not describe.
	var jp jsonPool
	if err := json.Unmarshal([]byte(e.mustRun("--json", "pool", "show", pool)), &jp); err != nil {
		t.Fatal(err)
	}
	c := testutil.Client(t)
	leftover := pool + "-gone"
	testutil.CreateDevice(t, c, leftover, lvm.DMUUID(jp.UUID, lvm.NewUUID(), lvm.LayerNone), dm.Segment{Start: 0, Length: 8, Target: dm.Zero{}}.Line())
	r = activation(t, e.mustRun("--json", "activate", pool))
	if len(r.Actions) != 3 || r.Actions[2].Kind != string(lvm.ActionRemove) || exists(leftover) {
		t.Errorf("leftover not removed: %+v", r.Actions)
	}

	e.mustRun("lv", "extend", pool+"/a", "--size", "+8M")
	if n := devSize(t, devA); n != 20<<20 {
		t.Errorf("after extend %s is %d bytes, want 20 MiB", devA, n)
	}
	if digest(t, devA, 12<<20) != sumA {
		t.Error("extend changed the data")
	}
	e.mustRun("lv", "rename", pool+"/a", "c")
	devC := dm.DevicePath(pool + "-c")
	if exists(pool+"-a") || !exists(pool+"-c") || digest(t, devC, 12<<20) != sumA {
		t.Error("rename: device not renamed or data changed")
	}

	// An open volume cannot be removed; nothing changes.
	f, err := os.Open(devC)
	if err != nil {
		t.Fatal(err)
	}
	before := e.mustRun("lv", "ls", pool)
	code, _, errs := e.run("lv", "remove", pool+"/c")
	f.Close()
	if code != exitError || !strings.Contains(errs, "busy") || !exists(pool+"-c") {
		t.Errorf("lv remove of an open volume: exit %d: %s", code, errs)
	}
	if after := e.mustRun("lv", "ls", pool); after != before {
		t.Errorf("lv ls changed:\n%s\n%s", before, after)
	}
	e.mustRun("lv", "remove", pool+"/c")
	if exists(pool + "-c") {
		t.Error("lv remove left the device")
	}

	// A missing PV. b spans both PVs; a new volume d fits on one.
	e.mustRun("lv", "create", pool+"/d", "--size", "4M")
	e.mustRun("deactivate", pool)
	var pvOfD lvm.UUID
	if err := json.Unmarshal([]byte(e.mustRun("--json", "pool", "show", pool)), &jp); err != nil {
		t.Fatal(err)
	}
	for _, v := range jp.Volumes {
		if v.Name == "d" {
			pvOfD = v.Segments[0].PV
		}
	}
	gone := a
	for _, pv := range jp.PVs {
		if pv.UUID != pvOfD {
			gone = pv.Path
		}
	}
	if err := os.Rename(gone, gone+".away"); err != nil {
		t.Fatal(err)
	}
	code, _, errs = e.run("activate", pool)
	if code != exitError || !strings.Contains(errs, "missing PV") || exists(pool+"-d") {
		t.Errorf("activate with a missing PV: exit %d: %s", code, errs)
	}
	code, out, errs := e.run("activate", "--partial", pool)
	if code != exitPartial || !exists(pool+"-d") || exists(pool+"-b") || !strings.Contains(out, "b\tNOT ACTIVATED") {
		t.Errorf("activate --partial: exit %d: %s%s", code, out, errs)
	}
	e.mustRun("deactivate", pool)
	if err := os.Rename(gone+".away", gone); err != nil {
		t.Fatal(err)
	}
	e.mustRun("activate", pool)
	if digest(t, devB, 60<<20) != sumB {
		t.Error("b changed")
	}
}

// TestPoolBadInputKernel: refusals that need a kernel change nothing in
// it either: no dm device appears and the images stay byte-identical.
func TestPoolBadInputKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/a", "--size", "8M")
	c := testutil.Client(t)
	// Another program's device holds the name a new volume needs.
	squat := pool + "-x"
	testutil.CreateDevice(t, c, squat, "", dm.Segment{Start: 0, Length: 8, Target: dm.Zero{}}.Line())
	list := func() string {
		l, err := c.List()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range l {
			names = append(names, e.Name+"="+e.UUID)
		}
		return strings.Join(names, ",")
	}
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"lv", "create", pool + "/a", "--size", "4M"}, exitError, "already exists"},
		{[]string{"lv", "create", pool + "/y", "--size", "1G"}, exitError, "free"},
		{[]string{"lv", "rename", pool + "/a", "x"}, exitError, "exists"},
		{[]string{"lv", "extend", pool + "/a", "--size", "+1G"}, exitError, "free"},
		{[]string{"pool", "remove", pool}, exitError, "has 1 volumes"},
		{[]string{"pool", "create", "other", "/dev/mapper/" + pool + "-a"}, exitError, "device-mapper device"},
	} {
		before, kernel := snapshotFiles(t, e.dir), list()
		code, _, errs := e.run(tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.msg) {
			t.Errorf("%v: exit %d stderr %q; want %d containing %q", tt.args, code, errs, tt.code, tt.msg)
		}
		sameFiles(t, before, snapshotFiles(t, e.dir))
		if after := list(); after != kernel {
			t.Errorf("%v changed the kernel:\n%s\n%s", tt.args, kernel, after)
		}
	}
}

// helperEnv makes the test binary act as dmsnap (TestHelperDmsnap).
const helperEnv = "DMSNAP_TEST_HELPER_ARGS"

// TestHelperDmsnap is not a test: run by dmsnapProcess as a child, it
// runs dmsnap with the arguments in $DMSNAP_TEST_HELPER_ARGS and exits
// with its status, so failpoints can end a real process.
func TestHelperDmsnap(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for the crash tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(spec), &args); err != nil {
		os.Exit(99)
	}
	os.Exit(runMain(append([]string{"dmsnap"}, args...)))
}

// crash runs dmsnap in a child process with the failpoint armed and
// expects it to die there.
func (e *cliEnv) crash(point string, args ...string) {
	e.t.Helper()
	full := append([]string{"--config-dir", e.path("cfg"), "--lock-dir", e.path("lock"), "--dev-dir", e.path("dev")}, args...)
	spec, _ := json.Marshal(full)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDmsnap$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec), failpoint.Env+"="+point)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != failpoint.ExitCode {
		e.t.Fatalf("%s with failpoint %s: %v, want exit %d:\n%s", strings.Join(args, " "), point, err, failpoint.ExitCode, out.String())
	}
}

// TestCrashKernel kills dmsnap at each metadata-commit step of `lv create`
// (and of `pool create`), then checks that activation sees a consistent
// state: the volume fully there (device and all) or not at all, the
// other volume's data intact, and the pool still writable.
func TestCrashKernel(t *testing.T) {
	points := []string{
		"lvm.commit.before-write",
		"lvm.commit.after-payload",
		"lvm.commit.torn-header",
		"lvm.commit.after-slot-write",
		"lvm.commit.after-slot-write@2",
		"lvm.commit.done",
	}
	for _, fp := range points {
		t.Run(fp, func(t *testing.T) {
			e, pool, _, _ := kernelPool(t)
			e.mustRun("lv", "create", pool+"/keep", "--size", "8M")
			dev := dm.DevicePath(pool + "-keep")
			sum := fill(t, dev, 8<<20)
			e.crash(fp, "lv", "create", pool+"/new", "--size", "8M")
			e.mustRun("activate", pool)
			var vols []jsonVolume
			if err := json.Unmarshal([]byte(e.mustRun("--json", "lv", "ls", pool)), &vols); err != nil {
				t.Fatal(err)
			}
			has := false
			for _, v := range vols {
				if v.Name == "new" {
					has = true
				}
				if v.Active == nil || !*v.Active {
					t.Errorf("volume %s not active after activate", v.Name)
				}
			}
			// Before any slot is complete the old state must win; after
			// every PV has the new one, the new state.
			switch fp {
			case "lvm.commit.before-write", "lvm.commit.after-payload", "lvm.commit.torn-header":
				if has {
					t.Errorf("volume appeared though its commit never completed a slot")
				}
			case "lvm.commit.done":
				if !has {
					t.Errorf("volume missing though every PV was written")
				}
			}
			if digest(t, dev, 8<<20) != sum {
				t.Error("data of the other volume changed")
			}
			e.mustRun("lv", "create", pool+"/after", "--size", "4M")
		})
	}
	t.Run("pool create", func(t *testing.T) {
		testutil.RequireKernel(t)
		e := newCLIEnv(t)
		img := e.image("p.img", 32<<20)
		e.crash("lvm.create.after-metadata", "pool", "create", "crashed", img)
		if code, _, errs := e.run("pool", "import", img); code != exitError || !strings.Contains(errs, "no dmsnap label") {
			t.Errorf("import after a crashed create: exit %d: %s", code, errs)
		}
		e.mustRun("pool", "create", "crashed2", img)
	})
}
