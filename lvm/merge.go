package lvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/merge"
)

// OpMerge is the pending operation of a snapshot merge: Volume is the
// snapshot's COW volume, Args["origin"] its origin volume, Step one of
// [MergeDeferred] and [MergeStarted]. It stays in the metadata until the
// merge is finished and the snapshot dropped, so that activation after a
// crash or a reboot knows what to resume.
const OpMerge = "merge"

// Steps of an [OpMerge] record.
const (
	// MergeDeferred: the merge was asked for while the origin or the
	// snapshot was open; the snapshot is unchanged (state active) and
	// activation starts the merge once neither is open.
	MergeDeferred = "deferred"
	// MergeStarted: the snapshot's state is merging. It is committed
	// before the first kernel change of the handover; from then on the
	// pool's plan gives the origin the snapshot-merge table.
	MergeStarted = "started"
)

// MergeKernel is what a pool merge needs from device-mapper; *dm.Client
// implements it.
type MergeKernel interface {
	SnapshotKernel
	Suspend(name string, opts dm.SuspendOptions) error
}

var _ merge.Client = MergeKernel(nil)

// MergeOptions modify [StartMerge].
type MergeOptions struct {
	// Force starts the merge although the origin or the snapshot is open.
	Force bool
	// OnStep, if set, is called after the metadata hook of each handover
	// step (for --verbose). The steps that run while devices are
	// suspended (the last three) are reported once merge.Start has
	// returned and every device is resumed, so OnStep may write.
	OnStep func(merge.Step)
}

// MergeStart says what [StartMerge] did.
type MergeStart struct {
	// Started: the kernel merges now (the handover is done).
	Started bool
	// Deferred: the merge is recorded as pending; Reason says why (the
	// origin or the snapshot is open, or the origin is not active).
	Deferred bool
	Reason   string
	// Origin is the origin volume's name; OriginDevice its device name.
	Origin       string
	OriginDevice string
	// Others are the origin's other snapshots: they are kept, and their
	// COWs fill as the merge copies chunks back into the origin.
	Others []string
	// Merge names the kernel devices (when Started).
	Merge merge.Merge
}

// mergeOp returns the pending merge record of the snapshot whose COW
// volume is u, or nil.
func (p *Pool) mergeOp(u UUID) *PendingOp {
	for i := range p.Pending {
		if p.Pending[i].Op == OpMerge && p.Pending[i].Volume == u {
			return &p.Pending[i]
		}
	}
	return nil
}

// originMerge returns the name of the snapshot of origin u that merges or
// waits to merge, "" if none.
func (p *Pool) originMerge(u UUID) string {
	for _, s := range p.SnapshotsOf(u) {
		if s.State == SnapshotMerging || s.State == SnapshotMergeFailed || p.mergeOp(s.COW) != nil {
			return p.VolumeByUUID(s.COW).Name
		}
	}
	return ""
}

// withMergeStep returns a copy of p in which the snapshot with COW volume
// u has the pending merge record at step (added if missing) and state.
func (p *Pool) withMergeStep(u UUID, step string, state SnapshotState) *Pool {
	q := p.Clone()
	if op := q.mergeOp(u); op != nil {
		op.Step = step
	} else {
		q, _ = q.AddPending(PendingOp{Op: OpMerge, Volume: u, Step: step,
			Args: map[string]string{"origin": string(p.SnapshotByCOW(u).Origin)}})
	}
	q.SnapshotByCOW(u).State = state
	return q
}

// withoutMergeOp returns a copy of p without the pending merge record of
// the snapshot with COW volume u.
func (p *Pool) withoutMergeOp(u UUID) *Pool {
	if op := p.mergeOp(u); op != nil {
		return p.RemovePending(op.ID)
	}
	return p
}

// otherSnapshots returns the names of origin's snapshots but name.
func (p *Pool) otherSnapshots(origin UUID, name string) []string {
	out := []string{}
	for _, s := range p.SnapshotsOf(origin) {
		if n := p.VolumeByUUID(s.COW).Name; n != name {
			out = append(out, n)
		}
	}
	return out
}

// StartMerge merges the snapshot name back into its origin, LVM2's way:
//
//  1. refuse, with nothing changed, a transient (N) snapshot
//     ([merge.ErrTransient]), an invalid one ([merge.ErrInvalidated]),
//     one whose origin already merges or waits to merge a snapshot
//     ([merge.ErrAlreadyMerging]), an unknown name ([ErrNotFound]);
//  2. origin not active: commit the snapshot as merging; the next
//     activation builds the origin with snapshot-merge and the kernel
//     merges from there (LVM2: "Merging of snapshot X will occur on next
//     activation of Y");
//  3. origin or snapshot open and not opts.Force: commit an [OpMerge]
//     record at [MergeDeferred] and return Deferred (LVM2: "Delaying
//     merge since origin is open"); activation starts it later;
//  4. otherwise [merge.Start], whose first step commits the snapshot as
//     merging with an [OpMerge] record at [MergeStarted], before any
//     kernel change (never while a device is suspended). If the handover
//     is rolled back, the metadata is put back.
//
// Other snapshots of the origin are kept; the kernel copies every chunk
// the merge changes out to their COWs first, so those fill up.
func StartMerge(ctx context.Context, s *Store, env SnapshotEnv, name string, opts MergeOptions) (res MergeStart, err error) {
	p := s.Pool
	v, rec, err := snapshotOf(p, name)
	if err != nil {
		return res, err
	}
	origin := p.VolumeByUUID(rec.Origin)
	res.Origin = origin.Name
	res.OriginDevice = DMName(p.Name, origin.Name, LayerNone)
	res.Others = p.otherSnapshots(rec.Origin, name)
	switch {
	case !rec.Store.IsPersistent():
		return res, fmt.Errorf("merge %s/%s: store %s: %w", p.Name, name, rec.Store, merge.ErrTransient)
	case rec.State == SnapshotInvalid:
		return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, merge.ErrInvalidated)
	}
	if op := p.mergeOp(v.UUID); op != nil && op.Step == MergeDeferred {
		// Asked again (or by activation): try to start it now.
	} else if other := p.originMerge(rec.Origin); other != "" {
		what := "snapshot " + other
		if other == name {
			what = "this snapshot (dmsnap merge --watch " + p.Name + "/" + name + " follows it)"
		}
		return res, fmt.Errorf("merge %s/%s: origin %s/%s is already merging %s: %w", p.Name, name, p.Name, origin.Name, what, merge.ErrAlreadyMerging)
	}
	var mk MergeKernel
	if env.Kernel != nil {
		var ok bool
		if mk, ok = env.Kernel.(MergeKernel); !ok {
			return res, fmt.Errorf("merge %s/%s: the kernel interface cannot suspend: %w", p.Name, name, dm.ErrNotSupported)
		}
		if _, err := mk.Info(res.OriginDevice); errors.Is(err, dm.ErrNotFound) {
			mk = nil
		} else if err != nil {
			return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, err)
		}
	}
	if mk == nil {
		if err := s.Commit(p.withMergeStep(v.UUID, MergeStarted, SnapshotMerging)); err != nil {
			return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, err)
		}
		res.Deferred = true
		res.Reason = fmt.Sprintf("Merging of snapshot %s/%s will occur on next activation of %s/%s", p.Name, name, p.Name, origin.Name)
		return res, nil
	}
	snapDev := DMName(p.Name, name, LayerNone)
	committed := false
	later := make([]merge.Step, 0, 3) // no growth inside the window
	hook := func(step merge.Step) error {
		switch step {
		case merge.StepLoadMerge:
			// Before the first kernel change, and before any suspend.
			if err := s.Commit(s.Pool.withMergeStep(v.UUID, MergeStarted, SnapshotMerging)); err != nil {
				return err
			}
			committed = true
			env.logf("committed metadata: %s merging, pending %s (seqno %d)", name, OpMerge, s.Pool.Seqno)
			failpointHit("lvm.merge.after-intent")
		case merge.StepLoadError:
			failpointHit("lvm.merge.after-load-merge")
		case merge.StepSuspendSnapshot:
			failpointHit("lvm.merge.after-load-error")
		case merge.StepSuspendOrigin:
			failpointHit("lvm.merge.snapshot-suspended")
		case merge.StepResumeOrigin:
			failpointHit("lvm.merge.origin-suspended")
		case merge.StepResumeSnapshot:
			failpointHit("lvm.merge.after-handover")
		}
		if opts.OnStep == nil {
			return nil
		}
		// Steps inside the suspend window are reported after it: a
		// write to a blocked or closed stderr must not hold devices
		// suspended.
		if step.Suspended() {
			later = append(later, step)
		} else {
			opts.OnStep(step)
		}
		return nil
	}
	m, err := merge.Start(ctx, mk, snapDev, merge.StartOptions{Force: opts.Force, OnStep: hook})
	for _, st := range later {
		opts.OnStep(st)
	}
	switch {
	case err == nil:
	case !committed && (errors.Is(err, merge.ErrOriginOpen) || errors.Is(err, merge.ErrSnapshotOpen)):
		if cerr := s.Commit(p.withMergeStep(v.UUID, MergeDeferred, rec.State)); cerr != nil {
			return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, cerr)
		}
		what := "origin"
		if errors.Is(err, merge.ErrSnapshotOpen) {
			what = "snapshot"
		}
		res.Deferred = true
		res.Reason = fmt.Sprintf("Delaying merge since %s is open. Merging of snapshot %s/%s will occur on next activation of %s/%s",
			what, p.Name, name, p.Name, origin.Name)
		return res, nil
	case !committed:
		return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, err)
	case errors.Is(err, merge.ErrHandoverIncomplete):
		res.Started, res.Merge = true, m
		return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, err)
	default:
		// Rolled back before the handover, unless the origin runs
		// snapshot-merge after all.
		lines, _, terr := mk.Table(res.OriginDevice, dm.TableOptions{})
		if terr == nil && (len(lines) != 1 || lines[0].Type != dm.TypeSnapshotMerge) {
			if cerr := s.Commit(p); cerr != nil {
				return res, errors.Join(fmt.Errorf("merge %s/%s: %w", p.Name, name, err), cerr)
			}
		}
		return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, err)
	}
	failpointHit("lvm.merge.after-start")
	res.Started, res.Merge = true, m
	return res, nil
}

// MergeOf returns the kernel devices of the running (or finished but not
// yet tidied) merge of the snapshot name, for [merge.Watch] and
// [merge.Finish]. Errors wrap [merge.ErrNotMerging] when the metadata
// records no started merge of it.
func MergeOf(k MergeKernel, p *Pool, name string) (merge.Merge, error) {
	v, rec, err := snapshotOf(p, name)
	if err != nil {
		return merge.Merge{}, err
	}
	if op := p.mergeOp(v.UUID); op == nil || op.Step != MergeStarted {
		if op != nil {
			return merge.Merge{}, fmt.Errorf("merge %s/%s is deferred until the next activation of its origin: %w", p.Name, name, merge.ErrNotMerging)
		}
		return merge.Merge{}, fmt.Errorf("snapshot %s/%s: %w", p.Name, name, merge.ErrNotMerging)
	}
	origin := p.VolumeByUUID(rec.Origin)
	m := merge.Merge{Owner: merge.OwnerDMSnap, Origin: DMName(p.Name, origin.Name, LayerNone),
		Real: DMName(p.Name, origin.Name, LayerReal), Snapshot: DMName(p.Name, name, LayerNone),
		COW: DMName(p.Name, name, LayerCOW)}
	if info, err := k.Info(m.Real); err == nil {
		m.RealDev = info.Dev
	} else if !errors.Is(err, dm.ErrNotFound) {
		return m, err
	}
	if info, err := k.Info(m.COW); err == nil {
		m.COWDev = info.Dev
	} else if !errors.Is(err, dm.ErrNotFound) {
		return m, err
	}
	return m, nil
}

// FinishMerge completes the merge of the snapshot name once the kernel is
// done (allocated == metadata): [merge.Finish] swaps the origin back to
// snapshot-origin (other snapshots remain) or linear and removes the old
// snapshot device, its -cow and the unneeded -real; then the metadata
// drops the snapshot and its COW volume (its extents return to the pool),
// makes the origin plain when no snapshot remains, drops the [OpMerge]
// record and is committed. It is idempotent: after a crash in between,
// calling it again completes the work. Errors: [merge.ErrNotDone],
// [merge.ErrMergeFailed], [merge.ErrNotMerging].
func FinishMerge(ctx context.Context, s *Store, k MergeKernel, name string) (merge.FinishResult, error) {
	p := s.Pool
	m, err := MergeOf(k, p, name)
	if err != nil {
		return merge.FinishResult{}, err
	}
	res, err := merge.Finish(ctx, k, m)
	if err != nil {
		if errors.Is(err, merge.ErrMergeFailed) {
			if cerr := s.Commit(setState(p, name, SnapshotMergeFailed)); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return res, fmt.Errorf("merge %s/%s: %w", p.Name, name, err)
	}
	failpointHit("lvm.merge.finish.after-kernel")
	if err := s.Commit(dropMerged(p, name)); err != nil {
		return res, fmt.Errorf("merge %s/%s: %w (dmsnap activate %s completes it)", p.Name, name, err, p.Name)
	}
	return res, nil
}

// setState returns p with the snapshot's state set (p itself if unknown).
func setState(p *Pool, name string, st SnapshotState) *Pool {
	if q, err := p.SetSnapshotState(name, st); err == nil {
		return q
	}
	return p
}

// dropMerged returns p without the merged snapshot and its record.
func dropMerged(p *Pool, name string) *Pool {
	v := p.Volume(name)
	q := p.withoutMergeOp(v.UUID)
	if r, err := q.RemoveSnapshot(name); err == nil {
		return r
	}
	return q
}

// recoverMerges settles pending merges after a crash, before activation:
// a merge whose handover was interrupted is rolled back in the kernel
// ([merge.Recover]) and deferred again (activation starts it once the
// origin is closed); one whose origin still merges is kept (the kernel
// continues); one whose origin was already switched back by an
// interrupted [FinishMerge] has its snapshot dropped from the metadata.
// An inactive origin needs nothing: activation builds it with
// snapshot-merge.
func recoverMerges(ctx context.Context, k MergeKernel, p *Pool, warn func(string, ...any)) (*Pool, error) {
	next := p
	for _, op := range p.Pending {
		if op.Op != OpMerge {
			continue
		}
		cv := p.VolumeByUUID(op.Volume)
		rec := p.SnapshotByCOW(op.Volume)
		if cv == nil || rec == nil {
			next = next.RemovePending(op.ID)
			continue
		}
		if op.Step != MergeStarted {
			continue
		}
		origin := p.VolumeByUUID(rec.Origin)
		originDev := DMName(p.Name, origin.Name, LayerNone)
		if _, err := k.Info(originDev); errors.Is(err, dm.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		if err := merge.Recover(ctx, k, originDev); err != nil && !errors.Is(err, merge.ErrNotSnapshot) {
			return nil, err
		}
		lines, _, err := k.Table(originDev, dm.TableOptions{})
		if err != nil {
			return nil, err
		}
		if len(lines) == 1 && lines[0].Type == dm.TypeSnapshotMerge {
			continue // the kernel merges; activation keeps it
		}
		snapLines, _, err := liveTable(k, DMName(p.Name, cv.Name, LayerNone))
		if err != nil {
			return nil, err
		}
		if len(snapLines) == 1 && snapLines[0].Type == dm.TypeSnapshot {
			next = next.withMergeStep(cv.UUID, MergeDeferred, SnapshotActive)
			warn("merge of %s/%s was interrupted before the handover; rolled back, it starts again on activation", p.Name, cv.Name)
			continue
		}
		next = dropMerged(next, cv.Name)
		warn("merge of %s/%s had finished in the kernel; snapshot dropped from the metadata", p.Name, cv.Name)
	}
	return next, nil
}

// MergeEvent is one thing [SettleMerges] did.
type MergeEvent struct {
	// Snapshot is the snapshot's name; Origin its origin's.
	Snapshot string
	Origin   string
	// What: "started", "finished", "merging", "deferred", "failed".
	What   string
	Finish *merge.FinishResult
	Err    error
}

// SettleMerges runs after activation: it starts the deferred merges whose
// origin and snapshot are not open, marks merges the kernel reports as
// failed, and finishes those the kernel has completed (allocated ==
// metadata), committing the metadata. It returns one event per pending
// merge.
func SettleMerges(ctx context.Context, s *Store, env SnapshotEnv) ([]MergeEvent, error) {
	mk, ok := env.Kernel.(MergeKernel)
	if !ok || env.Kernel == nil {
		return nil, nil
	}
	var events []MergeEvent
	var errs []error
	for _, op := range s.Pool.Pending {
		if op.Op != OpMerge {
			continue
		}
		p := s.Pool
		cv := p.VolumeByUUID(op.Volume)
		rec := p.SnapshotByCOW(op.Volume)
		if cv == nil || rec == nil {
			continue
		}
		ev := MergeEvent{Snapshot: cv.Name, Origin: p.VolumeByUUID(rec.Origin).Name}
		originDev := DMName(p.Name, ev.Origin, LayerNone)
		if _, err := mk.Info(originDev); err != nil {
			continue // not activated (missing PVs)
		}
		if op.Step == MergeDeferred {
			r, err := StartMerge(ctx, s, env, cv.Name, MergeOptions{})
			switch {
			case err != nil:
				ev.What, ev.Err = "failed", err
				errs = append(errs, err)
			case r.Deferred:
				ev.What = "deferred"
			default:
				ev.What = "started"
			}
			events = append(events, ev)
			continue
		}
		st, err := mergeStatus(mk, originDev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case st.State == dm.SnapshotMergeFailed:
			if rec.State != SnapshotMergeFailed {
				if err := s.Commit(setState(p, cv.Name, SnapshotMergeFailed)); err != nil {
					errs = append(errs, err)
				}
			}
			ev.What, ev.Err = "failed", merge.ErrMergeFailed
		case st.State == dm.SnapshotActive && st.MergeDone():
			res, err := FinishMerge(ctx, s, mk, cv.Name)
			ev.What, ev.Finish, ev.Err = "finished", &res, err
			if err != nil {
				errs = append(errs, err)
			}
		default:
			ev.What = "merging"
		}
		events = append(events, ev)
	}
	return events, errors.Join(errs...)
}

// mergeStatus reads the snapshot-merge status of the origin device.
func mergeStatus(k MergeKernel, origin string) (dm.SnapshotStatus, error) {
	lines, _, err := k.Status(origin)
	if err != nil {
		return dm.SnapshotStatus{}, err
	}
	if len(lines) != 1 || lines[0].Type != dm.TypeSnapshotMerge {
		return dm.SnapshotStatus{}, fmt.Errorf("%s does not run snapshot-merge: %w", origin, merge.ErrNotMerging)
	}
	return dm.ParseSnapshotStatus(lines[0].Params)
}
