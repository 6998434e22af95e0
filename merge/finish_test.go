package merge

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func startedMerge(t *testing.T, snaps ...string) (*fakeDM, Merge) {
	t.Helper()
	f := lvmLayout(snaps...)
	m, err := Start(context.Background(), f, "vg0-"+snaps[0], StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	return f, m
}

func TestFinishLastSnapshot(t *testing.T) {
	f, m := startedMerge(t, "snap")
	f.devs["vg0-base"].status = []string{"2072/65536 16"}
	if _, err := Finish(context.Background(), f, m); !errors.Is(err, ErrNotDone) {
		t.Fatalf("finish while merging: %v", err)
	}
	if got := f.mutating(); len(got) != 0 {
		t.Fatalf("changed while not done: %q", got)
	}
	f.devs["vg0-base"].status = []string{"16/65536 16"}
	res, err := Finish(context.Background(), f, m)
	if err != nil {
		t.Fatal(err)
	}
	want := FinishResult{Origin: "vg0-base", OriginTarget: "linear", Removed: []string{"vg0-snap", "vg0-snap-cow", "vg0-base-real"},
		SnapshotsLeft: []string{}, COWDev: m.COWDev}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result %+v\nwant %+v", res, want)
	}
	wantCalls := []string{"load vg0-base", "suspend vg0-base", "resume vg0-base", "remove vg0-snap", "remove vg0-snap-cow", "remove vg0-base-real"}
	if got := f.mutating(); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("calls %q\nwant %q", got, wantCalls)
	}
	if got := f.liveTable("vg0-base"); got != "0 131072 linear 7:0 2048" {
		t.Errorf("origin %q", got)
	}
	if len(f.devs) != 1 {
		t.Errorf("devices left: %v", f.devs)
	}
	f.checkIdle(t)
	// Idempotent: once more does nothing.
	f.calls = nil
	if res, err := Finish(context.Background(), f, m); err != nil || len(res.Removed) != 0 || len(f.mutating()) != 0 {
		t.Errorf("second Finish: %+v, %v, calls %q", res, err, f.mutating())
	}
}

func TestFinishOtherSnapshotRemains(t *testing.T) {
	f, m := startedMerge(t, "snap", "other")
	f.devs["vg0-base"].status = []string{"16/65536 16"}
	res, err := Finish(context.Background(), f, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.OriginTarget != "snapshot-origin" || !reflect.DeepEqual(res.Removed, []string{"vg0-snap", "vg0-snap-cow"}) ||
		!reflect.DeepEqual(res.SnapshotsLeft, []string{"vg0-other"}) {
		t.Errorf("result %+v", res)
	}
	if got := f.liveTable("vg0-base"); got != "0 131072 snapshot-origin 254:1" {
		t.Errorf("origin %q", got)
	}
	if f.devs["vg0-base-real"] == nil || f.devs["vg0-other"] == nil || f.devs["vg0-other-cow"] == nil {
		t.Error("real or the other snapshot removed")
	}
}

// A crash (here: a failing remove) half-way; Finish again completes.
func TestFinishResumesAfterCrash(t *testing.T) {
	f, m := startedMerge(t, "snap")
	f.devs["vg0-base"].status = []string{"16/65536 16"}
	f.fail["remove vg0-snap-cow"] = errInjected
	res, err := Finish(context.Background(), f, m)
	if !errors.Is(err, errInjected) || !reflect.DeepEqual(res.Removed, []string{"vg0-snap"}) {
		t.Fatalf("first Finish: %+v, %v", res, err)
	}
	delete(f.fail, "remove vg0-snap-cow")
	f.calls = nil
	res, err = Finish(context.Background(), f, m)
	if err != nil || !reflect.DeepEqual(res.Removed, []string{"vg0-snap-cow", "vg0-base-real"}) || res.OriginTarget != "linear" {
		t.Fatalf("second Finish: %+v, %v", res, err)
	}
	if got := f.mutating(); !reflect.DeepEqual(got, []string{"remove vg0-snap-cow", "remove vg0-base-real"}) {
		t.Errorf("calls %q", got)
	}
}

// A failed swap leaves no inactive table and nothing suspended.
func TestFinishSwapFails(t *testing.T) {
	f, m := startedMerge(t, "snap")
	f.devs["vg0-base"].status = []string{"16/65536 16"}
	f.fail["suspend vg0-base"] = errInjected
	if _, err := Finish(context.Background(), f, m); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v", err)
	}
	f.checkIdle(t)
	if len(f.devs) != 4 {
		t.Errorf("removed something: %v", f.devs)
	}
}

// A device that took the old name meanwhile is not removed.
func TestFinishRefusesForeignDevice(t *testing.T) {
	f, m := startedMerge(t, "snap")
	f.devs["vg0-base"].status = []string{"16/65536 16"}
	f.devs["vg0-snap"].live[0].Type, f.devs["vg0-snap"].live[0].Params = "linear", "7:5 0"
	if _, err := Finish(context.Background(), f, m); err == nil {
		t.Fatal("removed a foreign device")
	}
	if f.devs["vg0-snap"] == nil {
		t.Error("vg0-snap removed")
	}
}
