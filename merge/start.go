package merge

import (
	"context"
	"errors"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
)

// Step is one kernel operation of the handover, in the only order the
// kernel accepts (see the package doc).
type Step string

// Handover steps, in order.
const (
	// StepLoadMerge loads snapshot-merge into the origin's inactive slot.
	StepLoadMerge Step = "load-merge"
	// StepLoadError loads the error target into the snapshot's inactive
	// slot (as LVM2 does), so nothing can use the handed-over snapshot.
	StepLoadError Step = "load-error"
	// StepSuspendSnapshot suspends the snapshot: the handover source must
	// be suspended when the merge target resumes.
	StepSuspendSnapshot Step = "suspend-snapshot"
	// StepSuspendOrigin suspends the origin.
	StepSuspendOrigin Step = "suspend-origin"
	// StepResumeOrigin resumes the origin with snapshot-merge: the
	// exceptions move over and the merge starts. Past this step there is
	// no rollback.
	StepResumeOrigin Step = "resume-origin"
	// StepResumeSnapshot resumes the old snapshot device with the error
	// target.
	StepResumeSnapshot Step = "resume-snapshot"
)

// Suspended reports whether [StartOptions.OnStep] for s runs while
// devices are suspended: the snapshot for StepSuspendOrigin and
// StepResumeSnapshot, both for StepResumeOrigin. Callers buffer what
// they would print there until Start returns.
func (s Step) Suspended() bool {
	return s == StepSuspendOrigin || s == StepResumeOrigin || s == StepResumeSnapshot
}

// StartOptions modify [Start].
type StartOptions struct {
	// Force starts the merge although the origin or the snapshot is open.
	// Without it, Start returns [ErrOriginOpen] or [ErrSnapshotOpen] so the
	// caller can defer the merge to the next activation, as LVM2 does.
	Force bool
	// OnStep, if set, is called before each step, so that the caller can
	// journal it. Returning an error before [StepResumeOrigin] aborts and
	// rolls back; an error at StepResumeSnapshot is returned but the step
	// still runs. OnStep for StepSuspendOrigin, StepResumeOrigin and
	// StepResumeSnapshot runs while devices are suspended: it must be
	// quick and must do no I/O to the origin, the snapshot or anything
	// stacked on them.
	OnStep func(Step) error
}

// Start hands the snapshot device snapshot over to a snapshot-merge table
// on its origin and returns at once; the kernel merges in the background
// ([Watch] follows it, [Finish] tidies up). The steps and their order are
// the [Step] constants. If any step before the handover fails, everything
// done so far is undone: the inactive tables loaded are cleared (the
// origin's first) and every device suspended is resumed; the rollback
// errors are joined to the returned error. Rollback runs whatever state
// ctx is in; ctx is only checked before the first change.
//
// Refusals, with nothing changed: [ErrNotSnapshot] (no such snapshot, or no
// visible origin over its real device), [ErrTransient], [ErrInvalidated],
// [ErrOverflow], [ErrAlreadyMerging], [ErrOriginOpen], [ErrSnapshotOpen]
// (unless Force), [ErrNotIdle]. After the handover, a failure to resume the
// old snapshot device wraps [ErrHandoverIncomplete]: the merge runs.
//
// Other snapshots of the origin keep their point in time: snapshot-merge
// copies every chunk out to them before changing it (see the package doc).
func Start(ctx context.Context, c Client, snapshot string, opts StartOptions) (Merge, error) {
	if err := ctx.Err(); err != nil {
		return Merge{}, fmt.Errorf("merge %s: %w", snapshot, err)
	}
	p, err := prepare(c, snapshot, opts.Force)
	if err != nil {
		return Merge{}, fmt.Errorf("merge %s: %w", snapshot, err)
	}
	if err := ctx.Err(); err != nil {
		return Merge{}, fmt.Errorf("merge %s: %w", snapshot, err)
	}
	h := &handover{c: c, p: p, hook: opts.OnStep}
	if err := h.run(); err != nil {
		return p.merge, fmt.Errorf("merge %s into %s: %w", snapshot, p.merge.Origin, err)
	}
	return p.merge, nil
}

// plan is a validated handover.
type plan struct {
	merge       Merge
	mergeLines  []dm.TargetLine
	originLines []dm.TargetLine // the origin's live table, restored on rollback
}

// prepare reads the kernel state and checks every precondition.
func prepare(c Client, snapshot string, force bool) (*plan, error) {
	s, err := scan(c)
	if err != nil {
		return nil, fmt.Errorf("scan device-mapper devices: %w", err)
	}
	l := s.find(snapshot)
	if l == nil {
		if d, ok := s.byName[snapshot]; !ok {
			return nil, fmt.Errorf("no such device-mapper device: %w", ErrNotSnapshot)
		} else if _, isSnap := d.single().(dm.Snapshot); isSnap {
			return nil, fmt.Errorf("no snapshot-origin device over its origin %s: %w", d.Table[0].Target.(dm.Snapshot).Origin, ErrNotSnapshot)
		}
		return nil, fmt.Errorf("table is not a snapshot: %w", ErrNotSnapshot)
	}
	if m := l.Merge; m != nil {
		what := "another snapshot"
		if m.Snapshot != nil && m.Snapshot.Name == snapshot {
			what = "this snapshot (watch it instead)"
		}
		return nil, fmt.Errorf("origin %s is already merging %s: %w", l.Origin.Name, what, ErrAlreadyMerging)
	}
	var sd *SnapshotDevice
	for i := range l.Snapshots {
		if l.Snapshots[i].Name == snapshot {
			sd = &l.Snapshots[i]
		}
	}
	if sd == nil {
		return nil, fmt.Errorf("is not a snapshot device but part of origin %s's layout: %w", l.Origin.Name, ErrNotSnapshot)
	}
	if !sd.Target.Store.IsPersistent() {
		return nil, fmt.Errorf("store %s: %w", sd.Target.Store, ErrTransient)
	}
	st, _, err := snapshotStatus(c, snapshot)
	if err != nil {
		return nil, err
	}
	switch st.State {
	case dm.SnapshotActive:
	case dm.SnapshotInvalid:
		return nil, ErrInvalidated
	case dm.SnapshotOverflow:
		return nil, fmt.Errorf("%w: the merge would report Overflow instead of its progress; deactivate and reactivate the snapshot (the flag is not persistent), then merge", ErrOverflow)
	default:
		return nil, fmt.Errorf("snapshot status %q: cannot merge", st.Params())
	}
	for _, name := range []string{l.Origin.Name, snapshot} {
		info, err := c.Info(name)
		if err != nil {
			return nil, err
		}
		if info.Suspended || info.InactivePresent {
			return nil, fmt.Errorf("%s (suspended %t, inactive table %t; an interrupted operation? see Recover): %w",
				name, info.Suspended, info.InactivePresent, ErrNotIdle)
		}
		if info.OpenCount > 0 && !force {
			sentinel, hint := ErrOriginOpen, "merge deferred: it can start on the next activation of the origin, or use force"
			if name == snapshot {
				sentinel, hint = ErrSnapshotOpen, "close it (its I/O fails once merged), or use force"
			}
			return nil, fmt.Errorf("%s is open %d times; %s: %w", name, info.OpenCount, hint, sentinel)
		}
	}
	target := dm.SnapshotMerge(sd.Target)
	mergeLines, err := dm.Table{{Start: 0, Length: l.Size(), Target: target}}.Lines()
	if err != nil {
		return nil, err
	}
	m := Merge{Owner: l.Owner, Origin: l.Origin.Name, RealDev: l.RealDev, Snapshot: snapshot,
		COWDev: sd.Target.COW, Target: target}
	if l.Real != nil {
		m.Real = l.Real.Name
	}
	if sd.COW != nil {
		m.COW = sd.COW.Name
	}
	return &plan{merge: m, mergeLines: mergeLines, originLines: l.Origin.Lines}, nil
}

// snapshotStatus reads the single snapshot or snapshot-merge status line of
// name.
func snapshotStatus(c Client, name string) (dm.SnapshotStatus, string, error) {
	lines, _, err := c.Status(name)
	if err != nil {
		return dm.SnapshotStatus{}, "", err
	}
	if len(lines) != 1 {
		return dm.SnapshotStatus{}, "", fmt.Errorf("status of %s has %d targets, want 1", name, len(lines))
	}
	typ := lines[0].Type
	if typ != dm.TypeSnapshot && typ != dm.TypeSnapshotMerge {
		return dm.SnapshotStatus{}, typ, nil
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return dm.SnapshotStatus{}, typ, fmt.Errorf("status of %s: %w", name, err)
	}
	return st, typ, nil
}

// handover runs the steps of a plan and rolls back on failure.
type handover struct {
	c    Client
	p    *plan
	hook func(Step) error
}

func (h *handover) step(s Step) error {
	if h.hook == nil {
		return nil
	}
	if err := h.hook(s); err != nil {
		return fmt.Errorf("step %s: %w", s, err)
	}
	return nil
}

// rollbackState records what has to be undone.
type rollbackState struct {
	loadedOrigin, loadedSnap   bool
	suspendedSnap, suspendedOr bool
	originResumeFailed         bool
}

func (h *handover) run() (err error) {
	c, origin, snap := h.c, h.p.merge.Origin, h.p.merge.Snapshot
	var rb rollbackState
	committed := false
	// Memory locked until after the last resume, the rollback's
	// included (this defer runs last), as dm.WithSuspended does; without
	// the lock we go on (see dm.LockMemory).
	unlock, _ := dm.LockMemory()
	defer unlock()
	// Runs on error and on panic (a hook may panic): undo everything
	// before the handover. The ioctls take no context, so cancellation
	// cannot stop the rollback.
	defer func() {
		if !committed {
			if rerr := h.rollback(rb); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
			}
		}
	}()

	if err := h.step(StepLoadMerge); err != nil {
		return err
	}
	rb.loadedOrigin = true // a failed load may still leave nothing; clearing is harmless
	if err := c.Load(origin, h.p.mergeLines, dm.LoadOptions{}); err != nil {
		return err
	}
	if err := h.step(StepLoadError); err != nil {
		return err
	}
	rb.loadedSnap = true
	errLines := []dm.TargetLine{{Start: 0, Length: h.p.mergeLines[0].Length, Type: dm.TypeError}}
	if err := c.Load(snap, errLines, dm.LoadOptions{}); err != nil {
		return err
	}
	if err := h.step(StepSuspendSnapshot); err != nil {
		return err
	}
	if err := c.Suspend(snap, dm.SuspendOptions{}); err != nil {
		rb.suspendedSnap = stillSuspended(c, snap)
		return err
	}
	rb.suspendedSnap = true
	if err := h.step(StepSuspendOrigin); err != nil {
		return err
	}
	if err := c.Suspend(origin, dm.SuspendOptions{}); err != nil {
		rb.suspendedOr = stillSuspended(c, origin)
		return err
	}
	rb.suspendedOr = true
	if err := h.step(StepResumeOrigin); err != nil {
		return err
	}
	if _, err := c.Resume(origin); err != nil {
		rb.originResumeFailed = true
		return err
	}
	committed = true

	// Past the handover: the merge runs. Resume the old snapshot device
	// with the error target whatever the hook says.
	herr := h.step(StepResumeSnapshot)
	if _, err := c.Resume(snap); err != nil {
		return errors.Join(herr, fmt.Errorf("%w: resume %s (Finish removes it): %w", ErrHandoverIncomplete, snap, err))
	}
	return herr
}

// stillSuspended asks the kernel whether a failed suspend left name
// suspended; if it cannot tell, it assumes so (an extra resume is
// harmless, a missing one blocks I/O).
func stillSuspended(c Client, name string) bool {
	info, err := c.Info(name)
	return err != nil || info.Suspended
}

// rollback undoes a handover that did not reach the origin's resume. The
// origin's inactive merge table goes first: while it exists the kernel
// refuses to resume the source snapshot. The snapshot's error table is
// cleared before the snapshot resumes, or the resume would swap it in.
func (h *handover) rollback(rb rollbackState) error {
	c, origin, snap := h.c, h.p.merge.Origin, h.p.merge.Snapshot
	var errs []error
	if rb.originResumeFailed {
		// The resume may have swapped the merge table in before failing
		// (a failing preresume leaves the new table live and the device
		// suspended): put the old table back.
		lines, _, err := c.Table(origin, dm.TableOptions{})
		switch {
		case err != nil:
			errs = append(errs, err)
		case len(lines) == 1 && lines[0].Type == dm.TypeSnapshotMerge:
			errs = append(errs, c.Load(origin, h.p.originLines, dm.LoadOptions{}))
		default:
			errs = append(errs, c.ClearInactive(origin))
		}
	} else if rb.loadedOrigin {
		errs = append(errs, c.ClearInactive(origin))
	}
	if rb.loadedSnap {
		errs = append(errs, c.ClearInactive(snap))
	}
	if rb.suspendedOr {
		_, err := c.Resume(origin)
		errs = append(errs, err)
	}
	if rb.suspendedSnap {
		_, err := c.Resume(snap)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
