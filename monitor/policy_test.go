package monitor

import (
	"errors"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/lvm"
)

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{{50, 1}, {100, 20}, {70, 1000}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{49, 20}, "want 50 to 100"},
		{Policy{101, 20}, "want 50 to 100"},
		{Policy{70, 0}, "want 1 to 1000"},
		{Policy{70, 1001}, "want 1 to 1000"},
	} {
		err := tc.p.Validate()
		if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}

func active(alloc, total dm.Sector) dm.SnapshotStatus {
	return dm.SnapshotStatus{State: dm.SnapshotActive, Allocated: alloc, Total: total, Metadata: 16, HasMetadata: true}
}

func TestPlanGrowth(t *testing.T) {
	const ext = dm.Sector(8192) // 4 MiB extents
	p := Policy{Threshold: 60, Percent: 50}
	for _, tc := range []struct {
		name  string
		p     Policy
		st    dm.SnapshotStatus
		cow   lvm.ExtentCount
		free  lvm.ExtentCount
		want  Plan
		cross bool
	}{
		{"below", p, active(4000, ext), 1, 10, Plan{}, false},
		{"off", Policy{100, 50}, active(8000, ext), 1, 10, Plan{}, false},
		{"invalid", p, dm.SnapshotStatus{State: dm.SnapshotInvalid}, 1, 10, Plan{}, false},
		// 61% of one extent: +50% of 1 extent rounds up to 1 extent;
		// 4997/16384 = 30% < 60%.
		{"one step rounded up", p, active(4997, ext), 1, 10, Plan{Need: 1, Grow: 1}, true},
		// 10 extents at 95%: 10 -> 15 (63%) -> 23 (41%).
		{"compounding", p, active(77824, 10*ext), 10, 100, Plan{Need: 13, Grow: 13}, true},
		{"partial", p, active(77824, 10*ext), 10, 4, Plan{Need: 13, Grow: 4, NoRoom: true}, true},
		{"no room", p, active(77824, 10*ext), 10, 0, Plan{Need: 13, Grow: 0, NoRoom: true}, true},
		{"exactly at threshold", p, active(6000, 10000), 1, 10, Plan{Need: 1, Grow: 1}, true},
		{"full", p, active(ext, ext), 1, 10, Plan{Need: 1, Grow: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Crossed(tc.st); got != tc.cross {
				t.Errorf("Crossed = %v, want %v", got, tc.cross)
			}
			got := PlanGrowth(tc.p, tc.st, tc.cow, ext, tc.free)
			if got != tc.want {
				t.Errorf("PlanGrowth = %+v, want %+v", got, tc.want)
			}
			if got.Grow > 0 && !got.NoRoom {
				total := tc.st.Total + dm.Sector(got.Grow)*ext
				if uint64(tc.st.Allocated)*100 >= uint64(tc.p.Threshold)*uint64(total) {
					t.Errorf("after growth still at %d/%d", tc.st.Allocated, total)
				}
			}
		})
	}
}

func TestSplitDMName(t *testing.T) {
	for _, tc := range []struct{ in, pool, vol string }{
		{"vg0-snap", "vg0", "snap"},
		{"my--pool-my--snap", "my-pool", "my-snap"},
		{"a-b-cow", "a", "b-cow"},
	} {
		p, v, ok := splitDMName(tc.in)
		if !ok || p != tc.pool || v != tc.vol {
			t.Errorf("%q: %q %q %v", tc.in, p, v, ok)
		}
	}
	for _, in := range []string{"nodash", "-x", "x-", "a--b"} {
		if _, _, ok := splitDMName(in); ok {
			t.Errorf("%q split", in)
		}
	}
}
