package merge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// FinishResult says what [Finish] did.
type FinishResult struct {
	Origin string `json:"origin"`
	// OriginTarget is the origin's target type now: "snapshot-origin"
	// when other snapshots remain, else the type of the old -real table
	// (usually "linear").
	OriginTarget string `json:"origin_target"`
	// Removed lists the devices removed, in order: the old snapshot, its
	// COW, and -real when no snapshot remains. The caller frees the COW's
	// extents.
	Removed []string `json:"removed"`
	// SnapshotsLeft are the other snapshots of the origin, still valid.
	SnapshotsLeft []string `json:"snapshots_left"`
	// COWDev is the merged COW device's number.
	COWDev dm.DevNum `json:"cow_dev"`
}

// Finish tidies up after a merge is done: it swaps the origin's table back
// to snapshot-origin <real> when other snapshots of it remain, else to the
// table of the -real device (plain linear for LVM2 and dmsnap), through a
// load and a suspended resume; then it removes the old snapshot device, its
// COW device and, when no snapshot remains, the -real device. A device is
// removed only if it still is what m says and no table refers to it.
//
// Finish is idempotent: after a crash half-way, calling it again with the
// same m completes the work (devices already gone are skipped, an origin
// already switched back is left alone). Cleanup ioctls run whatever state
// ctx is in; ctx is only checked first.
//
// Errors: [ErrNotDone] while the merge still runs, [ErrMergeFailed],
// [ErrNotMerging] if the origin merges a different COW. A failed remove
// (for example [dm.ErrBusy] because something holds the old snapshot open)
// is returned with the result so far.
func Finish(ctx context.Context, c Client, m Merge) (FinishResult, error) {
	res := FinishResult{Origin: m.Origin, COWDev: m.COWDev}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("finish merge %s: %w", m.Origin, err)
	}
	err := finish(ctx, c, m, &res)
	if err != nil {
		return res, fmt.Errorf("finish merge %s: %w", m.Origin, err)
	}
	return res, nil
}

func finish(ctx context.Context, c Client, m Merge, res *FinishResult) error {
	s, err := scan(c)
	if err != nil {
		return fmt.Errorf("scan device-mapper devices: %w", err)
	}
	origin, ok := s.byName[m.Origin]
	if !ok {
		return fmt.Errorf("origin: %w", dm.ErrNotFound)
	}
	others := s.snapshotsOver(m.RealDev, m.COWDev, m.Snapshot)
	res.SnapshotsLeft = others
	switch t := origin.single().(type) {
	case dm.SnapshotMerge:
		if t.COW != m.COWDev {
			return fmt.Errorf("origin merges COW %s, not %s: %w", t.COW, m.COWDev, ErrNotMerging)
		}
		if err := checkDone(c, m.Origin); err != nil {
			return err
		}
		lines, typ, err := s.collapsedTable(m, origin, others)
		if err != nil {
			return err
		}
		if err := swapTable(ctx, c, m.Origin, lines); err != nil {
			return err
		}
		res.OriginTarget = typ
	default:
		// Switched back by an earlier, interrupted Finish (or by another
		// tool): nothing to swap.
		if len(origin.Lines) > 0 {
			res.OriginTarget = origin.Lines[0].Type
		}
	}

	// Remove what nothing refers to any more, re-reading the tables after
	// each change.
	if m.Snapshot != "" {
		if err := removeIf(c, m.Snapshot, func(s *system, d *Device) error {
			switch t := d.single().(type) {
			case dm.Error:
			case dm.Snapshot:
				if t.COW != m.COWDev {
					return fmt.Errorf("%s maps snapshot COW %s, not the merged %s: refusing to remove it", d.Name, t.COW, m.COWDev)
				}
			default:
				if len(d.Lines) > 0 {
					return fmt.Errorf("%s has a %s table, not the merged snapshot's: refusing to remove it", d.Name, d.Lines[0].Type)
				}
			}
			return s.unreferenced(d)
		}, res); err != nil {
			return err
		}
	}
	if m.COW != "" {
		if err := removeIf(c, m.COW, func(s *system, d *Device) error {
			if d.Dev != m.COWDev {
				return fmt.Errorf("%s is %s now, not the merged COW %s: refusing to remove it", d.Name, d.Dev, m.COWDev)
			}
			return s.unreferenced(d)
		}, res); err != nil {
			return err
		}
	}
	if m.Real != "" && m.Real != m.Origin && len(others) == 0 {
		if err := removeIf(c, m.Real, func(s *system, d *Device) error {
			if d.Dev != m.RealDev {
				return fmt.Errorf("%s is %s now, not the real device %s: refusing to remove it", d.Name, d.Dev, m.RealDev)
			}
			return s.unreferenced(d)
		}, res); err != nil {
			return err
		}
	}
	return nil
}

// checkDone reads the merge status once.
func checkDone(c Client, origin string) error {
	st, _, err := snapshotStatus(c, origin)
	if err != nil {
		return err
	}
	switch {
	case st.State == dm.SnapshotMergeFailed:
		return ErrMergeFailed
	case st.State != dm.SnapshotActive:
		return fmt.Errorf("merge status %q: %w", st.Params(), ErrNotDone)
	case !st.MergeDone():
		return fmt.Errorf("%d sectors left to merge: %w", st.MergeRemaining(), ErrNotDone)
	}
	return nil
}

// snapshotsOver returns the names of the snapshot devices over realDev,
// except the merged one (by COW or by name).
func (s *system) snapshotsOver(realDev, mergedCOW dm.DevNum, mergedName string) []string {
	out := []string{}
	for _, d := range s.devs {
		if t, ok := d.single().(dm.Snapshot); ok && t.Origin == realDev && t.COW != mergedCOW && d.Name != mergedName {
			out = append(out, d.Name)
		}
	}
	return out
}

// collapsedTable is the origin's table after the merge: snapshot-origin
// while other snapshots remain, else the -real device's own table, else
// (the real device is no dm device) linear over it.
func (s *system) collapsedTable(m Merge, origin *Device, others []string) ([]dm.TargetLine, string, error) {
	size := origin.Table.Len()
	var t dm.Table
	switch real := s.byDev[m.RealDev]; {
	case len(others) > 0:
		t = dm.Table{{Start: 0, Length: size, Target: dm.SnapshotOrigin{Origin: m.RealDev}}}
	case real != nil && len(real.Lines) > 0:
		if real.Table != nil && real.Table.Len() != size {
			return nil, "", fmt.Errorf("real device %s maps %d sectors, origin %d", real.Name, real.Table.Len(), size)
		}
		return real.Lines, real.Lines[0].Type, nil
	default:
		t = dm.Table{{Start: 0, Length: size, Target: dm.Linear{Dev: m.RealDev}}}
	}
	lines, err := t.Lines()
	if err != nil {
		return nil, "", err
	}
	return lines, lines[0].Type, nil
}

// swapTable loads lines into name's inactive slot and swaps them in with a
// suspend/resume; if the swap fails, the inactive table is cleared.
func swapTable(ctx context.Context, c Client, name string, lines []dm.TargetLine) error {
	if err := c.Load(name, lines, dm.LoadOptions{}); err != nil {
		return errors.Join(err, c.ClearInactive(name))
	}
	// Once loaded, the swap must not be abandoned half-way by a cancelled
	// ctx: WithSuspended checks ctx before suspending.
	err := c.WithSuspended(context.WithoutCancel(ctx), name, dm.SuspendOptions{}, func() error { return nil })
	if err != nil {
		if info, ierr := c.Info(name); ierr == nil && info.InactivePresent {
			err = errors.Join(err, c.ClearInactive(name))
		}
	}
	return err
}

// removeIf re-reads the tables, and removes the device name if it exists
// and check accepts it.
func removeIf(c Client, name string, check func(*system, *Device) error, res *FinishResult) error {
	s, err := scan(c)
	if err != nil {
		return err
	}
	d, ok := s.byName[name]
	if !ok {
		return nil // already gone
	}
	if err := check(s, d); err != nil {
		return err
	}
	if err := c.Remove(name, dm.RemoveOptions{}); err != nil && !errors.Is(err, dm.ErrNotFound) {
		return err
	}
	res.Removed = append(res.Removed, name)
	return nil
}

// unreferenced returns an error naming a device whose table refers to d.
func (s *system) unreferenced(d *Device) error {
	for _, o := range s.devs {
		if o == d {
			continue
		}
		for _, ref := range refs(o) {
			if ref == d.Dev {
				return fmt.Errorf("%s (%s) is still used by %s: %w", d.Name, d.Dev, o.Name, dm.ErrBusy)
			}
		}
	}
	return nil
}

// refs returns every major:minor named in a device's table, whatever the
// target type.
func refs(d *Device) []dm.DevNum {
	var out []dm.DevNum
	for _, l := range d.Lines {
		for _, f := range strings.Fields(l.Params) {
			if !strings.Contains(f, ":") {
				continue
			}
			if n, err := dm.ParseDevNum(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Recover repairs what an interrupted [Start] (a killed process) can leave
// behind in the layout of the device name: inactive tables and suspended
// devices. Before the handover it clears the inactive tables (the origin's
// first) and resumes every suspended device, which restores the layout as
// it was. After the handover (the origin runs snapshot-merge) it loads the
// error target into the old snapshot device if needed and resumes it, and
// resumes anything else left suspended. Call it only while holding the
// lock that serialises dmsnap's changes to the layout.
func Recover(ctx context.Context, c Client, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := FindLayout(c, name)
	if err != nil {
		return err
	}
	type dev struct {
		name  string
		isOld bool
	}
	devs := []dev{{name: l.Origin.Name}}
	for _, sd := range l.Snapshots {
		devs = append(devs, dev{name: sd.Name})
	}
	if l.Merge != nil && l.Merge.Snapshot != nil {
		devs = append(devs, dev{name: l.Merge.Snapshot.Name, isOld: true})
	}
	infos := make([]dm.Info, len(devs))
	var errs []error
	for i, d := range devs {
		info, err := c.Info(d.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		infos[i] = info
		if info.InactivePresent && !d.isOld {
			errs = append(errs, c.ClearInactive(d.name))
		}
	}
	for i, d := range devs {
		info := infos[i]
		if d.isOld && (info.Suspended || info.InactivePresent) {
			if !info.InactivePresent {
				lines := []dm.TargetLine{{Length: l.Size(), Type: dm.TypeError}}
				if err := c.Load(d.name, lines, dm.LoadOptions{}); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			_, err := c.Resume(d.name)
			errs = append(errs, err)
			continue
		}
		if info.Suspended {
			_, err := c.Resume(d.name)
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recover %s: %w", name, err)
	}
	return nil
}
