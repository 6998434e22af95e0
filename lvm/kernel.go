package lvm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// Kernel is the part of [dm.Client] that activation uses; *dm.Client
// implements it, and tests use a fake.
type Kernel interface {
	List() ([]dm.ListEntry, error)
	Create(name, uuid string) (dm.Info, error)
	Load(name string, lines []dm.TargetLine, opts dm.LoadOptions) error
	ClearInactive(name string) error
	Resume(name string) (dm.Info, error)
	Remove(name string, opts dm.RemoveOptions) error
	Rename(oldName, newName string) error
	Table(name string, opts dm.TableOptions) ([]dm.TargetLine, dm.Info, error)
}

// CurrentDevices returns the kernel devices that matter to reconciling
// pool: those whose DM UUID has the pool's prefix, and any other device
// holding one of the names in names. Devices that vanish meanwhile are
// skipped.
func CurrentDevices(k Kernel, pool UUID, names []string) ([]KernelDevice, error) {
	list, err := k.List()
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	prefix := PoolDMUUIDPrefix(pool)
	var out []KernelDevice
	for _, e := range list {
		if !strings.HasPrefix(e.UUID, prefix) && !want[e.Name] {
			continue
		}
		lines, _, err := k.Table(e.Name, dm.TableOptions{})
		if errors.Is(err, dm.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, KernelDevice{Name: e.Name, UUID: e.UUID, Dev: e.Dev, Lines: lines})
	}
	return out, nil
}

// ApplyOptions tune [Apply].
type ApplyOptions struct {
	// RemoveLeftovers removes ActionRemove devices; without it they are
	// only reported.
	RemoveLeftovers bool
}

// Apply executes actions from [Reconcile] in order. It refuses to start
// when any action is an ActionConflict ([ErrConflict]). A device it creates
// is removed again if its load or resume fails (create, load and resume
// are one unit), and an abandoned inactive table is cleared; Apply stops
// at the first failure, since later devices may depend on it. ActionKeep
// and ActionLost need nothing.
func Apply(k Kernel, actions []Action, opts ApplyOptions) error {
	var conflicts []string
	devs := map[string]dm.DevNum{}
	for _, a := range actions {
		if a.Kind == ActionConflict {
			conflicts = append(conflicts, a.Reason)
		}
		if a.Current != nil && a.Device.Name != "" {
			devs[a.Device.Name] = a.Current.Dev
		}
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(conflicts, "; "), ErrConflict)
	}
	devnum := func(name string) (dm.DevNum, bool) { d, ok := devs[name]; return d, ok }
	reload := func(d DesiredDevice) error {
		lines, err := ResolveLines(d.Lines, devnum)
		if err != nil {
			return fmt.Errorf("reload %s: %w", d.Name, err)
		}
		if err := k.Load(d.Name, lines, dm.LoadOptions{ReadOnly: d.ReadOnly}); err != nil {
			return fmt.Errorf("reload %s: %w", d.Name, err)
		}
		if _, err := k.Resume(d.Name); err != nil {
			return errors.Join(fmt.Errorf("reload %s: %w", d.Name, err), k.ClearInactive(d.Name))
		}
		return nil
	}
	for _, a := range actions {
		d := a.Device
		switch a.Kind {
		case ActionCreate:
			lines, err := ResolveLines(d.Lines, devnum)
			if err != nil {
				return fmt.Errorf("create %s: %w", d.Name, err)
			}
			info, err := k.Create(d.Name, d.UUID)
			if err != nil {
				return fmt.Errorf("create %s: %w", d.Name, err)
			}
			if err := k.Load(d.Name, lines, dm.LoadOptions{ReadOnly: d.ReadOnly}); err != nil {
				return errors.Join(fmt.Errorf("load %s: %w", d.Name, err), k.Remove(d.Name, dm.RemoveOptions{}))
			}
			if info, err = k.Resume(d.Name); err != nil {
				return errors.Join(fmt.Errorf("resume %s: %w", d.Name, err), k.Remove(d.Name, dm.RemoveOptions{}))
			}
			devs[d.Name] = info.Dev
		case ActionReload:
			if err := reload(d); err != nil {
				return err
			}
		case ActionRename:
			if err := k.Rename(a.Current.Name, d.Name); err != nil {
				return fmt.Errorf("rename %s to %s: %w", a.Current.Name, d.Name, err)
			}
			if a.Reload {
				if err := reload(d); err != nil {
					return err
				}
			}
		case ActionRemove:
			if !opts.RemoveLeftovers {
				continue
			}
			if err := k.Remove(a.Current.Name, dm.RemoveOptions{}); err != nil && !errors.Is(err, dm.ErrNotFound) {
				return fmt.Errorf("remove leftover %s: %w", a.Current.Name, err)
			}
		}
	}
	return nil
}

// ActivateOptions tune [Activate].
type ActivateOptions struct {
	Plan  PlanOptions
	Apply ApplyOptions
	// DryRun computes the actions without executing them.
	DryRun bool
}

// Activate brings the kernel in line with p: [Plan], [CurrentDevices],
// [Reconcile], then (unless DryRun) [Apply]. devs maps each present PV to
// the device number of its disk (for image files, of the loop device).
// It is idempotent: a second run finds only ActionKeep.
func Activate(k Kernel, p *Pool, devs map[UUID]dm.DevNum, opts ActivateOptions) ([]Action, []Warning, error) {
	desired, warns, err := Plan(p, devs, opts.Plan)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(desired))
	for i, d := range desired {
		names[i] = d.Name
	}
	current, err := CurrentDevices(k, p.UUID, names)
	if err != nil {
		return nil, warns, fmt.Errorf("activate pool %s: %w", p.Name, err)
	}
	actions := Reconcile(p.UUID, desired, current)
	for _, a := range actions {
		switch a.Kind {
		case ActionLost:
			warns = append(warns, Warning{Msg: fmt.Sprintf("snapshot %s/%s is lost: %s", p.Name, a.Device.Volume, a.Reason)})
		case ActionRemove:
			if !opts.Apply.RemoveLeftovers {
				warns = append(warns, Warning{Msg: fmt.Sprintf("device %s (uuid %s) belongs to pool %s but not to its metadata", a.Current.Name, a.Current.UUID, p.Name)})
			}
		}
	}
	if opts.DryRun {
		return actions, warns, nil
	}
	if err := Apply(k, actions, opts.Apply); err != nil {
		return actions, warns, fmt.Errorf("activate pool %s: %w", p.Name, err)
	}
	return actions, warns, nil
}

// Deactivate removes every device of the pool from the kernel, dependents
// first. It carries on past a failure (typically [dm.ErrBusy] for a device
// still open) and returns all failures joined.
func Deactivate(k Kernel, pool UUID) error {
	current, err := CurrentDevices(k, pool, nil)
	if err != nil {
		return err
	}
	devs := make([]*KernelDevice, len(current))
	for i := range current {
		devs[i] = &current[i]
	}
	var errs []error
	for _, d := range orderRemovals(devs) {
		if err := k.Remove(d.Name, dm.RemoveOptions{}); err != nil && !errors.Is(err, dm.ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove %s: %w", d.Name, err))
		}
	}
	return errors.Join(errs...)
}
