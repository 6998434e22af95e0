package monitor

import (
	"errors"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/lvm"
)

// Auto-extend limits, as LVM2's snapshot_autoextend_threshold and
// snapshot_autoextend_percent (lvm.conf(5)): a threshold of 100 turns
// auto-extension off; LVM2 treats thresholds below 50 as 50, dmsnap
// refuses them.
const (
	MinThreshold     = 50
	MaxThreshold     = 100
	MinPercent       = 1
	MaxPercent       = 1000
	DefaultThreshold = 100
	DefaultPercent   = 20
	// maxSteps bounds the compounding in [PlanGrowth].
	maxSteps = 64
)

// ErrBadPolicy is returned by [Policy.Validate].
var ErrBadPolicy = errors.New("invalid auto-extend policy")

// Policy is the auto-extend policy of a pool: when a snapshot's usage
// (LVM's Snap%) reaches Threshold percent, grow its COW by Percent percent
// of its current size, repeatedly until the usage is below the threshold.
type Policy struct {
	Threshold int `json:"autoextend_threshold"`
	Percent   int `json:"autoextend_percent"`
}

// DefaultPolicy is LVM2's default: off (threshold 100), 20% steps.
var DefaultPolicy = Policy{Threshold: DefaultThreshold, Percent: DefaultPercent}

// Validate checks the ranges; the error wraps [ErrBadPolicy] and names
// the valid range.
func (p Policy) Validate() error {
	if p.Threshold < MinThreshold || p.Threshold > MaxThreshold {
		return fmt.Errorf("autoextend threshold %d%%: want %d to %d (100 turns auto-extend off): %w",
			p.Threshold, MinThreshold, MaxThreshold, ErrBadPolicy)
	}
	if p.Percent < MinPercent || p.Percent > MaxPercent {
		return fmt.Errorf("autoextend percent %d%%: want %d to %d: %w", p.Percent, MinPercent, MaxPercent, ErrBadPolicy)
	}
	return nil
}

// Enabled reports whether the policy extends at all (threshold below 100).
func (p Policy) Enabled() bool { return p.Threshold < MaxThreshold }

// Crossed reports whether st, an active snapshot's status, is at or above
// the threshold of an enabled policy.
func (p Policy) Crossed(st dm.SnapshotStatus) bool {
	if !p.Enabled() || st.State != dm.SnapshotActive || st.Total == 0 {
		return false
	}
	return st.Percent() >= float64(p.Threshold)
}

// Plan is the outcome of [PlanGrowth].
type Plan struct {
	// Need is the growth, in extents, that brings the usage below the
	// threshold; Grow is what the pool's free extents allow (Grow <=
	// Need).
	Need, Grow lvm.ExtentCount
	// NoRoom is set when Grow < Need: the pool is short of space and the
	// snapshot stays above its threshold (or, with Grow 0, unchanged).
	NoRoom bool
}

// PlanGrowth computes the growth of a COW of cowExtents extents of
// extentSize whose kernel status is st, under p, with free extents left in
// the pool. Each step adds Percent of the size reached so far, rounded up
// to whole extents (at least one), until Allocated is below Threshold
// percent of the new size. It plans nothing when the threshold is not
// crossed.
func PlanGrowth(p Policy, st dm.SnapshotStatus, cowExtents lvm.ExtentCount, extentSize dm.Sector, free lvm.ExtentCount) Plan {
	if !p.Crossed(st) || extentSize == 0 {
		return Plan{}
	}
	size := cowExtents
	for i := 0; i < maxSteps; i++ {
		add := (size*lvm.ExtentCount(p.Percent) + 99) / 100
		if add == 0 {
			add = 1
		}
		size += add
		total := st.Total + dm.Sector(size-cowExtents)*extentSize
		if uint64(st.Allocated)*100 < uint64(p.Threshold)*uint64(total) {
			break
		}
	}
	pl := Plan{Need: size - cowExtents}
	pl.Grow = min(pl.Need, free)
	pl.NoRoom = pl.Grow < pl.Need
	return pl
}
