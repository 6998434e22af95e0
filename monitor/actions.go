package monitor

import (
	"context"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/pool"
)

// PoolActions implements [Actions] with package pool, the code paths of
// `dmsnap extend` and `dmsnap remove`: each call opens the pool under its
// exclusive lock and commits the metadata.
type PoolActions struct {
	Host *pool.Host
	// Warn gets the warnings of loading a pool; nil drops them.
	Warn func(msgs ...string)
	// Logf gets the snapshot operations' step log; nil drops it.
	Logf func(format string, args ...any)
}

func (a *PoolActions) session(name string) (*pool.Session, error) {
	s, err := a.Host.Session(name, pool.SessionOptions{Mode: lock.Exclusive, Kernel: true, AttachPVs: true, Warn: a.Warn})
	if err != nil {
		return nil, err
	}
	s.Logf = a.Logf
	return s, nil
}

// Autoextend implements [Actions].
func (a *PoolActions) Autoextend(ctx context.Context, poolName, name string, p Policy) (Step, error) {
	s, err := a.session(poolName)
	if err != nil {
		return Step{}, err
	}
	defer s.Close()
	pl := s.Store.Pool
	v := pl.Volume(name)
	if v == nil || pl.SnapshotByCOW(v.UUID) == nil {
		return Step{}, fmt.Errorf("snapshot %s/%s: %w", poolName, name, lvm.ErrNotFound)
	}
	lines, _, err := s.Kernel.Status(lvm.DMName(poolName, name, lvm.LayerNone))
	if err != nil {
		return Step{}, err
	}
	if len(lines) != 1 {
		return Step{}, fmt.Errorf("snapshot %s/%s: %d status lines", poolName, name, len(lines))
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return Step{}, err
	}
	step := Step{
		Plan:      PlanGrowth(p, st, v.Extents(), pl.ExtentSize, pl.FreeExtents()),
		FromBytes: pl.Sectors(v.Extents()).Bytes(), FreeBytes: pl.Sectors(pl.FreeExtents()).Bytes(),
	}
	step.ToBytes = step.FromBytes
	if step.Plan.Grow == 0 {
		return step, nil
	}
	to, err := s.ExtendSnapshot(ctx, name, step.Plan.Grow)
	if err != nil {
		return step, err
	}
	step.ToBytes = to
	return step, nil
}

// Remove implements [Actions].
func (a *PoolActions) Remove(ctx context.Context, poolName, name string) error {
	s, err := a.session(poolName)
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.RemoveSnapshot(ctx, name, false)
	return err
}
