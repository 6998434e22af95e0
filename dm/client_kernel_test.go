//go:build linux

package dm_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	devmapper "github.com/anatol/devmapper.go"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/sys"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestLinearLifecycle
//   - Create a device: no table, Info reports the kernel's initial state
//   - Load a linear table over a loop device: inactive slot only
//   - Resume: active, 1 target, node /dev/mapper/<name> with the same dev
//   - RemoveNode deletes the node, EnsureNode (no udev in the VM) recreates it
//   - Table round trip, Deps = the loop device, List has name+uuid+dev
//   - data written through the device lands on the loop device
//   - Remove: Info fails with ErrNotFound/ENXIO, the node is gone
func TestLinearLifecycle(t *testing.T) {
	c := testutil.Client(t)
	lo := scratch(t, 8<<20)
	name, uuid := testutil.UniqueName(t), "DMSNAPTEST-"+strconv.FormatInt(time.Now().UnixNano(), 36)
	g := newGolden(t, "linear")

	created, err := c.Create(name, uuid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.RemoveRetry(t, c, name) })
	major := dmMajor(t)
	want := dm.Info{Name: name, UUID: uuid, Dev: dm.DevNum{Major: major, Minor: created.Dev.Minor}}
	if created != want {
		t.Fatalf("after Create:\n got %+v\nwant %+v", created, want)
	}

	lines := []dm.TargetLine{line(0, 16384, "linear", lo.String()+" 0")}
	if err := c.Load(name, lines, dm.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(name)
	if err != nil {
		t.Fatal(err)
	}
	want.InactivePresent = true
	if info != want {
		t.Fatalf("after Load:\n got %+v\nwant %+v", info, want)
	}
	inactive, _, err := c.Table(name, dm.TableOptions{Inactive: true})
	if err != nil || !equalLines(inactive, lines) {
		t.Fatalf("inactive table %q, %v", inactive, err)
	}

	info, err = c.Resume(name)
	if err != nil {
		t.Fatal(err)
	}
	want.InactivePresent, want.ActivePresent, want.TargetCount = false, true, 1
	if info != want {
		t.Fatalf("after Resume:\n got %+v\nwant %+v", info, want)
	}
	g.add("table", wantTable(t, c, name, lines...))
	g.add("status", wantStatus(t, c, name, line(0, 16384, "linear", "")))

	deps, err := c.Deps(name)
	if err != nil || !slices.Equal(deps, []dm.DevNum{lo}) {
		t.Fatalf("Deps = %v, %v; want [%v]", deps, err, lo)
	}
	list, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(e dm.ListEntry) bool { return e.Name == name })
	if i < 0 {
		t.Fatalf("List lacks %s: %+v", name, list)
	}
	if e := list[i]; e != (dm.ListEntry{Name: name, Dev: info.Dev, EventNr: 0, UUID: uuid}) {
		t.Fatalf("List entry %+v", e)
	}

	fi, err := os.Stat(dm.DevicePath(name))
	if err != nil {
		t.Fatal(err)
	}
	if major, minor, ok := sys.BlockDevNum(fi); !ok || major != info.Dev.Major || minor != info.Dev.Minor {
		t.Fatalf("node %s is %v %d:%d, want block %v", dm.DevicePath(name), fi.Mode(), major, minor, info.Dev)
	}
	if err := dm.RemoveNode(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dm.DevicePath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("RemoveNode left %s: %v", dm.DevicePath(name), err)
	}
	if p, err := dm.EnsureNode(context.Background(), info); err != nil || p != dm.DevicePath(name) {
		t.Fatalf("EnsureNode = %q, %v", p, err)
	}
	data := testutil.Pattern(1, 64<<10)
	testutil.MustWriteDirect(t, dm.DevicePath(name), 1<<20, data)
	if got := testutil.HashDirect(t, "/dev/loop"+strconv.Itoa(int(lo.Minor)), 1<<20, len(data)); got != testutil.Hash(data) {
		t.Fatal("data written through the dm device is not on the loop device")
	}

	if err := c.Remove(name, dm.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Info(name)
	if !errors.Is(err, dm.ErrNotFound) || !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("Info after Remove: %v", err)
	}
	if got := err.Error(); got != "dm info "+name+": no such device or address" {
		t.Fatalf("Error() = %q", got)
	}
	if _, err := os.Lstat(dm.DevicePath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node still there: %v", err)
	}
	if err := c.RemoveIfExists(name, dm.RemoveOptions{}); err != nil {
		t.Fatalf("RemoveIfExists of a removed device: %v", err)
	}
	if _, err := c.Create(name+"/x", ""); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Create with a slash: %v", err)
	}
}

// TestCreateExisting
//   - a second Create with the same name fails with ErrExist and EEXIST
//   - CreateAndLoad with a table the kernel rejects (linear with one argument)
//     fails with EINVAL and removes the device again
func TestCreateExisting(t *testing.T) {
	c := testutil.Client(t)
	info := create(t, c, "", line(0, 8, "zero", ""))
	_, err := c.Create(info.Name, "")
	// The kernel answers EBUSY ("device ... already exists" in dmesg).
	if !errors.Is(err, dm.ErrExist) || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("second Create: %v", err)
	}

	name := testutil.UniqueName(t)
	_, err = c.CreateAndLoad(name, "", []dm.TargetLine{line(0, 8, "linear", "7:0")}, dm.LoadOptions{})
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("CreateAndLoad of a bad table: %v", err)
	}
	if got, want := err.Error(), "dm load "+name+": invalid argument"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if _, err := c.Info(name); !errors.Is(err, dm.ErrNotFound) {
		t.Fatalf("device left after failed CreateAndLoad: %v", err)
	}
}

// TestRenameAndSetUUID
//   - Rename moves the device and its /dev/mapper node
//   - the old name is gone (ErrNotFound); renaming onto a taken name is ErrExist
//   - SetUUID gives a uuid-less device a uuid; a second SetUUID is EINVAL
func TestRenameAndSetUUID(t *testing.T) {
	c := testutil.Client(t)
	a := create(t, c, "", line(0, 8, "zero", ""))
	b := create(t, c, "", line(0, 8, "zero", ""))
	newName := testutil.UniqueName(t)
	if err := c.Rename(a.Name, newName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.RemoveRetry(t, c, newName) })
	info, err := c.Info(newName)
	if err != nil || info.Dev != a.Dev || info.EventNr != 1 {
		t.Fatalf("Info after rename: %+v, %v (want dev %v, event 1)", info, err, a.Dev)
	}
	if _, err := c.Info(a.Name); !errors.Is(err, dm.ErrNotFound) {
		t.Fatalf("old name: %v", err)
	}
	if _, err := os.Lstat(dm.DevicePath(a.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old node: %v", err)
	}
	if _, err := os.Stat(dm.DevicePath(newName)); err != nil {
		t.Fatalf("new node: %v", err)
	}
	err = c.Rename(newName, b.Name)
	if !errors.Is(err, dm.ErrExist) || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("rename onto a taken name: %v", err)
	}

	if err := c.SetUUID(newName, "DMSNAPTEST-uuid-"+newName); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info(newName); info.UUID != "DMSNAPTEST-uuid-"+newName {
		t.Fatalf("uuid = %q", info.UUID)
	}
	if err := c.SetUUID(newName, "other"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("second SetUUID: %v", err)
	}
}

// TestSuspendResume
//   - Suspend with NoFlush and NoLockFS: Info.Suspended
//   - WithSuspended: suspended inside fn, resumed after, fn's error returned
//   - WithSuspended whose resume fails (fn removes the device): the resume
//     error is joined, not dropped
//   - WithSuspended with a cancelled ctx does not suspend
func TestSuspendResume(t *testing.T) {
	c := testutil.Client(t)
	d := create(t, c, "", line(0, 8, "zero", ""))
	if err := c.Suspend(d.Name, dm.SuspendOptions{NoFlush: true, NoLockFS: true}); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info(d.Name); !info.Suspended {
		t.Fatalf("not suspended: %+v", info)
	}
	if info, err := c.Resume(d.Name); err != nil || info.Suspended {
		t.Fatalf("Resume: %+v, %v", info, err)
	}

	ctx := context.Background()
	fnErr := errors.New("fn failed")
	err := c.WithSuspended(ctx, d.Name, dm.SuspendOptions{}, func() error {
		if info, _ := c.Info(d.Name); !info.Suspended {
			t.Errorf("inside fn: not suspended: %+v", info)
		}
		return fnErr
	})
	if !errors.Is(err, fnErr) || errors.Is(err, dm.ErrNotFound) {
		t.Fatalf("WithSuspended = %v, want only fn's error", err)
	}
	if info, _ := c.Info(d.Name); info.Suspended {
		t.Fatal("still suspended after WithSuspended")
	}

	e := create(t, c, "", line(0, 8, "zero", ""))
	err = c.WithSuspended(ctx, e.Name, dm.SuspendOptions{}, func() error {
		return c.Remove(e.Name, dm.RemoveOptions{})
	})
	if !errors.Is(err, dm.ErrNotFound) || !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("failed resume not reported: %v", err)
	}
	if got, want := err.Error(), "dm resume "+e.Name+": no such device or address"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	called := false
	err = c.WithSuspended(cctx, d.Name, dm.SuspendOptions{}, func() error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("cancelled WithSuspended: %v, fn called %v", err, called)
	}
}

// TestRemoveBusy
//   - with /dev/dm-N open, Remove fails with ErrBusy, EBUSY and a dmsetup-like message
//   - Remove with Deferred succeeds, Info shows DeferredRemove and OpenCount 1
//   - closing the device removes it
func TestRemoveBusy(t *testing.T) {
	c := testutil.Client(t)
	d := create(t, c, "", line(0, 8, "zero", ""))
	f, err := os.Open(d.BlockPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = c.Remove(d.Name, dm.RemoveOptions{})
	if !errors.Is(err, dm.ErrBusy) || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Remove of an open device: %v", err)
	}
	var opErr *dm.OpError
	if !errors.As(err, &opErr) || opErr.Op != "remove" || opErr.Device != d.Name {
		t.Fatalf("error %#v", err)
	}
	if got, want := err.Error(), "dm remove "+d.Name+": device or resource busy"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}

	if err := c.Remove(d.Name, dm.RemoveOptions{Deferred: true}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(d.Name)
	if err != nil || !info.DeferredRemove || info.OpenCount != 1 {
		t.Fatalf("after deferred remove: %+v, %v", info, err)
	}
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Info(d.Name)
		if errors.Is(err, dm.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deferred remove did not happen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWaitCancel
//   - Wait on a device without events returns ctx's error after the deadline
//   - Wait for an event that already happened returns at once
func TestWaitCancel(t *testing.T) {
	c := testutil.Client(t)
	d := create(t, c, "", line(0, 8, "zero", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Wait(ctx, d.Name, d.EventNr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Wait took %v after a 300ms deadline", el)
	}
	info, err := c.Wait(context.Background(), d.Name, d.EventNr+7)
	if err != nil || info.EventNr != d.EventNr {
		t.Fatalf("Wait for a past event: %+v, %v", info, err)
	}
}

// TestTargetVersions
//   - LIST_VERSIONS has linear and the three snapshot targets (dm-snapshot is loaded by the VM)
//   - GET_TARGET_VERSION agrees; an unknown type is ErrNotFound
func TestTargetVersions(t *testing.T) {
	c := testutil.Client(t)
	if v := c.Version(); v.Major != 4 || v.Minor < 47 {
		t.Fatalf("interface version %v", v)
	}
	t.Logf("dm ioctl interface %v", c.Version())
	vs, err := c.TargetVersions()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]dm.Version{
		"linear": {1, 4, 0}, "snapshot": {1, 16, 0}, "snapshot-origin": {1, 9, 0}, "snapshot-merge": {1, 5, 0},
	}
	for name, v := range want {
		i := slices.IndexFunc(vs, func(tv dm.TargetVersion) bool { return tv.Name == name })
		if i < 0 || vs[i].Version != v {
			t.Errorf("target %s: got %+v, want %v (list %+v)", name, vs[max(i, 0)], v, vs)
		}
		tv, err := c.TargetVersion(name)
		if err != nil || tv != (dm.TargetVersion{Name: name, Version: v}) {
			t.Errorf("TargetVersion(%s) = %+v, %v", name, tv, err)
		}
	}
	if _, err := c.TargetVersion("no-such-target"); !errors.Is(err, dm.ErrNotFound) {
		t.Errorf("TargetVersion of an unknown type: %v", err)
	}
}

// TestDevmapperGoCrossCheck uses github.com/anatol/devmapper.go as an
// independent implementation of the same ioctls:
//   - a linear device it creates is seen by our List, Info and Table
//   - a device we create is removed by it
func TestDevmapperGoCrossCheck(t *testing.T) {
	c := testutil.Client(t)
	lo := scratch(t, 8<<20)
	name := testutil.UniqueName(t)
	uuid := "DMSNAPTEST-anatol-" + name
	err := devmapper.CreateAndLoad(name, uuid, 0, devmapper.LinearTable{
		Start: 0, Length: 4 << 20, BackendDevice: lo.String(), BackendOffset: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testutil.RemoveRetry(t, c, name) })
	info, err := c.Info(name)
	if err != nil || info.UUID != uuid || !info.ActivePresent || info.Suspended || info.TargetCount != 1 {
		t.Fatalf("Info of devmapper.go's device: %+v, %v", info, err)
	}
	wantTable(t, c, name, line(0, 8192, "linear", lo.String()+" 2048"))
	list, err := c.List()
	if err != nil || !slices.Contains(list, dm.ListEntry{Name: name, Dev: info.Dev, UUID: uuid}) {
		t.Fatalf("List: %+v, %v", list, err)
	}
	theirs, err := devmapper.InfoByName(name)
	if err != nil || theirs.DevNo != sys.HugeEncodeDev(info.Dev.Major, info.Dev.Minor) {
		t.Fatalf("devmapper.InfoByName = %+v, %v; our dev %v", theirs, err, info.Dev)
	}

	ours := create(t, c, "", line(0, 8, "zero", ""))
	if err := devmapper.Remove(ours.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ours.Name); !errors.Is(err, dm.ErrNotFound) {
		t.Fatalf("Info after devmapper.Remove: %v", err)
	}
}
