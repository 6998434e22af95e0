package merge

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// fakeDev is one device of the fake kernel.
type fakeDev struct {
	uuid      string
	dev       dm.DevNum
	live      []dm.TargetLine
	inactive  []dm.TargetLine
	suspended bool
	open      int32
	// status returns the status params of the live table; nil means ""
	// for targets without status and "16/32768 16" for snapshots.
	status []string // consumed one per Status call; the last one sticks
}

// fakeDM is a fake device-mapper that records every call as "op name"
// and fails the calls listed in fail.
type fakeDM struct {
	devs  map[string]*fakeDev
	calls []string
	fail  map[string]error
	// onCall runs after a call is recorded (to change state mid-test).
	onCall func(call string)
}

func newFake() *fakeDM { return &fakeDM{devs: map[string]*fakeDev{}, fail: map[string]error{}} }

var errInjected = errors.New("injected failure")

func (f *fakeDM) record(op, name string) error {
	call := op + " " + name
	f.calls = append(f.calls, call)
	if f.onCall != nil {
		f.onCall(call)
	}
	if err, ok := f.fail[call]; ok {
		return &dm.OpError{Op: op, Device: name, Err: err}
	}
	return nil
}

func (f *fakeDM) get(op, name string) (*fakeDev, error) {
	d, ok := f.devs[name]
	if !ok {
		return nil, &dm.OpError{Op: op, Device: name, Err: dm.ErrNotFound}
	}
	return d, nil
}

func (f *fakeDM) add(name, uuid string, minor uint32, table string) *fakeDev {
	d := &fakeDev{uuid: uuid, dev: dm.DevNum{Major: 254, Minor: minor}}
	if table != "" {
		l, err := dm.ParseTargetLine(table)
		if err != nil {
			panic(err)
		}
		d.live = []dm.TargetLine{l}
	}
	f.devs[name] = d
	return d
}

func (f *fakeDM) info(name string, d *fakeDev) dm.Info {
	return dm.Info{Name: name, UUID: d.uuid, Dev: d.dev, OpenCount: d.open, Suspended: d.suspended,
		ActivePresent: d.live != nil, InactivePresent: d.inactive != nil}
}

func (f *fakeDM) List() ([]dm.ListEntry, error) {
	f.calls = append(f.calls, "list")
	var out []dm.ListEntry
	for n, d := range f.devs {
		out = append(out, dm.ListEntry{Name: n, Dev: d.dev, UUID: d.uuid})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeDM) Info(name string) (dm.Info, error) {
	d, err := f.get("info", name)
	if err != nil {
		return dm.Info{}, err
	}
	return f.info(name, d), nil
}

func (f *fakeDM) Table(name string, opts dm.TableOptions) ([]dm.TargetLine, dm.Info, error) {
	d, err := f.get("table", name)
	if err != nil {
		return nil, dm.Info{}, err
	}
	if opts.Inactive {
		return d.inactive, f.info(name, d), nil
	}
	return d.live, f.info(name, d), nil
}

func (f *fakeDM) Status(name string) ([]dm.TargetLine, dm.Info, error) {
	if err := f.record("status", name); err != nil {
		return nil, dm.Info{}, err
	}
	d, err := f.get("status", name)
	if err != nil {
		return nil, dm.Info{}, err
	}
	var out []dm.TargetLine
	for _, l := range d.live {
		p := ""
		if l.Type == dm.TypeSnapshot || l.Type == dm.TypeSnapshotMerge {
			p = "16/32768 16"
		}
		if len(d.status) > 0 {
			p = d.status[0]
			if len(d.status) > 1 {
				d.status = d.status[1:]
			}
		}
		out = append(out, dm.TargetLine{Start: l.Start, Length: l.Length, Type: l.Type, Params: p})
	}
	return out, f.info(name, d), nil
}

func (f *fakeDM) Load(name string, lines []dm.TargetLine, _ dm.LoadOptions) error {
	if err := f.record("load", name); err != nil {
		return err
	}
	d, err := f.get("load", name)
	if err != nil {
		return err
	}
	d.inactive = lines
	return nil
}

func (f *fakeDM) ClearInactive(name string) error {
	if err := f.record("clear", name); err != nil {
		return err
	}
	d, err := f.get("clear", name)
	if err != nil {
		return err
	}
	d.inactive = nil
	return nil
}

func (f *fakeDM) Suspend(name string, _ dm.SuspendOptions) error {
	if err := f.record("suspend", name); err != nil {
		return err
	}
	d, err := f.get("suspend", name)
	if err != nil {
		return err
	}
	d.suspended = true
	return nil
}

func (f *fakeDM) Resume(name string) (dm.Info, error) {
	if err := f.record("resume", name); err != nil {
		return dm.Info{}, err
	}
	d, err := f.get("resume", name)
	if err != nil {
		return dm.Info{}, err
	}
	if d.inactive != nil {
		d.live, d.inactive, d.status = d.inactive, nil, nil
	}
	d.suspended = false
	return f.info(name, d), nil
}

func (f *fakeDM) Remove(name string, _ dm.RemoveOptions) error {
	if err := f.record("remove", name); err != nil {
		return err
	}
	if _, err := f.get("remove", name); err != nil {
		return err
	}
	delete(f.devs, name)
	return nil
}

// WithSuspended mirrors dm.Client.WithSuspended on the fake's own calls.
func (f *fakeDM) WithSuspended(ctx context.Context, name string, opts dm.SuspendOptions, fn func() error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.Suspend(name, opts); err != nil {
		return err
	}
	defer func() {
		if _, rerr := f.Resume(name); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn()
}

// mutating returns the recorded calls that change state.
func (f *fakeDM) mutating() []string {
	var out []string
	for _, c := range f.calls {
		if op, _, _ := strings.Cut(c, " "); op != "list" && op != "status" {
			out = append(out, c)
		}
	}
	return out
}

// checkIdle fails t if any device is suspended or has an inactive table.
func (f *fakeDM) checkIdle(t *testing.T) {
	t.Helper()
	for n, d := range f.devs {
		if d.suspended {
			t.Errorf("%s left suspended", n)
		}
		if d.inactive != nil {
			t.Errorf("%s left with inactive table %v", n, d.inactive)
		}
	}
}

func (f *fakeDM) liveTable(name string) string {
	d := f.devs[name]
	if d == nil {
		return "<gone>"
	}
	var s []string
	for _, l := range d.live {
		s = append(s, l.String())
	}
	return strings.Join(s, "\n")
}

// lvmLayout builds LVM2's layout of vg0/base with snapshots snaps (each
// "vg0-<snap>" over "vg0-<snap>-cow"), as vm.md recorded it.
func lvmLayout(snaps ...string) *fakeDM {
	f := newFake()
	f.add("vg0-base-real", "LVM-vgbase-real", 1, "0 131072 linear 7:0 2048")
	f.add("vg0-base", "LVM-vgbase", 0, "0 131072 snapshot-origin 254:1")
	minor := uint32(2)
	for _, s := range snaps {
		f.add("vg0-"+s+"-cow", "LVM-vg"+s+"-cow", minor, "0 65536 linear 7:0 133120")
		f.add("vg0-"+s, "LVM-vg"+s, minor+1, fmt.Sprintf("0 131072 snapshot 254:1 254:%d P 8", minor))
		minor += 2
	}
	return f
}
