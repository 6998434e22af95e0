package pool

import (
	"context"
	"errors"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/lvm"
)

// ActivateVolumes brings the devices of the named volumes (nil: all) of
// p in line with the metadata, leaving other volumes' devices alone, and
// makes the /dev/mapper node of each top device. It returns the actions
// taken and the node of each volume activated.
func ActivateVolumes(ctx context.Context, k *dm.Client, p *lvm.Pool, devs map[lvm.UUID]dm.DevNum, volumes map[string]bool, opts lvm.ActivateOptions) ([]lvm.Action, []lvm.Warning, map[string]string, error) {
	desired, warns, err := lvm.Plan(p, devs, opts.Plan)
	if err != nil {
		return nil, nil, nil, err
	}
	if volumes != nil {
		byName := map[string]lvm.DesiredDevice{}
		for _, d := range desired {
			byName[d.Name] = d
		}
		keep := map[string]bool{}
		var mark func(name string)
		mark = func(name string) {
			if keep[name] {
				return
			}
			keep[name] = true
			for _, dep := range byName[name].Deps {
				mark(dep)
			}
		}
		for _, d := range desired {
			if volumes[d.Volume] {
				mark(d.Name)
			}
		}
		var sel []lvm.DesiredDevice
		for _, d := range desired {
			if keep[d.Name] {
				sel = append(sel, d)
			}
		}
		desired = sel
	}
	names := make([]string, len(desired))
	for i, d := range desired {
		names[i] = d.Name
	}
	current, err := lvm.CurrentDevices(k, p.UUID, names)
	if err != nil {
		return nil, warns, nil, err
	}
	var actions []lvm.Action
	for _, a := range lvm.Reconcile(p.UUID, desired, current) {
		if a.Kind == lvm.ActionRemove && volumes != nil {
			continue // another volume's device, not a leftover
		}
		switch a.Kind {
		case lvm.ActionLost:
			warns = append(warns, lvm.Warning{Msg: fmt.Sprintf("snapshot %s/%s is lost: %s", p.Name, a.Device.Volume, a.Reason)})
		case lvm.ActionRemove:
			if !opts.Apply.RemoveLeftovers {
				warns = append(warns, lvm.Warning{Msg: fmt.Sprintf("device %s (uuid %s) belongs to pool %s but not to its metadata", a.Current.Name, a.Current.UUID, p.Name)})
			}
		}
		actions = append(actions, a)
	}
	if opts.DryRun {
		return actions, warns, nil, nil
	}
	if err := lvm.Apply(k, actions, opts.Apply); err != nil {
		return actions, warns, nil, fmt.Errorf("activate pool %s: %w", p.Name, err)
	}
	nodes := map[string]string{}
	for _, a := range actions {
		switch a.Kind {
		case lvm.ActionRemove:
			if opts.Apply.RemoveLeftovers {
				_ = dm.RemoveNode(a.Current.Name)
			}
			continue
		case lvm.ActionRename:
			_ = dm.RemoveNode(a.Current.Name)
		case lvm.ActionLost, lvm.ActionConflict:
			continue
		}
		_, _, layer, err := lvm.ParseDMUUID(a.Device.UUID)
		if err != nil || layer != lvm.LayerNone {
			continue
		}
		info, err := k.Info(a.Device.Name)
		if err != nil {
			return actions, warns, nodes, fmt.Errorf("activate pool %s: %w", p.Name, err)
		}
		node, err := dm.EnsureNode(ctx, info)
		if err != nil {
			return actions, warns, nodes, fmt.Errorf("activate pool %s: %w", p.Name, err)
		}
		nodes[a.Device.Volume] = node
	}
	return actions, warns, nodes, nil
}

// Activate brings the devices of the named volumes (nil: all) of the
// session's pool in line with the metadata (see ActivateVolumes). The
// session needs the kernel and attached PVs.
func (s *Session) Activate(ctx context.Context, volumes map[string]bool, opts lvm.ActivateOptions) ([]lvm.Action, []lvm.Warning, map[string]string, error) {
	if s.Kernel == nil || s.PVs == nil {
		return nil, nil, nil, errors.New("pool " + s.Name + ": activation needs a session with the kernel and attached PVs")
	}
	return ActivateVolumes(ctx, s.Kernel, s.Store.Pool, s.PVs.Devs, volumes, opts)
}

// CreateSnapshot creates the snapshot spec describes, metadata and
// devices (lvm.CreateSnapshot with the session's kernel and PVs).
func (s *Session) CreateSnapshot(ctx context.Context, spec lvm.SnapshotSpec) (lvm.SnapshotResult, error) {
	return lvm.CreateSnapshot(ctx, s.Store, s.SnapshotEnv(), spec)
}
