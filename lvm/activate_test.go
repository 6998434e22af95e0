package lvm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// fakeKernel is an in-memory device-mapper with the semantics Apply relies
// on: create gives a suspended device without table, load fills the
// inactive slot, resume swaps it in.
type fakeKernel struct {
	devs    map[string]*fakeDev
	next    uint32
	log     []string
	failOn  string // "op name" that fails once
	removed []string
	// busy makes the next n removes of a device fail with EBUSY (n < 0:
	// every remove), like a brief open by udev's blkid.
	busy map[string]int
}

type fakeDev struct {
	uuid           string
	dev            dm.DevNum
	live, inactive []dm.TargetLine
	hasInactive    bool
	suspended      bool
}

var errFake = errors.New("injected failure")

func newFakeKernel() *fakeKernel { return &fakeKernel{devs: map[string]*fakeDev{}} }

func (k *fakeKernel) op(op, name string) error {
	k.log = append(k.log, op+" "+name)
	if k.failOn == op+" "+name {
		k.failOn = ""
		return errFake
	}
	return nil
}

func (k *fakeKernel) List() ([]dm.ListEntry, error) {
	var out []dm.ListEntry
	for n, d := range k.devs {
		out = append(out, dm.ListEntry{Name: n, Dev: d.dev, UUID: d.uuid})
	}
	slices.SortFunc(out, func(a, b dm.ListEntry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (k *fakeKernel) Create(name, uuid string) (dm.Info, error) {
	if err := k.op("create", name); err != nil {
		return dm.Info{}, err
	}
	if _, ok := k.devs[name]; ok {
		return dm.Info{}, dm.ErrExist
	}
	k.next++
	d := &fakeDev{uuid: uuid, dev: dm.DevNum{Major: 253, Minor: k.next}}
	k.devs[name] = d
	return dm.Info{Name: name, UUID: uuid, Dev: d.dev}, nil
}

func (k *fakeKernel) Load(name string, lines []dm.TargetLine, _ dm.LoadOptions) error {
	if err := k.op("load", name); err != nil {
		return err
	}
	d, ok := k.devs[name]
	if !ok {
		return dm.ErrNotFound
	}
	for _, l := range lines {
		if strings.ContainsAny(l.Params, "{}") {
			return fmt.Errorf("unresolved reference in %q", l.Params)
		}
		for _, f := range strings.Fields(l.Params) {
			if n, err := dm.ParseDevNum(f); err == nil && n.Major == 253 && !k.hasDev(n) {
				return fmt.Errorf("table of %s refers to absent %s", name, n)
			}
		}
	}
	d.inactive, d.hasInactive = slices.Clone(lines), true
	return nil
}

func (k *fakeKernel) hasDev(n dm.DevNum) bool {
	for _, d := range k.devs {
		if d.dev == n {
			return true
		}
	}
	return false
}

func (k *fakeKernel) ClearInactive(name string) error {
	k.op("clear", name)
	if d, ok := k.devs[name]; ok {
		d.inactive, d.hasInactive = nil, false
	}
	return nil
}

func (k *fakeKernel) Resume(name string) (dm.Info, error) {
	if err := k.op("resume", name); err != nil {
		return dm.Info{}, err
	}
	d, ok := k.devs[name]
	if !ok {
		return dm.Info{}, dm.ErrNotFound
	}
	if d.hasInactive {
		d.live, d.inactive, d.hasInactive = d.inactive, nil, false
	}
	d.suspended = false
	return dm.Info{Name: name, UUID: d.uuid, Dev: d.dev}, nil
}

func (k *fakeKernel) Remove(name string, _ dm.RemoveOptions) error {
	if err := k.op("remove", name); err != nil {
		return err
	}
	d, ok := k.devs[name]
	if !ok {
		return dm.ErrNotFound
	}
	if n := k.busy[name]; n != 0 {
		k.busy[name] = n - 1
		return fmt.Errorf("remove %s: open: %w", name, dm.ErrBusy)
	}
	for n, o := range k.devs {
		for _, l := range o.live {
			if n != name && slices.Contains(strings.Fields(l.Params), d.dev.String()) {
				return fmt.Errorf("remove %s: used by %s: %w", name, n, dm.ErrBusy)
			}
		}
	}
	delete(k.devs, name)
	k.removed = append(k.removed, name)
	return nil
}

func (k *fakeKernel) Rename(oldName, newName string) error {
	if err := k.op("rename", oldName); err != nil {
		return err
	}
	d, ok := k.devs[oldName]
	if !ok {
		return dm.ErrNotFound
	}
	if _, ok := k.devs[newName]; ok {
		return dm.ErrExist
	}
	delete(k.devs, oldName)
	k.devs[newName] = d
	return nil
}

func (k *fakeKernel) Table(name string, _ dm.TableOptions) ([]dm.TargetLine, dm.Info, error) {
	d, ok := k.devs[name]
	if !ok {
		return nil, dm.Info{}, dm.ErrNotFound
	}
	return slices.Clone(d.live), dm.Info{Name: name, UUID: d.uuid, Dev: d.dev}, nil
}

func pvDevs(p *Pool) map[UUID]dm.DevNum {
	m := map[UUID]dm.DevNum{}
	for i, pv := range p.PVs {
		m[pv.UUID] = dm.DevNum{Major: 7, Minor: uint32(i)}
	}
	return m
}

func TestPlanLayouts(t *testing.T) {
	p := testPool(t, 100, 100)
	p = must[*Pool](t)(p.AddVolume("plain-vol", 150)) // spans both PVs
	p = must[*Pool](t)(p.AddVolume("base", 10))
	p = must[*Pool](t)(p.AddSnapshot(SnapshotSpec{Name: "s1", Origin: "base", COWExtents: 2, Store: dm.Persistent, ChunkSize: 8}))
	p = must[*Pool](t)(p.AddSnapshot(SnapshotSpec{Name: "s2", Origin: "base", COWExtents: 2, Store: dm.PersistentOverflow, ChunkSize: 16, DiscardZeroesCOW: true, DiscardPassdownOrigin: true}))
	desired, warns, err := Plan(p, pvDevs(p), PlanOptions{})
	if err != nil || len(warns) != 0 {
		t.Fatal(err, warns)
	}
	var got []string
	for _, d := range desired {
		for _, l := range d.Lines {
			got = append(got, d.Name+": "+l.String())
		}
	}
	want := []string{
		"vg0-plain--vol: 0 819200 linear 7:0 2048",
		"vg0-plain--vol: 819200 409600 linear 7:1 2048",
		"vg0-base-real: 0 81920 linear 7:1 411648",
		"vg0-s1-cow: 0 16384 linear 7:1 493568",
		"vg0-s1: 0 81920 snapshot {vg0-base-real} {vg0-s1-cow} P 8",
		"vg0-s2-cow: 0 16384 linear 7:1 509952",
		"vg0-s2: 0 81920 snapshot {vg0-base-real} {vg0-s2-cow} PO 16 2 discard_zeroes_cow discard_passdown_origin",
		"vg0-base: 0 81920 snapshot-origin {vg0-base-real}",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, d := range desired {
		pool, vol, layer, err := ParseDMUUID(d.UUID)
		if err != nil || pool != p.UUID || p.Volume(d.Volume).UUID != vol {
			t.Errorf("%s: uuid %q: %v", d.Name, d.UUID, err)
		}
		if strings.HasSuffix(d.Name, "-real") != (layer == LayerReal) {
			t.Errorf("%s: layer %q", d.Name, layer)
		}
	}
	// Merging: the origin becomes snapshot-merge over the merging COW, the
	// merging snapshot's own device is not planned, the other snapshots
	// resume before the origin.
	m := must[*Pool](t)(p.SetSnapshotState("s1", SnapshotMerging))
	desired = must[[]DesiredDevice](t)(func() ([]DesiredDevice, error) { d, _, err := Plan(m, pvDevs(m), PlanOptions{}); return d, err }())
	pos := map[string]int{}
	for i, d := range desired {
		pos[d.Name] = i
		switch d.Name {
		case "vg0-base":
			if d.Lines[0].String() != "0 81920 snapshot-merge {vg0-base-real} {vg0-s1-cow} P 8" {
				t.Errorf("merging origin: %s", d.Lines[0])
			}
		case "vg0-s1":
			t.Errorf("merging snapshot planned: %s", d.Lines[0])
		}
	}
	if _, ok := pos["vg0-s1-cow"]; !ok || pos["vg0-base"] < pos["vg0-s2"] || pos["vg0-base"] < pos["vg0-s1-cow"] {
		t.Errorf("merge order: %v", pos)
	}
}

func TestPlanMissingPV(t *testing.T) {
	p := testPool(t, 10, 10)
	p = must[*Pool](t)(p.AddVolume("a", 10))
	p = must[*Pool](t)(p.AddVolume("b", 10))
	devs := pvDevs(p)
	delete(devs, p.PVs[1].UUID)
	if _, _, err := Plan(p, devs, PlanOptions{}); !errors.Is(err, ErrMissingPV) || !strings.Contains(err.Error(), "volumes b") {
		t.Fatalf("missing PV: %v", err)
	}
	desired, warns, err := Plan(p, devs, PlanOptions{Partial: true})
	if err != nil || len(desired) != 1 || desired[0].Name != "vg0-a" || len(warns) != 1 || !strings.Contains(warns[0].Msg, "/dev/pv1") {
		t.Fatalf("partial: %v %v %v", desired, warns, err)
	}
}

func snapshotPool(t *testing.T) *Pool {
	p := testPool(t, 100)
	p = must[*Pool](t)(p.AddVolume("a", 5))
	p = must[*Pool](t)(p.AddVolume("base", 10))
	return must[*Pool](t)(p.AddSnapshot(SnapshotSpec{Name: "snap", Origin: "base", COWExtents: 2, Store: dm.Persistent, ChunkSize: 8}))
}

func TestActivateIdempotent(t *testing.T) {
	p := snapshotPool(t)
	k := newFakeKernel()
	actions, _, err := Activate(k, p, pvDevs(p), ActivateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.devs) != 5 {
		t.Fatalf("devices: %v", k.log)
	}
	for _, a := range actions {
		if a.Kind != ActionCreate {
			t.Errorf("first activation: %s", a)
		}
	}
	if got := k.devs["vg0-snap"].live[0].Params; got != fmt.Sprintf("%s %s P 8", k.devs["vg0-base-real"].dev, k.devs["vg0-snap-cow"].dev) {
		t.Errorf("snapshot table %q", got)
	}
	k.log = nil
	actions, _, err = Activate(k, p, pvDevs(p), ActivateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Kind != ActionKeep {
			t.Errorf("second activation: %s", a)
		}
	}
	if len(k.log) != 0 {
		t.Errorf("second activation touched the kernel: %v", k.log)
	}
	if err := Deactivate(k, p.UUID); err != nil {
		t.Fatal(err)
	}
	if len(k.devs) != 0 {
		t.Errorf("left after deactivate: %v", k.devs)
	}
	if i, j := slices.Index(k.removed, "vg0-base"), slices.Index(k.removed, "vg0-base-real"); i > j {
		t.Errorf("removal order %v", k.removed)
	}
}

func TestReconcile(t *testing.T) {
	p := snapshotPool(t)
	k := newFakeKernel()
	if _, _, err := Activate(k, p, pvDevs(p), ActivateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Crash leftovers and drift: "a" removed from the metadata but still
	// active, "base" extended in the metadata, the snapshot device gone, a
	// renamed volume, and a foreign device holding a name.
	q := must[*Pool](t)(p.RemoveVolume("a"))
	q = must[*Pool](t)(q.ExtendVolume("base", 1))
	q = must[*Pool](t)(q.AddVolume("new", 1))
	q = must[*Pool](t)(q.RenameVolume("snap", "snap2"))
	delete(k.devs, "vg0-snap") // pretend it vanished (its -cow stays, renamed below)
	desired, _, err := Plan(q, pvDevs(q), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	current := must[[]KernelDevice](t)(CurrentDevices(k, q.UUID, nil))
	actions := Reconcile(q.UUID, desired, current)
	got := map[string]ActionKind{}
	for _, a := range actions {
		n := a.Device.Name
		if n == "" {
			n = a.Current.Name
		}
		got[n] = a.Kind
	}
	want := map[string]ActionKind{
		"vg0-a": ActionRemove, "vg0-base-real": ActionReload, "vg0-base": ActionReload,
		"vg0-snap2-cow": ActionRename, "vg0-snap2": ActionCreate, "vg0-new": ActionCreate,
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: %s, want %s (all: %v)", n, got[n], w, got)
		}
	}
	// Report-only by default: leftovers stay.
	if err := Apply(k, actions, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.devs["vg0-a"]; !ok {
		t.Error("leftover removed without RemoveLeftovers")
	}
	_, warns, err := Activate(k, q, pvDevs(q), ActivateOptions{Apply: ApplyOptions{RemoveLeftovers: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.devs["vg0-a"]; ok || len(warns) != 0 {
		t.Errorf("leftover not removed: %v", warns)
	}
	actions, _, err = Activate(k, q, pvDevs(q), ActivateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if a.Kind != ActionKeep {
			t.Errorf("after reconcile: %s", a)
		}
	}
	// A foreign device with a volume's name is a conflict: nothing happens.
	r := must[*Pool](t)(q.AddVolume("taken", 1))
	k.devs["vg0-taken"] = &fakeDev{uuid: "LVM-something", dev: dm.DevNum{Major: 253, Minor: 99}}
	k.log = nil
	if _, _, err := Activate(k, r, pvDevs(r), ActivateOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("conflict: %v", err)
	}
	if len(k.log) != 0 {
		t.Errorf("conflict touched the kernel: %v", k.log)
	}
}

func TestApplyRollsBackCreate(t *testing.T) {
	p := testPool(t, 10)
	p = must[*Pool](t)(p.AddVolume("a", 1))
	k := newFakeKernel()
	k.failOn = "load vg0-a"
	if _, _, err := Activate(k, p, pvDevs(p), ActivateOptions{}); !errors.Is(err, errFake) {
		t.Fatalf("failed load: %v", err)
	}
	if len(k.devs) != 0 {
		t.Errorf("device left after a failed load: %v", k.log)
	}
	k.failOn = "resume vg0-a"
	if _, _, err := Activate(k, p, pvDevs(p), ActivateOptions{}); !errors.Is(err, errFake) {
		t.Fatalf("failed resume: %v", err)
	}
	if len(k.devs) != 0 {
		t.Errorf("device left after a failed resume: %v", k.log)
	}
}

func TestTransientLost(t *testing.T) {
	p := testPool(t, 20)
	p = must[*Pool](t)(p.AddVolume("base", 2))
	p = must[*Pool](t)(p.AddSnapshot(SnapshotSpec{Name: "t", Origin: "base", COWExtents: 1, Store: dm.Transient, ChunkSize: 8}))
	k := newFakeKernel()
	actions, warns, err := Activate(k, p, pvDevs(p), ActivateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.devs["vg0-t"]; ok || len(warns) != 1 || !strings.Contains(warns[0].Msg, "vg0/t is lost") {
		t.Errorf("transient snapshot: %v %v", actions, warns)
	}
}
