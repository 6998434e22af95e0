package merge

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// Owner says which tool built a layout, judged from the DM uuid of its
// origin device alone.
type Owner string

// Owners.
const (
	// OwnerNone: no uuid, or one of no known tool (dmsetup, tests).
	OwnerNone Owner = "none"
	// OwnerLVM2: uuid "LVM-<vg uuid><lv uuid>[-<layer>]".
	OwnerLVM2 Owner = "lvm2"
	// OwnerDMSnap: uuid "DMSNAP-<pool uuid><volume uuid>[-<layer>]".
	OwnerDMSnap Owner = "dmsnap"
)

// UUID prefixes that identify the owner.
const (
	lvmUUIDPrefix    = "LVM-"
	dmsnapUUIDPrefix = "DMSNAP-"
	cowSuffix        = "-cow"
)

func ownerOf(uuid string) Owner {
	switch {
	case strings.HasPrefix(uuid, lvmUUIDPrefix):
		return OwnerLVM2
	case strings.HasPrefix(uuid, dmsnapUUIDPrefix):
		return OwnerDMSnap
	}
	return OwnerNone
}

// Device is a device-mapper device with its live table as the kernel
// printed it. Table is nil when the device has no live table or a target
// type package dm does not parse (crypt, thin, ...).
type Device struct {
	Name      string
	UUID      string
	Dev       dm.DevNum
	OpenCount int32
	Lines     []dm.TargetLine
	Table     dm.Table
}

// single returns the device's target when its table has exactly one
// segment, else nil.
func (d *Device) single() dm.Target {
	if d == nil || len(d.Table) != 1 {
		return nil
	}
	return d.Table[0].Target
}

// SnapshotDevice is a snapshot of a layout's origin.
type SnapshotDevice struct {
	Device
	Target dm.Snapshot
	// COW is the COW device when it is a device-mapper device (LVM2's
	// "-cow"), else nil (for example a plain loop device).
	COW *Device
}

// Merging describes the snapshot-merge table of an origin.
type Merging struct {
	Target dm.SnapshotMerge
	// COW is the COW device when it is a device-mapper device.
	COW *Device
	// Snapshot is the old snapshot device whose exceptions were handed
	// over: after the handover LVM2 and dmsnap load the error target into
	// it, dmsetup users leave it reporting Invalid. Nil if none was found.
	Snapshot *Device
}

// Layout is one classic snapshot layout, read from the kernel tables.
type Layout struct {
	Owner Owner
	// Origin is the visible origin: snapshot-origin <real>, or
	// snapshot-merge <real> <cow> ... while merging.
	Origin Device
	// RealDev is the device the origin, snapshots and merge all point at;
	// Real is that device when it is a device-mapper device (LVM2's
	// "-real"), else nil.
	RealDev dm.DevNum
	Real    *Device
	// Snapshots are the snapshot devices over RealDev, sorted by name.
	// The merging snapshot's old device is not among them.
	Snapshots []SnapshotDevice
	// Merge is set while the origin runs snapshot-merge.
	Merge *Merging
}

// Size returns the origin's size.
func (l *Layout) Size() dm.Sector { return l.Origin.Table.Len() }

// system is one scan of every device-mapper device.
type system struct {
	devs   []*Device
	byName map[string]*Device
	byDev  map[dm.DevNum]*Device
	byUUID map[string]*Device
}

// scan lists every device and reads its live table: one DM_LIST_DEVICES and
// one DM_TABLE_STATUS per device. A device removed meanwhile is skipped.
func scan(c Client) (*system, error) {
	list, err := c.List()
	if err != nil {
		return nil, err
	}
	s := &system{byName: map[string]*Device{}, byDev: map[dm.DevNum]*Device{}, byUUID: map[string]*Device{}}
	for _, e := range list {
		lines, info, err := c.Table(e.Name, dm.TableOptions{})
		if errors.Is(err, dm.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		d := &Device{Name: e.Name, UUID: info.UUID, Dev: info.Dev, OpenCount: info.OpenCount, Lines: lines}
		if d.UUID == "" {
			d.UUID = e.UUID
		}
		if d.Dev.IsZero() {
			d.Dev = e.Dev
		}
		if len(lines) > 0 {
			if t, err := dm.ParseTable(lines); err == nil {
				d.Table = t
			}
		}
		s.devs = append(s.devs, d)
		s.byName[d.Name] = d
		s.byDev[d.Dev] = d
		if d.UUID != "" {
			s.byUUID[d.UUID] = d
		}
	}
	sort.Slice(s.devs, func(i, j int) bool { return s.devs[i].Name < s.devs[j].Name })
	return s, nil
}

// layouts returns every layout, sorted by origin name.
func (s *system) layouts() []*Layout {
	var out []*Layout
	for _, d := range s.devs {
		if l := s.layoutOf(d); l != nil {
			out = append(out, l)
		}
	}
	return out
}

// layoutOf builds the layout whose visible origin is d, or returns nil if d
// is not an origin.
func (s *system) layoutOf(d *Device) *Layout {
	l := &Layout{Owner: ownerOf(d.UUID), Origin: *d}
	switch t := d.single().(type) {
	case dm.SnapshotOrigin:
		l.RealDev = t.Origin
	case dm.SnapshotMerge:
		l.RealDev = t.Origin
		l.Merge = &Merging{Target: t, COW: s.byDev[t.COW]}
		l.Merge.Snapshot = s.mergeSource(t, l.Merge.COW)
	default:
		return nil
	}
	l.Real = s.byDev[l.RealDev]
	for _, sd := range s.devs {
		snap, ok := sd.single().(dm.Snapshot)
		if !ok || snap.Origin != l.RealDev {
			continue
		}
		if l.Merge != nil && (snap.COW == l.Merge.Target.COW || sd == l.Merge.Snapshot) {
			continue
		}
		l.Snapshots = append(l.Snapshots, SnapshotDevice{Device: *sd, Target: snap, COW: s.byDev[snap.COW]})
	}
	return l
}

// mergeSource finds the old snapshot device of a merge: a device still
// carrying "snapshot <real> <cow>" with the merge's COW (dmsetup users), or
// the device the naming convention of LVM2 and dmsnap ties to the COW
// device ("<snap>-cow" is the COW of "<snap>", by uuid, else by name) when
// it carries the error target.
func (s *system) mergeSource(t dm.SnapshotMerge, cow *Device) *Device {
	for _, d := range s.devs {
		if snap, ok := d.single().(dm.Snapshot); ok && snap.COW == t.COW && snap.Origin == t.Origin {
			return d
		}
	}
	if cow == nil {
		return nil
	}
	var cand *Device
	if base, ok := strings.CutSuffix(cow.UUID, cowSuffix); ok && base != "" {
		cand = s.byUUID[base]
	}
	if cand == nil {
		if base, ok := strings.CutSuffix(cow.Name, cowSuffix); ok && base != "" {
			cand = s.byName[base]
		}
	}
	if _, ok := cand.single().(dm.Error); ok {
		return cand
	}
	return nil
}

// find returns the layout in which name plays a role (origin, -real,
// snapshot, COW, or the old snapshot of a merge), or nil.
func (s *system) find(name string) *Layout {
	for _, l := range s.layouts() {
		if l.Origin.Name == name || (l.Real != nil && l.Real.Name == name) {
			return l
		}
		for _, sd := range l.Snapshots {
			if sd.Name == name || (sd.COW != nil && sd.COW.Name == name) {
				return l
			}
		}
		if m := l.Merge; m != nil {
			if (m.COW != nil && m.COW.Name == name) || (m.Snapshot != nil && m.Snapshot.Name == name) {
				return l
			}
		}
	}
	return nil
}

// Layouts returns every classic snapshot layout on the machine, LVM2's and
// anonymous ones included, sorted by origin name. It reads every device's
// table (one ioctl per device).
func Layouts(c Client) ([]*Layout, error) {
	s, err := scan(c)
	if err != nil {
		return nil, fmt.Errorf("scan device-mapper devices: %w", err)
	}
	return s.layouts(), nil
}

// FindLayout returns the layout in which the device name plays any role:
// visible origin, -real, snapshot, COW, or the old snapshot of a merge.
//
// Errors: [ErrNotSnapshot] when name belongs to no layout (including when
// no device has that name).
func FindLayout(c Client, name string) (*Layout, error) {
	s, err := scan(c)
	if err != nil {
		return nil, fmt.Errorf("scan device-mapper devices: %w", err)
	}
	if l := s.find(name); l != nil {
		return l, nil
	}
	if _, ok := s.byName[name]; !ok {
		return nil, fmt.Errorf("%s: no such device-mapper device: %w", name, ErrNotSnapshot)
	}
	return nil, fmt.Errorf("%s: belongs to no snapshot-origin/snapshot layout: %w", name, ErrNotSnapshot)
}

// Merge names the devices of one merge. [Start] and [FindMerges] return it;
// a caller may persist it and hand it to [Finish], which needs it to finish
// a merge whose origin was already switched back.
type Merge struct {
	Owner Owner `json:"owner"`
	// Origin is the visible origin device, which runs snapshot-merge.
	Origin string `json:"origin"`
	// Real is the device under the origin ("" when it is not a
	// device-mapper device); RealDev its number.
	Real    string    `json:"real,omitempty"`
	RealDev dm.DevNum `json:"real_dev"`
	// Snapshot is the old snapshot device ("" if not found).
	Snapshot string `json:"snapshot,omitempty"`
	// COW is the COW device ("" when it is not a device-mapper device);
	// COWDev its number.
	COW    string    `json:"cow,omitempty"`
	COWDev dm.DevNum `json:"cow_dev"`
	// Target is the origin's snapshot-merge table.
	Target dm.SnapshotMerge `json:"-"`
}

func mergeOf(l *Layout) Merge {
	m := Merge{Owner: l.Owner, Origin: l.Origin.Name, RealDev: l.RealDev}
	if l.Real != nil {
		m.Real = l.Real.Name
	}
	if l.Merge != nil {
		m.Target = l.Merge.Target
		m.COWDev = l.Merge.Target.COW
		if l.Merge.COW != nil {
			m.COW = l.Merge.COW.Name
		}
		if l.Merge.Snapshot != nil {
			m.Snapshot = l.Merge.Snapshot.Name
		}
	}
	return m
}

// FindMerges returns every device currently running snapshot-merge, LVM2's
// (lvconvert --merge) and anonymous ones included, sorted by origin name.
// It is read from the kernel tables alone.
func FindMerges(c Client) ([]Merge, error) {
	ls, err := Layouts(c)
	if err != nil {
		return nil, err
	}
	var out []Merge
	for _, l := range ls {
		if l.Merge != nil {
			out = append(out, mergeOf(l))
		}
	}
	return out, nil
}
