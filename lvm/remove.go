package lvm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dmsnap/dmsnap/dm"
)

// RemoveSnapshotDevices removes the snapshot name from the pool and its
// devices from the kernel:
//
//  1. commit an [OpSnapshotRemove] record; the snapshot, and so its COW
//     extents, stay in the description;
//  2. --force on an open snapshot: swap in an error table, so that its
//     users get EIO instead of hanging and it lets go of -cow and -real;
//  3. last snapshot: load the origin's linear table into its inactive
//     slot (same name, number and UUID);
//  4. suspend the origin, remove the snapshot, resume the origin;
//  5. remove <snap>-cow, and -real after the last snapshot;
//  6. commit the description without the snapshot and the record.
//
// The extents become free in step 6 only, once nothing maps them (see
// docs/decisions.md). A snapshot that stays busy through the retries of
// step 4 is put back: the origin's inactive table is cleared and the
// record dropped, so the pool is as before. A failure after step 4
// leaves the record, and the extents allocated, until [RecoverSnapshots]
// (dmsnap activate) finishes the removal; meanwhile
// [SettleForAllocation] refuses to allocate. An open snapshot is refused
// with [ErrSnapshotOpen] unless force, which removes it at its last
// close (deferred remove) if it is still held.
func RemoveSnapshotDevices(ctx context.Context, s *Store, env SnapshotEnv, name string, force bool) (res SnapshotResult, err error) {
	p := s.Pool
	v, rec, err := snapshotOf(p, name)
	if err != nil {
		return res, err
	}
	if rec.State == SnapshotMerging {
		return res, fmt.Errorf("snapshot %s/%s is merging: %w", p.Name, name, ErrInUse)
	}
	next, err := p.RemoveSnapshot(name)
	if err != nil {
		return res, err
	}
	k := env.Kernel
	if k == nil {
		return res, s.Commit(next)
	}
	snapName := DMName(p.Name, name, LayerNone)
	snapInfo, err := k.Info(snapName)
	if err != nil && !errors.Is(err, dm.ErrNotFound) {
		return res, err
	}
	if err == nil && snapInfo.UUID != DMUUID(p.UUID, v.UUID, LayerNone) {
		return res, fmt.Errorf("remove %s/%s: device %s has uuid %q: %w", p.Name, name, snapName, snapInfo.UUID, ErrConflict)
	}
	if err == nil && snapInfo.OpenCount > 0 && !force {
		return res, fmt.Errorf("remove %s/%s: device %s is open %d times (unmount it, or --force): %w", p.Name, name, snapName, snapInfo.OpenCount, ErrSnapshotOpen)
	}

	// 1. The intent, with the extents still allocated.
	pending, opID := p.AddPending(PendingOp{Op: OpSnapshotRemove, Volume: v.UUID, Args: map[string]string{"origin": string(rec.Origin)}})
	if err := s.Commit(pending); err != nil {
		return res, fmt.Errorf("remove %s/%s: %w", p.Name, name, err)
	}
	env.logf("committed metadata with pending %s (seqno %d)", OpSnapshotRemove, s.Pool.Seqno)
	failpointHit("lvm.snapshot.remove.after-intent")

	// 2-5.
	res, kept, err := teardownSnapshot(ctx, k, s.Pool, next, env, v, force)
	if err != nil {
		err = fmt.Errorf("remove %s/%s: %w", p.Name, name, err)
		if !kept {
			return res, fmt.Errorf("%w (the snapshot's extents stay allocated; dmsnap activate %s finishes the removal)", err, p.Name)
		}
		// Nothing changed that activation would not rebuild: drop the
		// record, keeping the snapshot.
		if cerr := s.Commit(s.Pool.RemovePending(opID)); cerr != nil {
			return res, errors.Join(err, fmt.Errorf("undo: %w", cerr))
		}
		return res, fmt.Errorf("%w (the snapshot is kept)", err)
	}
	// 6. Free the extents.
	if err := s.Commit(next); err != nil {
		return res, fmt.Errorf("remove %s/%s: %w (dmsnap activate %s finishes the removal)", p.Name, name, err, p.Name)
	}
	env.logf("committed metadata without %s (seqno %d)", name, s.Pool.Seqno)
	failpointHit("lvm.snapshot.remove.after-commit")
	return res, nil
}

// teardownSnapshot runs steps 2 to 5 of [RemoveSnapshotDevices] for the
// snapshot whose COW volume is v in p; next is p without it. Devices
// already gone are skipped and a half-done suspend window is undone
// first, so that recovery can run it again after a crash at any step.
// kept reports that the snapshot device is still there with its
// snapshot table and the origin's table unchanged: the pool is as it was.
func teardownSnapshot(ctx context.Context, k SnapshotKernel, p, next *Pool, env SnapshotEnv, v *Volume, force bool) (res SnapshotResult, kept bool, err error) {
	rec := p.SnapshotByCOW(v.UUID)
	origin := p.VolumeByUUID(rec.Origin)
	last := next.VolumeByUUID(rec.Origin).Kind == KindPlain
	originName := DMName(p.Name, origin.Name, LayerNone)
	realName := DMName(p.Name, origin.Name, LayerReal)
	cowName := DMName(p.Name, v.Name, LayerCOW)
	snapName := DMName(p.Name, v.Name, LayerNone)
	kept = true

	snapInfo, err := k.Info(snapName)
	haveSnap := err == nil
	if err != nil && !errors.Is(err, dm.ErrNotFound) {
		return res, kept, err
	}
	if haveSnap && snapInfo.UUID != DMUUID(p.UUID, v.UUID, LayerNone) {
		return res, kept, fmt.Errorf("device %s has uuid %q: %w", snapName, snapInfo.UUID, ErrConflict)
	}
	originLive, originInfo, err := liveTable(k, originName)
	if err != nil {
		return res, kept, err
	}
	if originInfo != nil && (originInfo.Suspended || originInfo.InactivePresent) {
		// A crash inside an earlier window: back to the live table.
		if originInfo.InactivePresent {
			if err := k.ClearInactive(originName); err != nil {
				return res, kept, err
			}
		}
		if originInfo.Suspended {
			if _, err := k.Resume(originName); err != nil {
				return res, kept, err
			}
		}
	}
	var linear []dm.TargetLine
	if last && originInfo != nil {
		plan, err := planned(next, env.Devs)
		if err != nil {
			return res, kept, err
		}
		d, ok := plan[originName]
		if !ok {
			return res, kept, fmt.Errorf("origin %s: a PV is missing: %w", originName, ErrMissingPV)
		}
		if linear, err = ResolveLines(d.Lines, kernelDevnum(k)); err != nil {
			return res, kept, err
		}
		if slices.Equal(linear, originLive) {
			linear = nil // already swapped back
		}
	}
	if !haveSnap || linear == nil && originInfo != nil && last {
		kept = false // the snapshot or the origin's snapshot-origin is gone
	}
	if haveSnap && snapInfo.OpenCount > 0 && force {
		// An error table first, so that its users get EIO instead of
		// hanging, and the snapshot lets go of its COW.
		errLine := dm.Segment{Length: p.Sectors(origin.Extents()), Target: dm.Error{}}.Line()
		if err := k.Load(snapName, []dm.TargetLine{errLine}, dm.LoadOptions{}); err != nil {
			return res, kept, err
		}
		kept = false
		if _, err := k.Resume(snapName); err != nil {
			return res, kept, errors.Join(err, k.ClearInactive(snapName))
		}
		env.logf("swapped an error table into open %s", snapName)
	}
	removeSnap := func() error {
		// No retry inside the window: the origin would stay suspended
		// while it waits. RetryBusy retries the whole window instead.
		err := k.Remove(snapName, dm.RemoveOptions{NoRetry: true})
		if errors.Is(err, dm.ErrBusy) && force {
			err = k.Remove(snapName, dm.RemoveOptions{Deferred: true})
		}
		if errors.Is(err, dm.ErrNotFound) {
			return nil
		}
		return err
	}
	window := func() error {
		if linear != nil {
			if err := k.Load(originName, linear, dm.LoadOptions{}); err != nil {
				return err
			}
			env.logf("loaded %s into the inactive slot of %s", linear[0], originName)
			failpointHit("lvm.snapshot.remove.after-origin-load")
		}
		start := time.Now()
		err := k.WithSuspended(ctx, originName, suspendOrigin, func() error {
			if haveSnap {
				if err := removeSnap(); err != nil {
					if linear != nil {
						// Resuming must not swap in linear under
						// a live snapshot.
						return errors.Join(err, k.ClearInactive(originName))
					}
					return err
				}
			}
			failpointHit("lvm.snapshot.remove.suspended")
			return nil
		})
		res.Suspended = time.Since(start)
		if err != nil && linear != nil {
			// Never leave linear loaded under a live snapshot (a
			// failed suspend, a cancelled ctx): a later resume would
			// swap it in.
			err = errors.Join(err, k.ClearInactive(originName))
		}
		return err
	}
	switch {
	case originInfo != nil && (haveSnap || linear != nil):
		err = dm.RetryBusy(ctx, window)
		if err == nil {
			env.logf("origin %s suspended for %s: removed %s", originName, res.Suspended, snapName)
		}
	case haveSnap:
		err = dm.RetryBusy(ctx, removeSnap)
	}
	if err != nil {
		if _, ierr := k.Info(snapName); errors.Is(ierr, dm.ErrNotFound) {
			kept = false // removed, but the origin's resume failed
		}
		return res, kept, err
	}
	res.Active = originInfo != nil || haveSnap
	kept = false
	failpointHit("lvm.snapshot.remove.after-snapshot")
	rm := []string{cowName}
	if last {
		rm = append(rm, realName)
	}
	var errs []error
	for _, n := range rm {
		err := k.Remove(n, dm.RemoveOptions{})
		if errors.Is(err, dm.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Active = true
		env.logf("removed %s", n)
	}
	return res, kept, errors.Join(errs...)
}

// recoverRemove finishes the interrupted removal op of p, returning p
// without the snapshot and the record. A snapshot that is intact and
// open (mounted since the crash) is kept instead: its removal would
// need --force.
func recoverRemove(ctx context.Context, k SnapshotKernel, p *Pool, env SnapshotEnv, op PendingOp, warn func(string, ...any)) (*Pool, error) {
	without := p.RemovePending(op.ID)
	v := p.VolumeByUUID(op.Volume)
	if v == nil || p.SnapshotByCOW(op.Volume) == nil {
		return without, nil
	}
	next, err := without.RemoveSnapshot(v.Name)
	if err != nil {
		return nil, err
	}
	snapName := DMName(p.Name, v.Name, LayerNone)
	if info, err := k.Info(snapName); err == nil && info.OpenCount > 0 {
		lines, _, terr := k.Table(snapName, dm.TableOptions{})
		if terr == nil && len(lines) == 1 && lines[0].Type == dm.TypeSnapshot {
			warn("snapshot %s/%s: removal was interrupted and the snapshot is open now; kept (dmsnap remove it again)", p.Name, v.Name)
			return without, nil
		}
	}
	if _, _, err := teardownSnapshot(ctx, k, p, next, env, v, true); err != nil {
		return nil, fmt.Errorf("finish removal of snapshot %s/%s: %w", p.Name, v.Name, err)
	}
	warn("snapshot %s/%s: removal was interrupted; finished", p.Name, v.Name)
	return next, nil
}

// ErrUnsettled: the pool has an unfinished snapshot operation, or a
// device its metadata does not list, either of which may still map
// extents that the metadata has free. dmsnap activate settles it.
var ErrUnsettled = errors.New("unsettled pool")

// lifecycleOp reports whether op is a snapshot-lifecycle record that
// must be settled before allocating. Merge records are not: their
// snapshot and its extents stay in the description until the merge has
// finished and its devices are gone.
func lifecycleOp(op PendingOp) bool {
	switch op.Op {
	case OpSnapshotCreate, OpSnapshotExtend, OpSnapshotRemove:
		return true
	}
	return false
}

// SettleForAllocation makes it safe to allocate extents of s's pool. A
// pending snapshot create, extend or remove is finished or rolled back
// by [RecoverSnapshots] (as dmsnap activate does), and the result
// committed; then a device of
// the pool whose volume the metadata no longer has (a leftover of a
// crash) is refused with [ErrUnsettled], naming it, because its extents
// are free in the metadata but still mapped. With no kernel
// (env.Kernel nil), a pending record is refused, naming it.
func SettleForAllocation(ctx context.Context, s *Store, env SnapshotEnv) ([]Warning, error) {
	p := s.Pool
	k := env.Kernel
	var warns []Warning
	if slices.ContainsFunc(p.Pending, lifecycleOp) {
		if k == nil {
			var what []string
			for _, op := range p.Pending {
				if lifecycleOp(op) {
					what = append(what, pendingName(p, op))
				}
			}
			return nil, fmt.Errorf("pool %s has unfinished %s; dmsnap activate %s finishes it first: %w", p.Name, strings.Join(what, ", "), p.Name, ErrUnsettled)
		}
		next, w, err := RecoverSnapshots(ctx, k, p, env)
		if err != nil {
			return nil, fmt.Errorf("pool %s: settle %s: %w", p.Name, pendingName(p, p.Pending[slices.IndexFunc(p.Pending, lifecycleOp)]), err)
		}
		warns = w
		if next != p {
			if err := s.Commit(next); err != nil {
				return warns, fmt.Errorf("pool %s: %w", p.Name, err)
			}
			p = s.Pool
		}
	}
	if k == nil {
		return warns, nil
	}
	cur, err := CurrentDevices(k, p.UUID, nil)
	if err != nil {
		return warns, err
	}
	var left []string
	for _, d := range cur {
		if _, vol, _, err := ParseDMUUID(d.UUID); err != nil || p.VolumeByUUID(vol) == nil {
			left = append(left, d.Name)
		}
	}
	if len(left) > 0 {
		return warns, fmt.Errorf("pool %s: devices %s belong to the pool but to no volume in its metadata, and may map free extents; dmsnap activate %s removes them: %w",
			p.Name, strings.Join(left, ", "), p.Name, ErrUnsettled)
	}
	return warns, nil
}

// pendingName describes op for a message: "snapshot-remove of vg/snap".
func pendingName(p *Pool, op PendingOp) string {
	if v := p.VolumeByUUID(op.Volume); v != nil {
		return op.Op + " of " + p.Name + "/" + v.Name
	}
	return op.Op
}

// settle is [SettleForAllocation] with its warnings sent to env.Logf.
func settle(ctx context.Context, s *Store, env SnapshotEnv) error {
	warns, err := SettleForAllocation(ctx, s, env)
	for _, w := range warns {
		env.logf("%s", w.Msg)
	}
	return err
}
