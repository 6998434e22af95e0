package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/merge"
)

// fakeMergeDM is a minimal fake kernel for the merge command: live and
// inactive tables, suspend state, and a queue of status lines per device.
type fakeMergeDM struct {
	devs  map[string]*fakeMergeDev
	calls []string
}

type fakeMergeDev struct {
	uuid           string
	dev            dm.DevNum
	live, inactive []dm.TargetLine
	suspended      bool
	open           int32
	status         []string
}

func (f *fakeMergeDM) add(name, uuid string, minor uint32, table string, status ...string) {
	l, err := dm.ParseTargetLine(table)
	if err != nil {
		panic(err)
	}
	f.devs[name] = &fakeMergeDev{uuid: uuid, dev: dm.DevNum{Major: 254, Minor: minor}, live: []dm.TargetLine{l}, status: status}
}

func (f *fakeMergeDM) get(name string) (*fakeMergeDev, error) {
	if d, ok := f.devs[name]; ok {
		return d, nil
	}
	return nil, &dm.OpError{Op: "x", Device: name, Err: dm.ErrNotFound}
}

func (f *fakeMergeDM) info(name string, d *fakeMergeDev) dm.Info {
	return dm.Info{Name: name, UUID: d.uuid, Dev: d.dev, OpenCount: d.open, Suspended: d.suspended,
		ActivePresent: d.live != nil, InactivePresent: d.inactive != nil}
}

func (f *fakeMergeDM) List() ([]dm.ListEntry, error) {
	var out []dm.ListEntry
	for n, d := range f.devs {
		out = append(out, dm.ListEntry{Name: n, Dev: d.dev, UUID: d.uuid})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeMergeDM) Info(name string) (dm.Info, error) {
	d, err := f.get(name)
	if err != nil {
		return dm.Info{}, err
	}
	return f.info(name, d), nil
}

func (f *fakeMergeDM) Table(name string, _ dm.TableOptions) ([]dm.TargetLine, dm.Info, error) {
	d, err := f.get(name)
	if err != nil {
		return nil, dm.Info{}, err
	}
	return d.live, f.info(name, d), nil
}

func (f *fakeMergeDM) Status(name string) ([]dm.TargetLine, dm.Info, error) {
	d, err := f.get(name)
	if err != nil {
		return nil, dm.Info{}, err
	}
	l := d.live[0]
	p := ""
	if l.Type == dm.TypeSnapshot || l.Type == dm.TypeSnapshotMerge {
		p = "16/65536 16"
	}
	if len(d.status) > 0 {
		p = d.status[0]
		if len(d.status) > 1 {
			d.status = d.status[1:]
		}
	}
	return []dm.TargetLine{{Start: l.Start, Length: l.Length, Type: l.Type, Params: p}}, f.info(name, d), nil
}

func (f *fakeMergeDM) op(op, name string) (*fakeMergeDev, error) {
	f.calls = append(f.calls, op+" "+name)
	return f.get(name)
}

func (f *fakeMergeDM) Load(name string, lines []dm.TargetLine, _ dm.LoadOptions) error {
	d, err := f.op("load", name)
	if err == nil {
		d.inactive = lines
	}
	return err
}

func (f *fakeMergeDM) ClearInactive(name string) error {
	d, err := f.op("clear", name)
	if err == nil {
		d.inactive = nil
	}
	return err
}

func (f *fakeMergeDM) Suspend(name string, _ dm.SuspendOptions) error {
	d, err := f.op("suspend", name)
	if err == nil {
		d.suspended = true
	}
	return err
}

func (f *fakeMergeDM) Resume(name string) (dm.Info, error) {
	d, err := f.op("resume", name)
	if err != nil {
		return dm.Info{}, err
	}
	if d.inactive != nil {
		d.live, d.inactive = d.inactive, nil
	}
	d.suspended = false
	return f.info(name, d), nil
}

func (f *fakeMergeDM) Remove(name string, _ dm.RemoveOptions) error {
	if _, err := f.op("remove", name); err != nil {
		return err
	}
	delete(f.devs, name)
	return nil
}

func (f *fakeMergeDM) WithSuspended(ctx context.Context, name string, opts dm.SuspendOptions, fn func() error) (err error) {
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

func (f *fakeMergeDM) Close() error { return nil }

// rawLayout is an anonymous (dmsetup-style) LVM2-like layout; lvm adds a
// merge started by lvconvert on vg0-base.
func rawLayout(lvm bool, mergeStatus ...string) *fakeMergeDM {
	f := &fakeMergeDM{devs: map[string]*fakeMergeDev{}}
	f.add("base-real", "", 1, "0 131072 linear 7:0 0")
	f.add("base", "", 0, "0 131072 snapshot-origin 254:1")
	f.add("snap-cow", "", 2, "0 65536 linear 7:1 0")
	f.add("snap", "", 3, "0 131072 snapshot 254:1 254:2 P 8", "16464/65536 80")
	f.add("nsnap-cow", "", 4, "0 65536 linear 7:2 0")
	f.add("nsnap", "", 5, "0 131072 snapshot 254:1 254:4 N 8")
	if lvm {
		f.add("vg0-base-real", "LVM-a-real", 11, "0 131072 linear 7:5 2048")
		f.add("vg0-base", "LVM-a", 10, "0 131072 snapshot-merge 254:11 254:12 P 8", mergeStatus...)
		f.add("vg0-snap2-cow", "LVM-b-cow", 12, "0 65536 linear 7:5 133120")
		f.add("vg0-snap2", "LVM-b", 13, "0 131072 error")
	}
	return f
}

func runMergeTest(t *testing.T, f *fakeMergeDM, gopts *globalOptions, opts mergeOptions, tty bool) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	gopts.stdout, gopts.stderr = &out, &errOut
	if opts.Interval == 0 {
		opts.Interval = merge.MinInterval
	}
	env := mergeEnv{open: func() (mergeDM, error) { return f, nil }, resolve: resolveRawSnapshot, isTTY: tty, now: time.Now}
	err := runMerge(context.Background(), opts, gopts, env)
	return out.String(), errOut.String(), err
}

var progressKeys = []string{"done", "eta_seconds", "merged_bytes", "message_type", "origin", "percent",
	"rate_bytes_per_second", "remaining_bytes", "total_bytes"}

// The statuses vm.md recorded during an 8 MiB merge; watched with no
// argument and no TTY, every poll is one JSON line with the stable keys,
// percent never goes back, and a merge_done line ends it.
func TestMergeWatchAllJSONLines(t *testing.T) {
	f := rawLayout(true, "14408/65536 64", "12352/65536 56", "10296/65536 48", "2072/65536 16", "16/65536 16")
	out, _, err := runMergeTest(t, f, &globalOptions{}, mergeOptions{Watch: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 5 progress + 1 done:\n%s", len(lines), out)
	}
	prev := -1.0
	for i, l := range lines[:5] {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, progressKeys) {
			t.Errorf("line %d keys %v, want %v", i, keys, progressKeys)
		}
		if m["message_type"] != "merge_progress" || m["origin"] != "vg0-base" {
			t.Errorf("line %d: %v", i, m)
		}
		if p := m["percent"].(float64); p < prev {
			t.Errorf("line %d: percent %v after %v", i, p, prev)
		} else {
			prev = p
		}
		if m["total_bytes"].(float64) != (14408-64)*512 {
			t.Errorf("line %d total %v", i, m["total_bytes"])
		}
	}
	if prev != 100 {
		t.Errorf("last percent %v", prev)
	}
	var done jsonMergeDone
	if err := json.Unmarshal([]byte(lines[5]), &done); err != nil || done.MessageType != "merge_done" || done.Origin != "vg0-base" || done.Finished {
		t.Errorf("done line %q (%v): LVM2's merge must only be watched", lines[5], err)
	}
	if len(f.calls) != 0 {
		t.Errorf("watching changed something: %q", f.calls)
	}
}

// dmsnap merge snap --json: handover, wait, tidy up.
func TestMergeStartJSON(t *testing.T) {
	f := rawLayout(false)
	out, _, err := runMergeTest(t, f, &globalOptions{JSON: true}, mergeOptions{Target: "snap", Watch: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var done jsonMergeDone
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &done); err != nil {
		t.Fatal(err)
	}
	// nsnap remains, so base is snapshot-origin again and base-real stays.
	want := jsonMergeDone{MessageType: "merge_done", Origin: "base", Finished: true, OriginTarget: "snapshot-origin",
		Removed: []string{"snap", "snap-cow"}, ElapsedSeconds: done.ElapsedSeconds}
	if !reflect.DeepEqual(done, want) {
		t.Errorf("done %+v\nwant %+v", done, want)
	}
	wantCalls := []string{"load base", "load snap", "suspend snap", "suspend base", "resume base", "resume snap",
		"load base", "suspend base", "resume base", "remove snap", "remove snap-cow"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Errorf("calls %q\nwant %q", f.calls, wantCalls)
	}
}

func TestMergeBar(t *testing.T) {
	f := rawLayout(false)
	f.devs["snap"].status = nil
	_, stderr, err := runMergeTest(t, f, &globalOptions{}, mergeOptions{Target: "snap", Watch: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "base 100.0% [") || !strings.Contains(stderr, "done") {
		t.Errorf("bar output %q", stderr)
	}
}

func TestMergeBadInput(t *testing.T) {
	for _, tc := range []struct {
		opts  mergeOptions
		usage bool
		text  string
	}{
		{mergeOptions{Target: "snap", Interval: 10 * time.Millisecond}, true, "must be from 50ms to 1m0s"},
		{mergeOptions{Target: "snap", Interval: 2 * time.Minute}, true, "out of range"},
		{mergeOptions{}, true, "needs a snapshot device"},
		{mergeOptions{Target: "snap", Watch: true, Background: true}, true, "exclude"},
		{mergeOptions{Target: "pool/snap"}, true, "POOL/SNAP"},
		{mergeOptions{Target: "nsnap"}, false, "transient"},
		{mergeOptions{Target: "nope"}, false, "no such device"},
		{mergeOptions{Target: "vg0-snap2"}, false, "LVM2"},
	} {
		f := rawLayout(true)
		_, _, err := runMergeTest(t, f, &globalOptions{}, tc.opts, false)
		if err == nil || !strings.Contains(err.Error(), tc.text) || (exitCode(err) == exitUsage) != tc.usage {
			t.Errorf("%+v: err %v (exit %d), want %q usage=%t", tc.opts, err, exitCode(err), tc.text, tc.usage)
		}
		for _, c := range f.calls {
			t.Errorf("%+v changed something: %s", tc.opts, c)
		}
	}
	// origin open: refused without --force, nothing changed
	f := rawLayout(false)
	f.devs["base"].open = 1
	_, _, err := runMergeTest(t, f, &globalOptions{}, mergeOptions{Target: "snap"}, false)
	if !errors.Is(err, merge.ErrOriginOpen) || !strings.Contains(err.Error(), "--force") || len(f.calls) != 0 {
		t.Errorf("origin open: %v, calls %q", err, f.calls)
	}
}

func TestMergeBackground(t *testing.T) {
	f := rawLayout(false)
	out, _, err := runMergeTest(t, f, &globalOptions{}, mergeOptions{Target: "snap", Background: true}, false)
	if err != nil || !strings.Contains(out, "dmsnap merge --watch base") {
		t.Fatalf("%q, %v", out, err)
	}
	if got := f.devs["base"].live[0].Type; got != dm.TypeSnapshotMerge {
		t.Fatalf("origin %s", got)
	}
	// Re-attach by origin name: watches, then tidies the raw layout.
	out, _, err = runMergeTest(t, f, &globalOptions{}, mergeOptions{Target: "base", Watch: true}, false)
	if err != nil || !strings.Contains(out, `"finished":true`) {
		t.Fatalf("re-attach: %q, %v", out, err)
	}
	if _, ok := f.devs["snap"]; ok {
		t.Error("old snapshot not removed")
	}
}
