package pool

import (
	"context"
	"fmt"
	"time"

	"github.com/dmsnap/dmsnap/lvm"
)

// RemovedSnapshot is what RemoveSnapshot did.
type RemovedSnapshot struct {
	UUID       lvm.UUID
	FreedBytes uint64
	// Freed is the freed size, formatted like the pool's other sizes.
	Freed string
	// Suspended is how long the origin was suspended.
	Suspended time.Duration
}

// RemoveSnapshot removes the snapshot name of the session's pool: its
// devices, then its metadata. The session must be exclusive with PVs
// attached and the kernel open.
func (s *Session) RemoveSnapshot(ctx context.Context, name string, force bool) (RemovedSnapshot, error) {
	p := s.Store.Pool
	v := p.Volume(name)
	res, err := lvm.RemoveSnapshotDevices(ctx, s.Store, s.SnapshotEnv(), name, force)
	if err != nil {
		return RemovedSnapshot{}, err
	}
	return RemovedSnapshot{
		UUID: v.UUID, FreedBytes: p.Sectors(v.Extents()).Bytes(), Freed: lvm.FormatSize(p.Sectors(v.Extents())),
		Suspended: res.Suspended,
	}, nil
}

// ExtendSnapshot grows the COW of snapshot name by grow extents and
// returns its new size in bytes.
func (s *Session) ExtendSnapshot(ctx context.Context, name string, grow lvm.ExtentCount) (uint64, error) {
	if _, err := lvm.ExtendSnapshot(ctx, s.Store, s.SnapshotEnv(), name, grow); err != nil {
		return 0, err
	}
	nv := s.Store.Pool.Volume(name)
	if nv == nil {
		return 0, fmt.Errorf("snapshot %s/%s vanished from the metadata while extending: %w", s.Name, name, lvm.ErrNotFound)
	}
	return s.Store.Pool.Sectors(nv.Extents()).Bytes(), nil
}
