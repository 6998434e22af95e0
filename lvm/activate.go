package lvm

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// ErrConflict: a device-mapper device that dmsnap did not create for this
// volume already has the name the volume needs.
var ErrConflict = errors.New("device name taken")

// DesiredDevice is one device-mapper device a pool's metadata calls for.
// Params of Lines may name another device of the plan as "{<dm name>}";
// [ResolveLines] replaces that with the device's number once it exists.
type DesiredDevice struct {
	Name string
	UUID string
	// Volume is the volume the device belongs to, for messages.
	Volume string
	Lines  []dm.TargetLine
	// Deps are the names of devices of the plan to create and resume
	// before this one: those its table refers to, and for an origin the
	// snapshots that must resume first (LVM2's activation priority).
	Deps []string
	// Transient marks the device of a snapshot with a transient store:
	// it cannot be rebuilt once gone, only reported lost.
	Transient bool
	// ReadOnly loads the table read-only (a snapshot created --readonly).
	ReadOnly bool
}

// PlanOptions tune [Plan].
type PlanOptions struct {
	// Partial plans the volumes whose PVs are all present and skips the
	// rest with a warning; without it a missing PV is an error.
	Partial bool
}

func devRef(name string) string { return "{" + name + "}" }

// linearLines maps v's segments in order onto their PVs.
func linearLines(p *Pool, v *Volume, devs map[UUID]dm.DevNum) []dm.TargetLine {
	lines := make([]dm.TargetLine, 0, len(v.Segments))
	var start dm.Sector
	for _, s := range v.Segments {
		pv := p.PV(s.PV)
		t := dm.Linear{Dev: devs[s.PV], Offset: pv.PEStart + dm.Sector(s.Start)*p.ExtentSize}
		n := p.Sectors(s.Count)
		lines = append(lines, dm.Segment{Start: start, Length: n, Target: t}.Line())
		start += n
	}
	return lines
}

// snapshotParams formats a snapshot or snapshot-merge table with device
// references (see [dm.Snapshot] for the fields):
// "<origin> <cow> <P|N|PO> <chunk_sectors> [<#features> <feature>...]".
func snapshotParams(real, cow string, s *Snapshot) string {
	var feats []string
	if s.DiscardZeroesCOW {
		feats = append(feats, "discard_zeroes_cow")
	}
	if s.DiscardPassdownOrigin {
		feats = append(feats, "discard_passdown_origin")
	}
	out := devRef(real) + " " + devRef(cow) + " " + string(s.Store) + " " + strconv.FormatUint(uint64(s.ChunkSize), 10)
	if len(feats) > 0 {
		out += " " + strconv.Itoa(len(feats)) + " " + strings.Join(feats, " ")
	}
	return out
}

// Plan computes the devices that make up the active pool, given the device
// number of each present PV. The result is ordered so that every device
// comes after its Deps. Layouts follow LVM2:
//
//	plain volume v:       <pool>-<v>        linear over its extents
//	origin o:             <pool>-<o>-real   linear over its extents
//	                      <pool>-<o>        snapshot-origin <o>-real
//	                                        (snapshot-merge <o>-real <s>-cow ... while s merges)
//	snapshot s of o:      <pool>-<s>-cow    linear over s's extents
//	                      <pool>-<s>        snapshot <o>-real <s>-cow P|N|PO <chunk> [features]
//	                                        (not built while s merges: its COW is the origin's)
//
// A volume on a missing PV is an error wrapping [ErrMissingPV] unless
// opts.Partial, which skips it (and snapshots of a skipped origin, and an
// origin's merge whose COW is skipped) with a warning.
func Plan(p *Pool, devs map[UUID]dm.DevNum, opts PlanOptions) ([]DesiredDevice, []Warning, error) {
	var warns []Warning
	complete := map[UUID]bool{}
	var missingVols []string
	for i := range p.Volumes {
		v := &p.Volumes[i]
		ok := true
		for _, s := range v.Segments {
			if _, have := devs[s.PV]; !have {
				ok = false
			}
		}
		complete[v.UUID] = ok
		if !ok {
			missingVols = append(missingVols, v.Name)
		}
	}
	if len(missingVols) > 0 {
		var pvs []string
		for _, pv := range p.PVs {
			if _, ok := devs[pv.UUID]; !ok {
				pvs = append(pvs, fmt.Sprintf("%s (last seen at %s)", pv.UUID, pv.DeviceHint))
			}
		}
		msg := fmt.Sprintf("volumes %s are on missing PVs %s", strings.Join(missingVols, ", "), strings.Join(pvs, ", "))
		if !opts.Partial {
			return nil, nil, fmt.Errorf("activate pool %s: %s: %w", p.Name, msg, ErrMissingPV)
		}
		warns = append(warns, Warning{Msg: msg + "; skipped"})
	}
	name := func(v *Volume, l Layer) string { return DMName(p.Name, v.Name, l) }
	var out []DesiredDevice
	for i := range p.Volumes {
		v := &p.Volumes[i]
		if !complete[v.UUID] {
			continue
		}
		size := p.Sectors(v.Extents())
		switch v.Kind {
		case KindPlain:
			out = append(out, DesiredDevice{Name: name(v, LayerNone), UUID: DMUUID(p.UUID, v.UUID, LayerNone), Volume: v.Name, Lines: linearLines(p, v, devs)})
		case KindSnapshotCOW:
			out = append(out, DesiredDevice{Name: name(v, LayerCOW), UUID: DMUUID(p.UUID, v.UUID, LayerCOW), Volume: v.Name, Lines: linearLines(p, v, devs)})
		case KindOrigin:
			real := name(v, LayerReal)
			out = append(out, DesiredDevice{Name: real, UUID: DMUUID(p.UUID, v.UUID, LayerReal), Volume: v.Name, Lines: linearLines(p, v, devs)})
			top := DesiredDevice{Name: name(v, LayerNone), UUID: DMUUID(p.UUID, v.UUID, LayerNone), Volume: v.Name, Deps: []string{real},
				Lines: []dm.TargetLine{{Length: size, Type: dm.TypeSnapshotOrigin, Params: devRef(real)}}}
			var merging *Snapshot
			for _, s := range p.SnapshotsOf(v.UUID) {
				cv := p.VolumeByUUID(s.COW)
				if !complete[cv.UUID] {
					warns = append(warns, Warning{Msg: fmt.Sprintf("snapshot %s/%s: COW on a missing PV; skipped", p.Name, cv.Name)})
					continue
				}
				if s.State == SnapshotMerging || s.State == SnapshotMergeFailed {
					// Its exceptions belong to the origin's snapshot-merge
					// table now: the snapshot's own device is not rebuilt
					// (LVM2 does not activate a merging snapshot either),
					// and one left by the handover is a leftover.
					merging = &s
					continue
				}
				snap := DesiredDevice{Name: name(cv, LayerNone), UUID: DMUUID(p.UUID, cv.UUID, LayerNone), Volume: cv.Name,
					Deps: []string{real, name(cv, LayerCOW)}, Transient: s.Store == dm.Transient, ReadOnly: s.ReadOnly,
					Lines: []dm.TargetLine{{Length: size, Type: dm.TypeSnapshot, Params: snapshotParams(real, name(cv, LayerCOW), &s)}}}
				top.Deps = append(top.Deps, snap.Name)
				out = append(out, snap)
			}
			if merging != nil {
				cow := name(p.VolumeByUUID(merging.COW), LayerCOW)
				top.Lines = []dm.TargetLine{{Length: size, Type: dm.TypeSnapshotMerge, Params: snapshotParams(real, cow, merging)}}
				top.Deps = append(top.Deps, cow)
			}
			out = append(out, top)
		}
	}
	sorted, err := topoSort(out)
	if err != nil {
		return nil, nil, fmt.Errorf("activate pool %s: %w", p.Name, err)
	}
	return sorted, warns, nil
}

// topoSort orders devices after their dependencies, keeping the input
// order otherwise.
func topoSort(devs []DesiredDevice) ([]DesiredDevice, error) {
	index := make(map[string]int, len(devs))
	for i, d := range devs {
		index[d.Name] = i
	}
	state := make([]int8, len(devs)) // 0 new, 1 visiting, 2 done
	out := make([]DesiredDevice, 0, len(devs))
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return fmt.Errorf("dependency cycle through %s", devs[i].Name)
		case 2:
			return nil
		}
		state[i] = 1
		for _, dep := range devs[i].Deps {
			j, ok := index[dep]
			if !ok {
				return fmt.Errorf("%s depends on %s, which is not planned", devs[i].Name, dep)
			}
			if err := visit(j); err != nil {
				return err
			}
		}
		state[i] = 2
		out = append(out, devs[i])
		return nil
	}
	for i := range devs {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ResolveLines returns lines with every "{<name>}" reference replaced by
// the device number devnum gives for name. It fails if a name is unknown.
func ResolveLines(lines []dm.TargetLine, devnum func(name string) (dm.DevNum, bool)) ([]dm.TargetLine, error) {
	out := slices.Clone(lines)
	for i := range out {
		params := out[i].Params
		if !strings.Contains(params, "{") {
			continue
		}
		var b strings.Builder
		for {
			open := strings.IndexByte(params, '{')
			if open < 0 {
				b.WriteString(params)
				break
			}
			end := strings.IndexByte(params[open:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unterminated device reference in %q", out[i].Params)
			}
			ref := params[open+1 : open+end]
			dev, ok := devnum(ref)
			if !ok {
				return nil, fmt.Errorf("device %s does not exist", ref)
			}
			b.WriteString(params[:open])
			b.WriteString(dev.String())
			params = params[open+end+1:]
		}
		out[i].Params = b.String()
	}
	return out, nil
}

// KernelDevice is a device-mapper device as the kernel reports it: name,
// uuid, number and live table.
type KernelDevice struct {
	Name  string
	UUID  string
	Dev   dm.DevNum
	Lines []dm.TargetLine
}

// ActionKind is what [Reconcile] decided for a device.
type ActionKind string

// Action kinds.
const (
	// ActionKeep: the device exists with the desired table.
	ActionKeep ActionKind = "keep"
	// ActionCreate: create, load and resume the device.
	ActionCreate ActionKind = "create"
	// ActionReload: load the desired table and resume (swapping tables).
	ActionReload ActionKind = "reload"
	// ActionRename: the device exists under an old name (a volume renamed
	// while active); rename it, then keep or reload it.
	ActionRename ActionKind = "rename"
	// ActionRemove: a leftover device of this pool that the metadata no
	// longer describes (a crash between steps).
	ActionRemove ActionKind = "remove"
	// ActionLost: a transient snapshot that is gone; it cannot be rebuilt.
	ActionLost ActionKind = "lost"
	// ActionConflict: a device not made for this volume holds its name.
	ActionConflict ActionKind = "conflict"
)

// Action is one step of a reconciliation. Device is the desired device
// (empty for ActionRemove); Current is the existing kernel device (nil for
// ActionCreate and ActionLost).
type Action struct {
	Kind    ActionKind
	Device  DesiredDevice
	Current *KernelDevice
	// Reload is set with ActionRename when the table differs too.
	Reload bool
	Reason string
}

// String describes a for --dry-run and verbose output.
func (a Action) String() string {
	n := a.Device.Name
	if a.Current != nil && n == "" {
		n = a.Current.Name
	}
	s := string(a.Kind) + " " + n
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s
}

// Reconcile compares desired devices (from [Plan]) with the kernel's
// current devices and returns the actions that make the kernel match, in
// an order that can be applied as is: desired devices in plan order, then
// removals of leftovers (devices whose DM UUID carries the pool's prefix
// but that the plan does not contain), dependents before their
// dependencies. It is pure.
func Reconcile(pool UUID, desired []DesiredDevice, current []KernelDevice) []Action {
	byName := make(map[string]*KernelDevice, len(current))
	byUUID := make(map[string]*KernelDevice, len(current))
	for i := range current {
		c := &current[i]
		byName[c.Name] = c
		if c.UUID != "" {
			byUUID[c.UUID] = c
		}
	}
	// devnum of a desired device under its desired name, found by uuid.
	uuidOf := make(map[string]string, len(desired))
	for _, d := range desired {
		uuidOf[d.Name] = d.UUID
	}
	devnum := func(name string) (dm.DevNum, bool) {
		if c, ok := byUUID[uuidOf[name]]; ok {
			return c.Dev, true
		}
		return dm.DevNum{}, false
	}
	var actions []Action
	wanted := map[string]bool{}
	for _, d := range desired {
		wanted[d.UUID] = true
		c, ok := byUUID[d.UUID]
		if !ok {
			switch {
			case byName[d.Name] != nil:
				actions = append(actions, Action{Kind: ActionConflict, Device: d, Current: byName[d.Name],
					Reason: fmt.Sprintf("device %s exists with uuid %q, want %q", d.Name, byName[d.Name].UUID, d.UUID)})
			case d.Transient:
				actions = append(actions, Action{Kind: ActionLost, Device: d, Reason: "transient snapshot does not survive deactivation"})
			default:
				actions = append(actions, Action{Kind: ActionCreate, Device: d})
			}
			continue
		}
		same := false
		if lines, err := ResolveLines(d.Lines, devnum); err == nil {
			same = slices.Equal(lines, c.Lines)
		}
		switch {
		case c.Name != d.Name:
			if o := byName[d.Name]; o != nil {
				actions = append(actions, Action{Kind: ActionConflict, Device: d, Current: o,
					Reason: fmt.Sprintf("cannot rename %s: device %s exists with uuid %q", c.Name, d.Name, o.UUID)})
				continue
			}
			actions = append(actions, Action{Kind: ActionRename, Device: d, Current: c, Reload: !same, Reason: "was " + c.Name})
		case same:
			actions = append(actions, Action{Kind: ActionKeep, Device: d, Current: c})
		default:
			actions = append(actions, Action{Kind: ActionReload, Device: d, Current: c, Reason: "table differs"})
		}
	}
	prefix := PoolDMUUIDPrefix(pool)
	var leftovers []*KernelDevice
	for i := range current {
		c := &current[i]
		if strings.HasPrefix(c.UUID, prefix) && !wanted[c.UUID] {
			leftovers = append(leftovers, c)
		}
	}
	for _, c := range orderRemovals(leftovers) {
		actions = append(actions, Action{Kind: ActionRemove, Current: c, Reason: "not in the pool metadata"})
	}
	return actions
}

// orderRemovals orders devices so that a device whose number appears in
// another's table comes after that device (users before what they use).
func orderRemovals(devs []*KernelDevice) []*KernelDevice {
	byDev := make(map[dm.DevNum]int, len(devs))
	for i, d := range devs {
		byDev[d.Dev] = i
	}
	uses := make([][]int, len(devs)) // uses[i]: devices i's table refers to
	users := make([]int, len(devs))  // users[j]: how many devices use j
	for i, d := range devs {
		for _, l := range d.Lines {
			for _, f := range strings.Fields(l.Params) {
				n, err := dm.ParseDevNum(f)
				if err != nil {
					continue
				}
				if j, ok := byDev[n]; ok && j != i && !slices.Contains(uses[i], j) {
					uses[i] = append(uses[i], j)
					users[j]++
				}
			}
		}
	}
	out := make([]*KernelDevice, 0, len(devs))
	done := make([]bool, len(devs))
	for len(out) < len(devs) {
		progress := false
		for i, d := range devs {
			if done[i] || users[i] > 0 {
				continue
			}
			done[i], progress = true, true
			out = append(out, d)
			for _, j := range uses[i] {
				users[j]--
			}
		}
		if !progress { // device-mapper tables cannot form a cycle
			for i, d := range devs {
				if !done[i] {
					out = append(out, d)
				}
			}
			break
		}
	}
	return out
}
