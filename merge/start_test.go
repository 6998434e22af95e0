package merge

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// wantHandover is the kernel's required order (vm.md pitfall 7; LVM2
// lvconvert --merge).
var wantHandover = []string{
	"load vg0-base", "load vg0-snap", "suspend vg0-snap", "suspend vg0-base",
	"resume vg0-base", "resume vg0-snap",
}

func TestStartOrder(t *testing.T) {
	f := lvmLayout("snap", "other")
	var steps []Step
	m, err := Start(context.Background(), f, "vg0-snap", StartOptions{OnStep: func(s Step) error {
		steps = append(steps, s)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.mutating(); !reflect.DeepEqual(got, wantHandover) {
		t.Errorf("calls:\n got %q\nwant %q", got, wantHandover)
	}
	wantSteps := []Step{StepLoadMerge, StepLoadError, StepSuspendSnapshot, StepSuspendOrigin, StepResumeOrigin, StepResumeSnapshot}
	if !reflect.DeepEqual(steps, wantSteps) {
		t.Errorf("steps %q, want %q", steps, wantSteps)
	}
	f.checkIdle(t)
	if got, want := f.liveTable("vg0-base"), "0 131072 snapshot-merge 254:1 254:2 P 8"; got != want {
		t.Errorf("origin table %q, want %q", got, want)
	}
	if got, want := f.liveTable("vg0-snap"), "0 131072 error"; got != want {
		t.Errorf("snapshot table %q, want %q", got, want)
	}
	want := Merge{Owner: OwnerLVM2, Origin: "vg0-base", Real: "vg0-base-real", RealDev: dm.DevNum{Major: 254, Minor: 1},
		Snapshot: "vg0-snap", COW: "vg0-snap-cow", COWDev: dm.DevNum{Major: 254, Minor: 2},
		Target: dm.SnapshotMerge{Origin: dm.DevNum{Major: 254, Minor: 1}, COW: dm.DevNum{Major: 254, Minor: 2}, Store: dm.Persistent, ChunkSectors: 8}}
	if m != want {
		t.Errorf("merge %+v\nwant %+v", m, want)
	}
	// The other snapshot is untouched.
	if got := f.liveTable("vg0-other"); got != "0 131072 snapshot 254:1 254:4 P 8" {
		t.Errorf("other snapshot %q", got)
	}
	// FindMerges sees it, with the old snapshot device found by the
	// naming convention (it carries the error target now).
	ms, err := FindMerges(f)
	if err != nil || len(ms) != 1 || ms[0] != want {
		t.Errorf("FindMerges = %+v, %v; want [%+v]", ms, err, want)
	}
}

// TestStartRollback injects a failure at each step (kernel call and hook)
// and checks that nothing is left suspended or loaded, and the tables are
// unchanged.
func TestStartRollback(t *testing.T) {
	for i, call := range wantHandover[:5] {
		for _, viaHook := range []bool{false, true} {
			name := call
			if viaHook {
				name = "hook " + call
			}
			t.Run(name, func(t *testing.T) {
				f := lvmLayout("snap")
				before := map[string]string{}
				for n := range f.devs {
					before[n] = f.liveTable(n)
				}
				opts := StartOptions{}
				if viaHook {
					opts.OnStep = func(s Step) error {
						if s == []Step{StepLoadMerge, StepLoadError, StepSuspendSnapshot, StepSuspendOrigin, StepResumeOrigin}[i] {
							return errInjected
						}
						return nil
					}
				} else {
					f.fail[call] = errInjected
				}
				if call == "resume vg0-base" && !viaHook {
					// A failing preresume leaves the new table live and
					// the device suspended.
					swapped := false
					f.onCall = func(c string) {
						if c != "resume vg0-base" {
							return
						}
						if !swapped {
							d := f.devs["vg0-base"]
							d.live, d.inactive = d.inactive, nil
							swapped = true
							return
						}
						delete(f.fail, c) // the rollback's own resume works
					}
				}
				_, err := Start(context.Background(), f, "vg0-snap", opts)
				if !errors.Is(err, errInjected) {
					t.Fatalf("err = %v, want the injected failure", err)
				}
				f.checkIdle(t)
				for n, tab := range before {
					if got := f.liveTable(n); got != tab {
						t.Errorf("%s table %q, want %q", n, got, tab)
					}
				}
				// The origin's inactive table is cleared before the
				// snapshot's, and both before any resume.
				calls := strings.Join(f.mutating(), ",")
				if ci, cs := strings.Index(calls, "clear vg0-base"), strings.Index(calls, "clear vg0-snap"); ci >= 0 && cs >= 0 && ci > cs {
					t.Errorf("snapshot cleared before origin: %s", calls)
				}
				if ri, cs := strings.Index(calls, "resume vg0-snap"), strings.Index(calls, "clear vg0-snap"); ri >= 0 && cs >= 0 && ri < cs {
					t.Errorf("snapshot resumed before its error table was cleared: %s", calls)
				}
			})
		}
	}
}

// After the handover, a failing snapshot resume is reported but the merge
// runs; Recover then completes the handover.
func TestStartResumeSnapshotFails(t *testing.T) {
	f := lvmLayout("snap")
	f.fail["resume vg0-snap"] = errInjected
	_, err := Start(context.Background(), f, "vg0-snap", StartOptions{})
	if !errors.Is(err, ErrHandoverIncomplete) || !errors.Is(err, errInjected) {
		t.Fatalf("err = %v", err)
	}
	if got := f.liveTable("vg0-base"); !strings.Contains(got, "snapshot-merge") {
		t.Fatalf("origin %q, want snapshot-merge", got)
	}
	delete(f.fail, "resume vg0-snap")
	if err := Recover(context.Background(), f, "vg0-base"); err != nil {
		t.Fatal(err)
	}
	f.checkIdle(t)
	if got := f.liveTable("vg0-snap"); got != "0 131072 error" {
		t.Errorf("old snapshot %q, want error", got)
	}
}

func TestRecoverBeforeHandover(t *testing.T) {
	f := lvmLayout("snap")
	// The state a kill -9 right after "suspend vg0-base" leaves (no
	// deferred rollback runs):
	f.devs["vg0-base"].inactive = []dm.TargetLine{{Length: 131072, Type: "snapshot-merge", Params: "254:1 254:2 P 8"}}
	f.devs["vg0-snap"].inactive = []dm.TargetLine{{Length: 131072, Type: "error"}}
	f.devs["vg0-base"].suspended = true
	f.devs["vg0-snap"].suspended = true
	if _, err := Start(context.Background(), f, "vg0-snap", StartOptions{}); !errors.Is(err, ErrNotIdle) {
		t.Fatalf("Start on leftovers: %v, want ErrNotIdle", err)
	}
	f.calls = nil
	if err := Recover(context.Background(), f, "vg0-snap"); err != nil {
		t.Fatal(err)
	}
	f.checkIdle(t)
	want := []string{"clear vg0-base", "clear vg0-snap", "resume vg0-base", "resume vg0-snap"}
	if got := f.mutating(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if got := f.liveTable("vg0-snap"); got != "0 131072 snapshot 254:1 254:2 P 8" {
		t.Errorf("snapshot %q", got)
	}
}

func TestStartRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(f *fakeDM)
		snap  string
		want  error
		text  string
	}{
		{"transient", func(f *fakeDM) { f.devs["vg0-snap"].live[0].Params = "254:1 254:2 N 8" }, "vg0-snap", ErrTransient, "persistent"},
		{"invalid", func(f *fakeDM) { f.devs["vg0-snap"].status = []string{"Invalid"} }, "vg0-snap", ErrInvalidated, "unable to merge invalidated snapshot"},
		{"overflow", func(f *fakeDM) { f.devs["vg0-snap"].status = []string{"Overflow"} }, "vg0-snap", ErrOverflow, "reactivate"},
		{"origin open", func(f *fakeDM) { f.devs["vg0-base"].open = 1 }, "vg0-snap", ErrOriginOpen, "next activation"},
		{"snapshot open", func(f *fakeDM) { f.devs["vg0-snap"].open = 2 }, "vg0-snap", ErrSnapshotOpen, "open 2 times"},
		{"no such device", func(*fakeDM) {}, "vg0-nope", ErrNotSnapshot, "no such"},
		{"origin given", func(*fakeDM) {}, "vg0-base", ErrNotSnapshot, "not a snapshot device"},
		{"cow given", func(*fakeDM) {}, "vg0-snap-cow", ErrNotSnapshot, "not a snapshot device"},
		{"already merging", func(f *fakeDM) {
			f.devs["vg0-base"].live[0] = dm.TargetLine{Length: 131072, Type: "snapshot-merge", Params: "254:1 254:4 P 8"}
		}, "vg0-snap", ErrAlreadyMerging, "another snapshot"},
		{"inactive leftover", func(f *fakeDM) { f.devs["vg0-base"].inactive = f.devs["vg0-base"].live }, "vg0-snap", ErrNotIdle, "inactive table true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := lvmLayout("snap", "other")
			tc.setup(f)
			_, err := Start(context.Background(), f, tc.snap, StartOptions{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.text)
			}
			if got := f.mutating(); len(got) != 0 {
				t.Errorf("refusal changed something: %q", got)
			}
		})
	}
	// Force overrides open devices.
	f := lvmLayout("snap")
	f.devs["vg0-base"].open = 1
	if _, err := Start(context.Background(), f, "vg0-snap", StartOptions{Force: true}); err != nil {
		t.Fatalf("forced: %v", err)
	}
}

func TestStartCancelled(t *testing.T) {
	f := lvmLayout("snap")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, f, "vg0-snap", StartOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if got := f.mutating(); len(got) != 0 {
		t.Errorf("changed: %q", got)
	}
}
