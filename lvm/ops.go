package lvm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// NewPool returns an empty, uncommitted pool description with a fresh
// UUID. PVs are added by [Create] and [Store.Extend].
func NewPool(name string, extentSize dm.Sector) (*Pool, error) {
	if err := ValidateName("pool", name); err != nil {
		return nil, err
	}
	if extentSize == 0 {
		extentSize = DefaultExtentSize
	}
	if err := CheckExtentSize(extentSize); err != nil {
		return nil, err
	}
	return &Pool{Name: name, UUID: NewUUID(), ExtentSize: extentSize}, nil
}

func (p *Pool) checkNewName(name string) error {
	if err := ValidateName("volume", name); err != nil {
		return err
	}
	if err := checkDMName(p.Name, name); err != nil {
		return err
	}
	if p.Volume(name) != nil {
		return fmt.Errorf("volume %s/%s: %w", p.Name, name, ErrExists)
	}
	return nil
}

func (p *Pool) findVolume(name string) (*Volume, error) {
	v := p.Volume(name)
	if v == nil {
		return nil, fmt.Errorf("volume %s/%s: %w", p.Name, name, ErrNotFound)
	}
	return v, nil
}

// AddVolume returns a copy of p with a new plain volume of n extents.
// Errors wrap [ErrBadName], [ErrExists] or [ErrNoSpace].
func (p *Pool) AddVolume(name string, n ExtentCount) (*Pool, error) {
	return p.addVolume(name, KindPlain, n)
}

func (p *Pool) addVolume(name string, kind VolumeKind, n ExtentCount) (*Pool, error) {
	if err := p.checkNewName(name); err != nil {
		return nil, err
	}
	segs, err := p.Allocate(n)
	if err != nil {
		return nil, fmt.Errorf("volume %s/%s: %w", p.Name, name, err)
	}
	q := p.Clone()
	q.Volumes = append(q.Volumes, Volume{Name: name, UUID: NewUUID(), Kind: kind, Segments: segs})
	return q, nil
}

// RemoveVolume returns a copy of p without the volume. Removing a
// snapshot's COW volume removes the snapshot (see [Pool.RemoveSnapshot]);
// an origin with snapshots is refused with [ErrInUse].
func (p *Pool) RemoveVolume(name string) (*Pool, error) {
	v, err := p.findVolume(name)
	if err != nil {
		return nil, err
	}
	switch v.Kind {
	case KindSnapshotCOW:
		return p.RemoveSnapshot(name)
	case KindOrigin:
		var names []string
		for _, s := range p.SnapshotsOf(v.UUID) {
			names = append(names, p.VolumeByUUID(s.COW).Name)
		}
		return nil, fmt.Errorf("volume %s/%s has snapshots %s: %w", p.Name, name, strings.Join(names, ", "), ErrInUse)
	}
	q := p.Clone()
	q.Volumes = slices.DeleteFunc(q.Volumes, func(w Volume) bool { return w.UUID == v.UUID })
	return q, nil
}

// ExtendVolume returns a copy of p in which the volume has n more extents:
// continuing its last segment in place when the extents after it are free,
// then allocated as by [Pool.Allocate].
func (p *Pool) ExtendVolume(name string, n ExtentCount) (*Pool, error) {
	if _, err := p.findVolume(name); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("extend %s/%s: zero extents: %w", p.Name, name, ErrBadSize)
	}
	if free := p.FreeExtents(); free < n {
		return nil, fmt.Errorf("extend %s/%s: %w", p.Name, name, &NoSpaceError{Pool: p.Name, Need: n, Free: free, ExtentSize: p.ExtentSize})
	}
	q := p.Clone()
	v := q.Volume(name)
	last := &v.Segments[len(v.Segments)-1]
	end := last.Start + ExtentIndex(last.Count)
	for _, r := range q.FreeRuns() {
		if r.PV == last.PV && r.Start == end {
			take := min(r.Count, n)
			last.Count += take
			n -= take
			break
		}
	}
	if n > 0 {
		segs, err := q.Allocate(n)
		if err != nil {
			return nil, fmt.Errorf("extend %s/%s: %w", p.Name, name, err)
		}
		v.Segments = mergeSegments(append(v.Segments, segs...))
	}
	return q, nil
}

// RenameVolume returns a copy of p with the volume renamed. Errors wrap
// [ErrNotFound], [ErrBadName] or [ErrExists].
func (p *Pool) RenameVolume(oldName, newName string) (*Pool, error) {
	if _, err := p.findVolume(oldName); err != nil {
		return nil, err
	}
	if err := p.checkNewName(newName); err != nil {
		return nil, err
	}
	q := p.Clone()
	q.Volume(oldName).Name = newName
	return q, nil
}

// SnapshotSpec describes a new snapshot for [Pool.AddSnapshot].
type SnapshotSpec struct {
	Name                  string
	Origin                string
	COWExtents            ExtentCount
	Store                 dm.StoreType
	ChunkSize             dm.Sector
	DiscardZeroesCOW      bool
	DiscardPassdownOrigin bool
	ReadOnly              bool
}

// AddSnapshot returns a copy of p with a snapshot of spec.Origin: a new
// KindSnapshotCOW volume called spec.Name, a [Snapshot] record in state
// active, and the origin turned into KindOrigin. Snapshots of snapshots are
// refused with [ErrInUse]. It only changes the description; building the
// devices is the caller's job.
func (p *Pool) AddSnapshot(spec SnapshotSpec) (*Pool, error) {
	origin, err := p.findVolume(spec.Origin)
	if err != nil {
		return nil, err
	}
	if origin.Kind == KindSnapshotCOW {
		return nil, fmt.Errorf("snapshot of %s/%s: snapshots do not stack: %w", p.Name, spec.Origin, ErrInUse)
	}
	if !spec.Store.Valid() {
		return nil, fmt.Errorf("snapshot %s/%s: unknown store %q", p.Name, spec.Name, spec.Store)
	}
	if err := dm.CheckChunkSectors(spec.ChunkSize); err != nil {
		return nil, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
	}
	if spec.DiscardPassdownOrigin && !spec.DiscardZeroesCOW {
		return nil, fmt.Errorf("snapshot %s/%s: discard_passdown_origin needs discard_zeroes_cow: %w", p.Name, spec.Name, dm.ErrInvalidTable)
	}
	q, err := p.addVolume(spec.Name, KindSnapshotCOW, spec.COWExtents)
	if err != nil {
		return nil, err
	}
	o := q.VolumeByUUID(origin.UUID)
	o.Kind = KindOrigin
	q.Snapshots = append(q.Snapshots, Snapshot{
		COW: q.Volume(spec.Name).UUID, Origin: o.UUID, Store: spec.Store, ChunkSize: spec.ChunkSize,
		DiscardZeroesCOW: spec.DiscardZeroesCOW, DiscardPassdownOrigin: spec.DiscardPassdownOrigin,
		ReadOnly: spec.ReadOnly, State: SnapshotActive,
	})
	return q, nil
}

// RemoveSnapshot returns a copy of p without the snapshot called name and
// its COW volume; an origin left without snapshots becomes plain again.
func (p *Pool) RemoveSnapshot(name string) (*Pool, error) {
	v, err := p.findVolume(name)
	if err != nil {
		return nil, err
	}
	s := p.SnapshotByCOW(v.UUID)
	if s == nil {
		return nil, fmt.Errorf("snapshot %s/%s: %w", p.Name, name, ErrNotFound)
	}
	origin := s.Origin
	q := p.Clone()
	q.Snapshots = slices.DeleteFunc(q.Snapshots, func(t Snapshot) bool { return t.COW == v.UUID })
	q.Volumes = slices.DeleteFunc(q.Volumes, func(w Volume) bool { return w.UUID == v.UUID })
	if len(q.SnapshotsOf(origin)) == 0 {
		q.VolumeByUUID(origin).Kind = KindPlain
	}
	return q, nil
}

// SetSnapshotState returns a copy of p with the snapshot's state set.
func (p *Pool) SetSnapshotState(name string, state SnapshotState) (*Pool, error) {
	v, err := p.findVolume(name)
	if err != nil {
		return nil, err
	}
	if p.SnapshotByCOW(v.UUID) == nil {
		return nil, fmt.Errorf("snapshot %s/%s: %w", p.Name, name, ErrNotFound)
	}
	q := p.Clone()
	q.SnapshotByCOW(v.UUID).State = state
	return q, nil
}

// OpPoolRemove is the pending operation of `dmsnap pool remove`: committed
// to every PV before the first PV is wiped, so that a crash part way
// leaves PVs that carry it (the pool's newest metadata) and PVs wiped
// clean; whoever finds it finishes the removal instead of using the pool.
const OpPoolRemove = "pool-remove"

// RemovalPending reports whether p carries an [OpPoolRemove] record.
func (p *Pool) RemovalPending() bool {
	return slices.ContainsFunc(p.Pending, func(op PendingOp) bool { return op.Op == OpPoolRemove })
}

// AddPending returns a copy of p recording op; op.ID is assigned if empty.
func (p *Pool) AddPending(op PendingOp) (*Pool, UUID) {
	if op.ID == "" {
		op.ID = NewUUID()
	}
	q := p.Clone()
	q.Pending = append(q.Pending, op)
	return q, op.ID
}

// RemovePending returns a copy of p without the pending operation id.
func (p *Pool) RemovePending(id UUID) *Pool {
	q := p.Clone()
	q.Pending = slices.DeleteFunc(q.Pending, func(op PendingOp) bool { return op.ID == id })
	return q
}
