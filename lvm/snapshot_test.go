package lvm

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

func (k *fakeKernel) Info(name string) (dm.Info, error) {
	d, ok := k.devs[name]
	if !ok {
		return dm.Info{}, dm.ErrNotFound
	}
	return dm.Info{Name: name, UUID: d.uuid, Dev: d.dev, ActivePresent: d.live != nil, InactivePresent: d.hasInactive, Suspended: d.suspended}, nil
}

func (k *fakeKernel) Status(name string) ([]dm.TargetLine, dm.Info, error) {
	return k.Table(name, dm.TableOptions{})
}

func (k *fakeKernel) WithSuspended(_ context.Context, name string, _ dm.SuspendOptions, fn func() error) error {
	if err := k.op("suspend", name); err != nil {
		return err
	}
	if d, ok := k.devs[name]; ok {
		d.suspended = true
	}
	err := fn()
	_, rerr := k.Resume(name)
	return errors.Join(err, rerr)
}

var _ SnapshotKernel = (*fakeKernel)(nil)

// snapFixture is a pool "vg" with an active 8-extent volume "base".
func snapFixture(t *testing.T) (*Store, *fakeKernel, SnapshotEnv) {
	t.Helper()
	s := must[*Store](t)(Create("vg", disks(newMemDisk("a", 1<<17)), CreateOptions{ExtentSize: 2048}))
	if err := s.Commit(must[*Pool](t)(s.Pool.AddVolume("base", 8))); err != nil {
		t.Fatal(err)
	}
	k := newFakeKernel()
	devs := pvDevs(s.Pool)
	if _, _, err := Activate(k, s.Pool, devs, ActivateOptions{}); err != nil {
		t.Fatal(err)
	}
	k.log = nil
	zero := func(dm.Info, dm.Sector) error { k.log = append(k.log, "zero"); return nil }
	return s, k, SnapshotEnv{Kernel: k, Devs: devs, ZeroCOW: zero}
}

var snapSpec = SnapshotSpec{Name: "snap", Origin: "base", COWExtents: 2, Store: dm.Persistent, ChunkSize: 8, DiscardZeroesCOW: true}

// TestCreateSnapshotOrder pins LVM2's order: everything prepared before
// the one suspend of the origin, resumes -real, snapshot, origin; the
// tables are those of the typed builders; activation then keeps all.
func TestCreateSnapshotOrder(t *testing.T) {
	s, k, env := snapFixture(t)
	originDev := k.devs["vg-base"].dev
	if _, err := CreateSnapshot(context.Background(), s, env, snapSpec); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"create vg-snap-cow", "load vg-snap-cow", "resume vg-snap-cow", "zero",
		"create vg-base-real", "load vg-base-real",
		"create vg-snap", "load vg-snap",
		"load vg-base",
		"suspend vg-base", "resume vg-base-real", "resume vg-snap", "resume vg-base",
	}
	if !slices.Equal(k.log, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(k.log, "\n"), strings.Join(want, "\n"))
	}
	real, cow := k.devs["vg-base-real"].dev, k.devs["vg-snap-cow"].dev
	size := dm.Sector(8 * 2048)
	wantSnap := dm.Segment{Length: size, Target: dm.Snapshot{Origin: real, COW: cow, Store: dm.Persistent, ChunkSectors: 8, DiscardZeroesCOW: true}}.Line()
	wantOrigin := dm.Segment{Length: size, Target: dm.SnapshotOrigin{Origin: real}}.Line()
	if got := k.devs["vg-snap"].live; !slices.Equal(got, []dm.TargetLine{wantSnap}) {
		t.Errorf("snapshot table %v, want %v", got, wantSnap)
	}
	if got := k.devs["vg-base"].live; !slices.Equal(got, []dm.TargetLine{wantOrigin}) || k.devs["vg-base"].dev != originDev {
		t.Errorf("origin table %v, want %v", got, wantOrigin)
	}
	if len(s.Pool.Pending) != 0 || s.Pool.Volume("base").Kind != KindOrigin {
		t.Errorf("metadata: %+v", s.Pool)
	}
	actions, _, err := Activate(k, s.Pool, env.Devs, ActivateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Kind != ActionKeep {
			t.Errorf("activate after create: %s", a)
		}
	}

	// A second snapshot reuses -real and leaves the origin's table alone.
	k.log = nil
	spec := snapSpec
	spec.Name = "snap2"
	if _, err := CreateSnapshot(context.Background(), s, env, spec); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(k.log, "create vg-base-real") || slices.Contains(k.log, "load vg-base") {
		t.Errorf("second snapshot touched -real or the origin's table: %v", k.log)
	}

	// Removing both collapses the origin to linear and drops -real.
	for _, n := range []string{"snap", "snap2"} {
		if _, err := RemoveSnapshotDevices(context.Background(), s, env, n, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(k.devs) != 1 || k.devs["vg-base"].live[0].Type != dm.TypeLinear || k.devs["vg-base"].dev != originDev {
		t.Errorf("after removing both: %v", k.devs)
	}
	if s.Pool.Volume("base").Kind != KindPlain || len(s.Pool.Snapshots) != 0 {
		t.Errorf("metadata after removing both: %+v", s.Pool)
	}
}

// TestCreateSnapshotUndo: a failing step undoes the kernel steps and the
// metadata.
func TestCreateSnapshotUndo(t *testing.T) {
	for _, fail := range []string{"load vg-snap", "resume vg-snap", "load vg-base", "suspend vg-base"} {
		t.Run(fail, func(t *testing.T) {
			s, k, env := snapFixture(t)
			before := k.devs["vg-base"].live
			k.failOn = fail
			if _, err := CreateSnapshot(context.Background(), s, env, snapSpec); !errors.Is(err, errFake) {
				t.Fatalf("err %v", err)
			}
			if len(k.devs) != 1 || !slices.Equal(k.devs["vg-base"].live, before) || k.devs["vg-base"].hasInactive {
				t.Errorf("kernel not restored: %v", k.devs)
			}
			if len(s.Pool.Snapshots) != 0 || len(s.Pool.Pending) != 0 || s.Pool.Volume("snap") != nil {
				t.Errorf("metadata not restored: %+v", s.Pool)
			}
		})
	}
}

// TestRecoverSnapshots: a pending create with no swap is rolled back; one
// whose swap completed is kept.
func TestRecoverSnapshots(t *testing.T) {
	s, k, env := snapFixture(t)
	with := must[*Pool](t)(s.Pool.AddSnapshot(snapSpec))
	pending, _ := with.AddPending(PendingOp{Op: OpSnapshotCreate, Volume: with.Volume("snap").UUID})
	pending, _ = pending.AddPending(PendingOp{Op: "merge", Volume: with.Volume("snap").UUID})
	next, warns, err := RecoverSnapshots(context.Background(), k, pending, env)
	if err != nil {
		t.Fatal(err)
	}
	if next.Volume("snap") != nil || len(next.Pending) != 1 || next.Pending[0].Op != "merge" || len(warns) != 1 {
		t.Errorf("rollback: %+v %v", next, warns)
	}

	if _, err := CreateSnapshot(context.Background(), s, env, snapSpec); err != nil {
		t.Fatal(err)
	}
	pending, _ = s.Pool.AddPending(PendingOp{Op: OpSnapshotCreate, Volume: s.Pool.Volume("snap").UUID})
	next, _, err = RecoverSnapshots(context.Background(), k, pending, env)
	if err != nil {
		t.Fatal(err)
	}
	if next.Volume("snap") == nil || len(next.Pending) != 0 {
		t.Errorf("complete snapshot not kept: %+v", next)
	}
}

// TestDocumentVersion1: documents written before read_only still load.
func TestDocumentVersion1(t *testing.T) {
	p := must[*Pool](t)(NewPool("vg", 0))
	p.PVs = []PV{{UUID: NewUUID(), Size: 1 << 20, PEStart: 2048, PECount: 100}}
	p.Seqno = 1
	doc := strings.Replace(mustEncode(t, p), `"version":2`, `"version":1`, 1)
	h := slotHeader{Seqno: 1, Length: uint64(len(doc)), PayloadCRC: crc32c([]byte(doc)), Pool: p.UUID}
	if _, err := decodePayload(h, []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverSnapshotExtendInactive: an extend killed between the
// snapshot table's load and its resume leaves that table in the
// snapshot's inactive slot, holding the COW for the handover; recovery
// clears it before loading the table again (the kernel refuses a second
// handover destination with EINVAL).
func TestRecoverSnapshotExtendInactive(t *testing.T) {
	s, k, env := snapFixture(t)
	if _, err := CreateSnapshot(context.Background(), s, env, snapSpec); err != nil {
		t.Fatal(err)
	}
	grown := must[*Pool](t)(s.Pool.ExtendVolume("snap", 1))
	pending, _ := grown.AddPending(PendingOp{Op: OpSnapshotExtend, Volume: grown.Volume("snap").UUID})
	live := k.devs["vg-snap"].live
	if err := k.Load("vg-snap", live, dm.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	k.log = nil
	next, _, err := RecoverSnapshots(context.Background(), k, pending, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Pending) != 0 {
		t.Errorf("pending left: %+v", next.Pending)
	}
	clear, load := slices.Index(k.log, "clear vg-snap"), slices.Index(k.log, "load vg-snap")
	if clear < 0 || load < clear {
		t.Errorf("the stale inactive table of vg-snap was not cleared before the reload: %v", k.log)
	}
	if d := k.devs["vg-snap"]; d.hasInactive {
		t.Error("vg-snap still has an inactive table")
	}
}
