//go:build linux

package merge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

const (
	originSectors = 131072 // 64 MiB
	mib           = 1 << 20
)

// kstack is LVM2's four-device layout built with dm directly:
// <p>-base (snapshot-origin) over <p>-base-real (linear over a loop
// device), and per snapshot <p>-<s> (snapshot P 8) over <p>-<s>-cow
// (linear over its own loop device).
type kstack struct {
	t      *testing.T
	c      *dm.Client
	prefix string
	real   dm.Info
	base   dm.Info
	snaps  map[string]dm.Info
	cows   map[string]dm.Info
}

func (k *kstack) create(name string, lines ...dm.TargetLine) dm.Info {
	k.t.Helper()
	return testutil.CreateDevice(k.t, k.c, name, "", lines...)
}

// newKStack fills a 64 MiB origin with a pattern and builds the origin.
func newKStack(t *testing.T, c *dm.Client) *kstack {
	t.Helper()
	k := &kstack{t: t, c: c, prefix: testutil.UniqueName(t), snaps: map[string]dm.Info{}, cows: map[string]dm.Info{}}
	lo, _ := testutil.ScratchDev(t, originSectors*512)
	k.real = k.create(k.prefix+"-base-real", dm.TargetLine{Length: originSectors, Type: "linear", Params: lo.String() + " 0"})
	testutil.MustWriteDirect(t, k.real.BlockPath(), 0, testutil.Pattern(0x11, 16*mib))
	k.base = k.create(k.prefix+"-base", dm.TargetLine{Length: originSectors, Type: "snapshot-origin", Params: k.real.Dev.String()})
	return k
}

// snapshot adds "<p>-<name>" with a fresh COW of cowBytes; the origin is
// suspended around the load, as the kernel requires.
func (k *kstack) snapshot(name string, cowBytes int64, store string) string {
	k.t.Helper()
	lo, _ := testutil.ScratchDev(k.t, cowBytes)
	cow := k.create(k.prefix+"-"+name+"-cow", dm.TargetLine{Length: dm.Sector(cowBytes / 512), Type: "linear", Params: lo.String() + " 0"})
	testutil.MustWriteDirect(k.t, cow.BlockPath(), 0, make([]byte, 4096))
	full := k.prefix + "-" + name
	if _, err := k.c.Create(full, ""); err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { testutil.RemoveRetry(k.t, k.c, full) })
	if err := k.c.Load(full, []dm.TargetLine{{Length: originSectors, Type: "snapshot", Params: fmt.Sprintf("%v %v %s 8", k.real.Dev, cow.Dev, store)}}, dm.LoadOptions{}); err != nil {
		k.t.Fatal(err)
	}
	err := k.c.WithSuspended(context.Background(), k.base.Name, dm.SuspendOptions{}, func() error {
		_, err := k.c.Resume(full)
		return err
	})
	if err != nil {
		k.t.Fatal(err)
	}
	info, err := k.c.Info(full)
	if err != nil {
		k.t.Fatal(err)
	}
	k.snaps[name], k.cows[name] = info, cow
	return full
}

// devHash is the sha256 of the whole 64 MiB device, read with O_DIRECT.
func devHash(t *testing.T, path string) string {
	t.Helper()
	return testutil.HashDirect(t, path, 0, originSectors*512)
}

func tableType(t *testing.T, c *dm.Client, name string) string {
	t.Helper()
	lines, _, err := c.Table(name, dm.TableOptions{})
	if errors.Is(err, dm.ErrNotFound) {
		return "<gone>"
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 {
		return fmt.Sprint(lines)
	}
	return lines[0].Type
}

// writeChanges writes 8 MiB at the start and a few scattered chunks.
func writeChanges(t *testing.T, path string) {
	testutil.MustWriteDirect(t, path, 0, testutil.Pattern(0x22, 8*mib))
	for _, off := range []int64{20 * mib, 33*mib + 4096*7, 63 * mib} {
		testutil.MustWriteDirect(t, path, off, testutil.Pattern(0x33, 64<<10))
	}
}

func runMerge(t *testing.T, c *dm.Client, snap string) (Merge, []Report, FinishResult) {
	t.Helper()
	var steps []Step
	m, err := Start(context.Background(), c, snap, StartOptions{OnStep: func(s Step) error { steps = append(steps, s); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 6 {
		t.Errorf("steps %v", steps)
	}
	ms, err := FindMerges(c)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range ms {
		if x.Origin == m.Origin {
			found = true
			if x.Snapshot != snap || x.COWDev != m.COWDev || x.Real != m.Real {
				t.Errorf("FindMerges: %+v, want %+v", x, m)
			}
		}
	}
	if !found {
		t.Errorf("FindMerges %+v misses %s", ms, m.Origin)
	}
	if st := tableType(t, c, snap); st != dm.TypeError {
		t.Errorf("old snapshot table %s, want error", st)
	}
	var reps []Report
	start := time.Now()
	final, err := Watch(context.Background(), c, m.Origin, MinInterval, ProgressFunc(func(r Report) { reps = append(reps, r) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("merge of %d sectors: %d polls, %v; final %+v", final.TotalSectors, len(reps), time.Since(start), final)
	for i := 1; i < len(reps); i++ {
		if reps[i].RemainingSectors > reps[i-1].RemainingSectors || reps[i].Percent() < reps[i-1].Percent() {
			t.Errorf("report %d not monotonic: %+v after %+v", i, reps[i], reps[i-1])
		}
	}
	if !final.Done || final.Percent() != 100 {
		t.Errorf("final report %+v", final)
	}
	if len(reps) > 200 {
		t.Errorf("%d polls for an 8 MiB merge", len(reps))
	}
	res, err := Finish(context.Background(), c, m)
	if err != nil {
		t.Fatal(err)
	}
	return m, reps, res
}

// TestKernelMergeLastSnapshot
//   - LVM2's layout: base (snapshot-origin) over base-real, snap (P 8)
//     over snap-cow
//   - 8 MiB + 3 scattered 64 KiB writes to the origin; hash the snapshot
//   - Start: the old snapshot gets the error table; FindMerges sees it
//   - Watch: monotonic progress, done
//   - Finish: origin bytes == the snapshot's bytes; base is linear over
//     the loop device; base-real, snap, snap-cow are gone
func TestKernelMergeLastSnapshot(t *testing.T) {
	c := testutil.Client(t)
	k := newKStack(t, c)
	snap := k.snapshot("snap", 32*mib, "P")
	writeChanges(t, k.base.BlockPath())
	want := devHash(t, k.snaps["snap"].BlockPath())
	if got := devHash(t, k.base.BlockPath()); got == want {
		t.Fatal("origin writes did not change the origin")
	}
	_, _, res := runMerge(t, c, snap)
	if got := devHash(t, k.base.BlockPath()); got != want {
		t.Errorf("origin after merge %s, want the snapshot's %s", got, want)
	}
	wantRemoved := []string{snap, snap + "-cow", k.prefix + "-base-real"}
	if fmt.Sprint(res.Removed) != fmt.Sprint(wantRemoved) || res.OriginTarget != "linear" || len(res.SnapshotsLeft) != 0 {
		t.Errorf("result %+v, want removed %v", res, wantRemoved)
	}
	for name, want := range map[string]string{k.base.Name: "linear", snap: "<gone>", snap + "-cow": "<gone>", k.prefix + "-base-real": "<gone>"} {
		if got := tableType(t, c, name); got != want {
			t.Errorf("%s: table %s, want %s", name, got, want)
		}
	}
	info, err := c.Info(k.base.Name)
	if err != nil || info.Dev != k.base.Dev || info.Suspended {
		t.Errorf("origin info %+v, %v: want same device number %v, resumed", info, err, k.base.Dev)
	}
}

// TestKernelMergeKeepsOtherSnapshot
//   - two snapshots, a (merged) and b (kept), both taken before the writes
//   - after the merge, b still reads the original bytes (the merge copied
//     out to it), its status is valid, base is snapshot-origin, base-real
//     and b's devices remain, a's are gone
func TestKernelMergeKeepsOtherSnapshot(t *testing.T) {
	c := testutil.Client(t)
	k := newKStack(t, c)
	a := k.snapshot("a", 32*mib, "P")
	b := k.snapshot("b", 32*mib, "P")
	orig := devHash(t, k.base.BlockPath())
	writeChanges(t, k.base.BlockPath())
	want := devHash(t, k.snaps["a"].BlockPath())
	if want != orig {
		t.Fatal("snapshot a differs from the original origin")
	}
	// a now diverges from b: write to a itself.
	testutil.MustWriteDirect(t, k.snaps["a"].BlockPath(), 40*mib, testutil.Pattern(0x44, mib))
	want = devHash(t, k.snaps["a"].BlockPath())
	_, _, res := runMerge(t, c, a)
	if got := devHash(t, k.base.BlockPath()); got != want {
		t.Errorf("origin after merge %s, want a's %s", got, want)
	}
	if got := devHash(t, k.snaps["b"].BlockPath()); got != orig {
		t.Errorf("snapshot b changed by the merge: %s, want %s", got, orig)
	}
	st, _, err := snapshotStatus(c, b)
	if err != nil || st.State != dm.SnapshotActive {
		t.Errorf("b status %+v, %v", st, err)
	}
	if res.OriginTarget != dm.TypeSnapshotOrigin || fmt.Sprint(res.SnapshotsLeft) != fmt.Sprint([]string{b}) ||
		fmt.Sprint(res.Removed) != fmt.Sprint([]string{a, a + "-cow"}) {
		t.Errorf("result %+v", res)
	}
	for name, want := range map[string]string{k.base.Name: "snapshot-origin", k.prefix + "-base-real": "linear",
		a: "<gone>", a + "-cow": "<gone>", b: "snapshot", b + "-cow": "linear"} {
		if got := tableType(t, c, name); got != want {
			t.Errorf("%s: table %s, want %s", name, got, want)
		}
	}
}

// TestKernelMergeRefusals
//   - N store: ErrTransient; P snapshot filled by origin writes (Invalid):
//     ErrInvalidated; origin held open: ErrOriginOpen, and Force overrides
//   - nothing changes on a refusal
func TestKernelMergeRefusals(t *testing.T) {
	c := testutil.Client(t)
	k := newKStack(t, c)
	n := k.snapshot("n", 32*mib, "N")
	if _, err := Start(context.Background(), c, n, StartOptions{}); !errors.Is(err, ErrTransient) {
		t.Errorf("N: %v", err)
	}
	small := k.snapshot("small", 1*mib, "P")
	writeChanges(t, k.base.BlockPath()) // 8 MiB of changes overflow a 1 MiB COW
	if _, err := Start(context.Background(), c, small, StartOptions{}); !errors.Is(err, ErrInvalidated) {
		t.Errorf("invalid: %v", err)
	}
	p := k.snapshot("p", 32*mib, "P")
	f, err := os.Open(k.base.BlockPath())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), c, p, StartOptions{})
	if !errors.Is(err, ErrOriginOpen) {
		t.Errorf("origin open: %v", err)
	}
	for name, want := range map[string]string{k.base.Name: "snapshot-origin", n: "snapshot", small: "snapshot", p: "snapshot"} {
		if got := tableType(t, c, name); got != want {
			t.Errorf("%s after refusals: %s, want %s", name, got, want)
		}
	}
	// Forced, with the origin open: the merge runs under the open file.
	m, err := Start(context.Background(), c, p, StartOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Watch(context.Background(), c, m.Origin, MinInterval, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, err := Finish(context.Background(), c, m)
	if err != nil {
		t.Fatal(err)
	}
	// n and small remain: snapshot-origin stays.
	if res.OriginTarget != dm.TypeSnapshotOrigin || len(res.SnapshotsLeft) != 2 {
		t.Errorf("result %+v", res)
	}
}
