package merge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
)

// observedMerge is the status sequence of an 8 MiB merge on 6.1 (vm.md,
// "merge progress", 32 MiB COW, chunk 8), some polls left out.
var observedMerge = []string{
	"14408/65536 64", "12352/65536 56", "10296/65536 48", "8240/65536 40",
	"6184/65536 32", "4128/65536 24", "2072/65536 16", "16/65536 16",
}

// fakeClock advances by step at each reading.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Unix(1e9, 0)
	return func() time.Time { t = t.Add(step); return t }
}

func mergingFake(status ...string) *fakeDM {
	f := lvmLayout()
	f.add("vg0-snap-cow", "LVM-vgsnap-cow", 2, "0 65536 linear 7:0 133120")
	f.add("vg0-snap", "LVM-vgsnap", 3, "0 131072 error")
	f.devs["vg0-base"].live[0] = dm.TargetLine{Length: 131072, Type: dm.TypeSnapshotMerge, Params: "254:1 254:2 P 8"}
	f.devs["vg0-base"].status = status
	return f
}

func TestWatchObservedSequence(t *testing.T) {
	f := mergingFake(observedMerge...)
	var reps []Report
	all, err := watchAll(context.Background(), f, []string{"vg0-base"}, MinInterval,
		ProgressFunc(func(r Report) { reps = append(reps, r) }), fakeClock(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got := all[0]
	if len(reps) != len(observedMerge) {
		t.Fatalf("%d reports, want one per poll (%d)", len(reps), len(observedMerge))
	}
	const total = 14408 - 64
	for i, r := range reps {
		if r.Origin != "vg0-base" || r.TotalSectors != total {
			t.Errorf("report %d: %+v", i, r)
		}
		if i > 0 {
			p := reps[i-1]
			if r.RemainingSectors > p.RemainingSectors || r.MergedBytes < p.MergedBytes || r.Percent() < p.Percent() {
				t.Errorf("report %d not monotonic: %+v after %+v", i, r, p)
			}
		}
		if r.MergedBytes != (total - r.RemainingSectors).Bytes() {
			t.Errorf("report %d: merged %d, remaining %d", i, r.MergedBytes, r.RemainingSectors)
		}
		if r.Done != (i == len(reps)-1) {
			t.Errorf("report %d: done %t", i, r.Done)
		}
	}
	if reps[1].RemainingSectors != 12352-56 || reps[1].Rate <= 0 || reps[1].ETA <= 0 {
		t.Errorf("second report %+v: want remaining %d, a rate and an ETA", reps[1], 12352-56)
	}
	// 2056 sectors merged in 100 ms.
	if want := float64((2048+8)*512) / 0.1; reps[1].Rate < want*0.99 || reps[1].Rate > want*1.01 {
		t.Errorf("rate %f, want %f", reps[1].Rate, want)
	}
	if !got.Done || got.RemainingSectors != 0 || got.Percent() != 100 || got.ETA != 0 {
		t.Errorf("final %+v", got)
	}
	// One status ioctl per tick, nothing else.
	for _, c := range f.calls {
		if c != "status vg0-base" {
			t.Errorf("unexpected call %q", c)
		}
	}
}

// A merge whose remaining count goes up (it cannot in the kernel, but
// monotonic reports must not depend on it) keeps reports monotonic.
func TestWatchMonotonicClamp(t *testing.T) {
	f := mergingFake("1000/65536 16", "900/65536 16", "950/65536 16", "16/65536 16")
	var reps []Report
	if _, err := watchAll(context.Background(), f, []string{"vg0-base"}, MinInterval,
		ProgressFunc(func(r Report) { reps = append(reps, r) }), fakeClock(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(reps); i++ {
		if reps[i].RemainingSectors > reps[i-1].RemainingSectors {
			t.Errorf("report %d went back: %d > %d", i, reps[i].RemainingSectors, reps[i-1].RemainingSectors)
		}
	}
}

// A merge that is still being handed over reads "0/N 0" (allocated ==
// metadata, but no store yet): it is not done.
func TestWatchHandoverIsNotDone(t *testing.T) {
	f := mergingFake("0/65536 0", "0/65536 0", "8240/65536 40", "16/65536 16")
	var reps []Report
	if _, err := watchAll(context.Background(), f, []string{"vg0-base"}, MinInterval,
		ProgressFunc(func(r Report) { reps = append(reps, r) }), fakeClock(time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 4 {
		t.Fatalf("%d reports, want 4 (done only at the last poll): %+v", len(reps), reps)
	}
	for i, r := range reps[:3] {
		if r.Done {
			t.Errorf("report %d done during the handover: %+v", i, r)
		}
	}
	if !reps[3].Done || reps[3].TotalSectors != 8240-40 {
		t.Errorf("last report %+v, want done with total 8200", reps[3])
	}
}

// lvconvert finishes the merge itself: the table turns linear between two
// polls, and the watch ends done.
func TestWatchTableSwitchedBack(t *testing.T) {
	f := mergingFake("8240/65536 40")
	n := 0
	f.onCall = func(c string) {
		if n++; n == 2 {
			f.devs["vg0-base"].live[0] = dm.TargetLine{Length: 131072, Type: dm.TypeLinear, Params: "7:0 2048"}
		}
	}
	r, err := Watch(context.Background(), f, "vg0-base", MinInterval, nil)
	if err != nil || !r.Done || r.RemainingSectors != 0 || r.TotalSectors != 8240-40 {
		t.Fatalf("Watch = %+v, %v", r, err)
	}
}

func TestWatchErrors(t *testing.T) {
	f := mergingFake("8240/65536 40", "Merge failed")
	_, err := Watch(context.Background(), f, "vg0-base", MinInterval, nil)
	if !errors.Is(err, ErrMergeFailed) {
		t.Errorf("merge failed: %v", err)
	}
	f = lvmLayout("snap")
	if _, err := Watch(context.Background(), f, "vg0-base", MinInterval, nil); !errors.Is(err, ErrNotMerging) {
		t.Errorf("not merging: %v", err)
	}
	if _, err := Watch(context.Background(), f, "vg0-base", time.Millisecond, nil); err == nil {
		t.Error("interval 1ms accepted")
	}
	f = mergingFake("8240/65536 40")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	if r, err := Watch(ctx, f, "vg0-base", MinInterval, nil); !errors.Is(err, context.DeadlineExceeded) || r.Origin != "vg0-base" {
		t.Errorf("cancelled: %+v, %v", r, err)
	}
	f = mergingFake("8240/65536 40", "Invalid")
	if _, err := Watch(context.Background(), f, "vg0-base", MinInterval, nil); !errors.Is(err, ErrInvalidated) {
		t.Errorf("invalid: %v", err)
	}
}

func TestCheckInterval(t *testing.T) {
	for d, ok := range map[time.Duration]bool{49 * time.Millisecond: false, 50 * time.Millisecond: true, time.Minute: true, time.Minute + 1: false} {
		if err := CheckInterval(d); (err == nil) != ok {
			t.Errorf("CheckInterval(%v) = %v", d, err)
		}
	}
}
