package lvm

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dmsnap/dmsnap/dm"
)

// Sentinels of the model operations.
var (
	// ErrExists: a pool or volume of that name already exists.
	ErrExists = errors.New("already exists")
	// ErrNotFound: no pool, volume or PV of that name or UUID.
	ErrNotFound = errors.New("not found")
	// ErrInUse: the object is still needed (a volume with snapshots, a
	// pool with volumes, a device that belongs to a pool).
	ErrInUse = errors.New("in use")
	// ErrNoSpace: the pool has too few free extents; see [NoSpaceError].
	ErrNoSpace = errors.New("not enough free space")
	// ErrInvalidModel: a pool description breaks an invariant (overlapping
	// extents, dangling references). Metadata that fails this check is
	// treated as corrupt.
	ErrInvalidModel = errors.New("invalid pool description")
)

// Pool is a volume group: PVs split into extents, and the volumes and
// snapshots carved from them. It is a pure description; [Store] binds it to
// disks and commits it. Operations return a modified copy and leave the
// receiver unchanged, so a failed operation changes nothing.
type Pool struct {
	Name       string    `json:"name"`
	UUID       UUID      `json:"uuid"`
	ExtentSize dm.Sector `json:"extent_size_sectors"`
	// Seqno is the sequence number of the commit this description was
	// read from (0 before the first commit). [Store.Commit] assigns it.
	Seqno     uint64      `json:"seqno"`
	PVs       []PV        `json:"pvs"`
	Volumes   []Volume    `json:"volumes"`
	Snapshots []Snapshot  `json:"snapshots,omitempty"`
	Pending   []PendingOp `json:"pending,omitempty"`
	// Features and Extensions carry what later releases add (features.go);
	// a document with either is written as version 3.
	Features   Features                   `json:"features,omitzero"`
	Extensions map[string]json.RawMessage `json:"extensions,omitempty"`
}

// PV is a physical volume: a device whose sectors from PEStart on are split
// into PECount extents.
type PV struct {
	UUID UUID `json:"uuid"`
	// DeviceHint is the path the PV was last seen at; devices are found
	// by label, never by this path.
	DeviceHint string    `json:"device_hint,omitempty"`
	Size       dm.Sector `json:"size_sectors"`
	// PEStart is the sector of extent 0 on the device.
	PEStart dm.Sector   `json:"pe_start_sectors"`
	PECount ExtentCount `json:"pe_count"`
}

// VolumeKind says what a volume is for.
type VolumeKind string

// Volume kinds.
const (
	// KindPlain is an ordinary volume: one linear device.
	KindPlain VolumeKind = "plain"
	// KindOrigin is a volume with snapshots: its extents back the
	// "<pool>-<name>-real" device and "<pool>-<name>" is a
	// snapshot-origin (or snapshot-merge) over it.
	KindOrigin VolumeKind = "origin"
	// KindSnapshotCOW holds a snapshot's exception store. Its name is the
	// snapshot's name: "<pool>-<name>-cow" is linear over its extents and
	// "<pool>-<name>" is the snapshot device, as in LVM2.
	KindSnapshotCOW VolumeKind = "snapshot-cow"
)

// Volume is a logical volume: segments of extents, mapped in order.
type Volume struct {
	Name     string     `json:"name"`
	UUID     UUID       `json:"uuid"`
	Kind     VolumeKind `json:"kind"`
	Segments []Segment  `json:"segments"`
}

// Segment is a run of Count extents starting at extent Start of PV.
type Segment struct {
	PV    UUID        `json:"pv"`
	Start ExtentIndex `json:"start"`
	Count ExtentCount `json:"count"`
}

// Extents returns the number of extents of v.
func (v *Volume) Extents() ExtentCount {
	var n ExtentCount
	for _, s := range v.Segments {
		n += s.Count
	}
	return n
}

// SnapshotState is the recorded state of a snapshot.
type SnapshotState string

// Snapshot states.
const (
	SnapshotActive      SnapshotState = "active"
	SnapshotInvalid     SnapshotState = "invalid"
	SnapshotOverflow    SnapshotState = "overflow"
	SnapshotMerging     SnapshotState = "merging"
	SnapshotMergeFailed SnapshotState = "merge-failed"
)

// Snapshot records a dm snapshot of Origin whose exception store is the
// KindSnapshotCOW volume COW. The snapshot's name is the COW volume's name,
// so renaming that volume renames the snapshot.
type Snapshot struct {
	COW                   UUID         `json:"cow"`
	Origin                UUID         `json:"origin"`
	Store                 dm.StoreType `json:"store"`
	ChunkSize             dm.Sector    `json:"chunk_sectors"`
	DiscardZeroesCOW      bool         `json:"discard_zeroes_cow,omitempty"`
	DiscardPassdownOrigin bool         `json:"discard_passdown_origin,omitempty"`
	// ReadOnly loads the snapshot device read-only (document version 2).
	ReadOnly bool          `json:"read_only,omitempty"`
	State    SnapshotState `json:"state"`
}

// PendingOp records a multi-step operation in progress, committed before
// its first kernel step and removed after its last, so that activation
// after a crash knows what to finish or undo. Op names the operation
// ("snapshot-create", "merge", ...), Step the last step reached; Args are
// free-form.
type PendingOp struct {
	ID     UUID              `json:"id"`
	Op     string            `json:"op"`
	Volume UUID              `json:"volume,omitempty"`
	Step   string            `json:"step,omitempty"`
	Args   map[string]string `json:"args,omitempty"`
}

// Clone returns a deep copy of p.
func (p *Pool) Clone() *Pool {
	q := *p
	q.PVs = slices.Clone(p.PVs)
	if p.Volumes != nil {
		q.Volumes = make([]Volume, len(p.Volumes))
		for i, v := range p.Volumes {
			v.Segments = slices.Clone(v.Segments)
			q.Volumes[i] = v
		}
	}
	q.Snapshots = slices.Clone(p.Snapshots)
	q.Features = p.Features.clone()
	q.Extensions = maps.Clone(p.Extensions) // values are never changed in place
	if p.Pending != nil {
		q.Pending = make([]PendingOp, len(p.Pending))
		for i, op := range p.Pending {
			op.Args = maps.Clone(op.Args)
			q.Pending[i] = op
		}
	}
	return &q
}

// Volume returns the volume called name, or nil.
func (p *Pool) Volume(name string) *Volume {
	for i := range p.Volumes {
		if p.Volumes[i].Name == name {
			return &p.Volumes[i]
		}
	}
	return nil
}

// VolumeByUUID returns the volume with UUID u, or nil.
func (p *Pool) VolumeByUUID(u UUID) *Volume {
	for i := range p.Volumes {
		if p.Volumes[i].UUID == u {
			return &p.Volumes[i]
		}
	}
	return nil
}

// PV returns the PV with UUID u, or nil.
func (p *Pool) PV(u UUID) *PV {
	for i := range p.PVs {
		if p.PVs[i].UUID == u {
			return &p.PVs[i]
		}
	}
	return nil
}

// SnapshotByCOW returns the snapshot whose COW volume is u, or nil.
func (p *Pool) SnapshotByCOW(u UUID) *Snapshot {
	for i := range p.Snapshots {
		if p.Snapshots[i].COW == u {
			return &p.Snapshots[i]
		}
	}
	return nil
}

// SnapshotsOf returns the snapshots of the origin volume u, in pool order.
func (p *Pool) SnapshotsOf(u UUID) []Snapshot {
	var out []Snapshot
	for _, s := range p.Snapshots {
		if s.Origin == u {
			out = append(out, s)
		}
	}
	return out
}

// TotalExtents returns the number of extents of all PVs.
func (p *Pool) TotalExtents() ExtentCount {
	var n ExtentCount
	for _, pv := range p.PVs {
		n += pv.PECount
	}
	return n
}

// FreeExtents returns the number of unallocated extents.
func (p *Pool) FreeExtents() ExtentCount {
	var used ExtentCount
	for i := range p.Volumes {
		used += p.Volumes[i].Extents()
	}
	return p.TotalExtents() - used
}

// Sectors converts an extent count of p to sectors.
func (p *Pool) Sectors(n ExtentCount) dm.Sector { return dm.Sector(n) * p.ExtentSize }

// Validate checks the invariants of p: valid names and UUIDs, unique names
// and UUIDs, segments inside their PVs and not overlapping, snapshot
// records that refer to volumes of the right kinds, and the limits the CLI
// enforces on new objects (device-mapper name length, chunk size). The
// error wraps
// [ErrInvalidModel].
func (p *Pool) Validate() error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("pool %q: %w: %w", p.Name, ErrInvalidModel, err)
	}
	return nil
}

func (p *Pool) validate() error {
	if err := ValidateName("pool", p.Name); err != nil {
		return err
	}
	if _, err := ParseUUID(string(p.UUID)); err != nil {
		return err
	}
	if err := CheckExtentSize(p.ExtentSize); err != nil {
		return err
	}
	if len(p.PVs) == 0 {
		return errors.New("no PVs")
	}
	if err := p.Features.validate(); err != nil {
		return err
	}
	if err := validateExtensions(p.Extensions); err != nil {
		return err
	}
	uuids := map[UUID]string{p.UUID: "pool"}
	claim := func(u UUID, what string) error {
		if _, err := ParseUUID(string(u)); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if prev, ok := uuids[u]; ok {
			return fmt.Errorf("%s: uuid %s already used by %s", what, u, prev)
		}
		uuids[u] = what
		return nil
	}
	pvs := make(map[UUID]ExtentCount, len(p.PVs))
	type run struct {
		start, end uint64
		vol        string
	}
	runs := make(map[UUID][]run, len(p.PVs))
	for _, pv := range p.PVs {
		if err := claim(pv.UUID, "pv "+pv.UUID.Short()); err != nil {
			return err
		}
		if pv.PEStart == 0 || pv.PECount == 0 {
			return fmt.Errorf("pv %s: no extents", pv.UUID)
		}
		if pv.PEStart >= pv.Size || uint64(pv.PECount) > uint64(pv.Size-pv.PEStart)/uint64(p.ExtentSize) {
			return fmt.Errorf("pv %s: %d extents from sector %d exceed its %d sectors", pv.UUID, pv.PECount, pv.PEStart, pv.Size)
		}
		pvs[pv.UUID] = pv.PECount
	}
	names := map[string]bool{}
	for _, v := range p.Volumes {
		if err := ValidateName("volume", v.Name); err != nil {
			return err
		}
		// As strict as the CLI: a name the kernel cannot take is refused
		// here, not by a failed ioctl halfway through activation.
		if err := checkDMName(p.Name, v.Name); err != nil {
			return err
		}
		if names[v.Name] {
			return fmt.Errorf("volume %q: duplicate name", v.Name)
		}
		names[v.Name] = true
		if err := claim(v.UUID, "volume "+v.Name); err != nil {
			return err
		}
		switch v.Kind {
		case KindPlain, KindOrigin, KindSnapshotCOW:
		default:
			return fmt.Errorf("volume %q: unknown kind %q", v.Name, v.Kind)
		}
		if len(v.Segments) == 0 {
			return fmt.Errorf("volume %q: no segments", v.Name)
		}
		for _, s := range v.Segments {
			n, ok := pvs[s.PV]
			if !ok {
				return fmt.Errorf("volume %q: segment on unknown pv %s", v.Name, s.PV)
			}
			if s.Count == 0 || uint64(s.Start) >= uint64(n) || uint64(s.Count) > uint64(n)-uint64(s.Start) {
				return fmt.Errorf("volume %q: segment %d+%d outside pv %s", v.Name, s.Start, s.Count, s.PV.Short())
			}
			runs[s.PV] = append(runs[s.PV], run{uint64(s.Start), uint64(s.Start) + uint64(s.Count), v.Name})
		}
	}
	for pv, rs := range runs {
		slices.SortFunc(rs, func(a, b run) int { return cmp.Compare(a.start, b.start) })
		for i := 1; i < len(rs); i++ {
			if rs[i].start < rs[i-1].end {
				return fmt.Errorf("volumes %q and %q: extent %d of pv %s allocated twice", rs[i-1].vol, rs[i].vol, rs[i].start, pv.Short())
			}
		}
	}
	cows := map[UUID]bool{}
	origins := map[UUID]bool{}
	for _, s := range p.Snapshots {
		cow, origin := p.VolumeByUUID(s.COW), p.VolumeByUUID(s.Origin)
		if cow == nil || cow.Kind != KindSnapshotCOW {
			return fmt.Errorf("snapshot %s: cow is not a snapshot-cow volume", s.COW)
		}
		if origin == nil || origin.Kind != KindOrigin {
			return fmt.Errorf("snapshot %q: origin is not an origin volume", cow.Name)
		}
		if cows[s.COW] {
			return fmt.Errorf("snapshot %q: recorded twice", cow.Name)
		}
		cows[s.COW] = true
		origins[s.Origin] = true
		if !s.Store.Valid() {
			return fmt.Errorf("snapshot %q: unknown store %q", cow.Name, s.Store)
		}
		if err := dm.CheckChunkSectors(s.ChunkSize); err != nil {
			return fmt.Errorf("snapshot %q: %w", cow.Name, err)
		}
		switch s.State {
		case SnapshotActive, SnapshotInvalid, SnapshotOverflow, SnapshotMerging, SnapshotMergeFailed:
		default:
			return fmt.Errorf("snapshot %q: unknown state %q", cow.Name, s.State)
		}
	}
	for _, v := range p.Volumes {
		if v.Kind == KindSnapshotCOW && !cows[v.UUID] {
			return fmt.Errorf("volume %q: snapshot-cow without a snapshot record", v.Name)
		}
		if v.Kind == KindOrigin && !origins[v.UUID] {
			return fmt.Errorf("volume %q: origin without snapshots", v.Name)
		}
	}
	for _, op := range p.Pending {
		if err := claim(op.ID, "pending "+op.Op); err != nil {
			return err
		}
	}
	return nil
}
