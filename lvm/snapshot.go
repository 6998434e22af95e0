package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/dm"
)

// Pending operations of the snapshot lifecycle, recorded in
// [Pool.Pending] before the first kernel change and removed after the
// last; [RecoverSnapshots] finishes or undoes them.
const (
	// OpSnapshotCreate: a snapshot is being created; Volume is its COW
	// volume.
	OpSnapshotCreate = "snapshot-create"
	// OpSnapshotExtend: a snapshot's COW grew in the metadata; the
	// snapshot table is to be reloaded so the kernel sees the new size.
	OpSnapshotExtend = "snapshot-extend"
	// OpSnapshotRemove: a snapshot is being removed; Volume is its COW
	// volume. The snapshot stays in the description, and so its extents
	// stay allocated, until every device of it is gone.
	OpSnapshotRemove = "snapshot-remove"
)

// MinSnapshotChunks is the smallest COW, in chunks: the header, one
// metadata area and one data chunk (LVM2's SNAPSHOT_MIN_CHUNKS).
const MinSnapshotChunks = 3

// ErrSnapshotOpen: the snapshot device is open (mounted, or held by a
// program) and the operation would pull it away.
var ErrSnapshotOpen = errors.New("snapshot is open")

// MinCOWSize returns the smallest COW a snapshot of chunk size chunk may
// have, [MinSnapshotChunks] chunks.
func MinCOWSize(chunk dm.Sector) dm.Sector { return MinSnapshotChunks * chunk }

// SnapshotKernel is what the snapshot lifecycle needs from device-mapper;
// *dm.Client implements it.
type SnapshotKernel interface {
	Kernel
	Info(name string) (dm.Info, error)
	Status(name string) ([]dm.TargetLine, dm.Info, error)
	WithSuspended(ctx context.Context, name string, opts dm.SuspendOptions, fn func() error) error
}

// SnapshotEnv is the environment of a snapshot operation.
type SnapshotEnv struct {
	// Kernel is nil to change the metadata only.
	Kernel SnapshotKernel
	// Devs maps each present PV to its device number.
	Devs map[UUID]dm.DevNum
	// ZeroCOW clears the header chunk of a fresh COW device before the
	// snapshot table is loaded; nil opens info.BlockPath() and calls
	// [cow.Zero].
	ZeroCOW func(info dm.Info, chunk dm.Sector) error
	// Logf, if set, receives one line per step (--verbose).
	Logf func(format string, args ...any)
}

func (e *SnapshotEnv) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// SnapshotResult reports what a snapshot operation did.
type SnapshotResult struct {
	// Active is set when the kernel devices were changed (the origin was
	// active); otherwise only the metadata changed.
	Active bool
	// Suspended is how long the origin was suspended: from the suspend
	// ioctl to the return of its resume.
	Suspended time.Duration
}

// zeroCOWDevice clears the start of a COW device through its /dev/dm-N
// node, so that the kernel formats a fresh exception store.
func zeroCOWDevice(info dm.Info, chunk dm.Sector) error {
	f, err := os.OpenFile(info.BlockPath(), os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("zero cow: %w", err)
	}
	err = cow.Zero(f, uint32(chunk))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	return errors.Join(err, f.Close())
}

// planned returns the desired devices of p by name.
func planned(p *Pool, devs map[UUID]dm.DevNum) (map[string]DesiredDevice, error) {
	desired, _, err := Plan(p, devs, PlanOptions{Partial: true})
	if err != nil {
		return nil, err
	}
	out := make(map[string]DesiredDevice, len(desired))
	for _, d := range desired {
		out[d.Name] = d
	}
	return out, nil
}

// kernelDevnum resolves "{name}" references by asking the kernel.
func kernelDevnum(k SnapshotKernel) func(string) (dm.DevNum, bool) {
	return func(name string) (dm.DevNum, bool) {
		info, err := k.Info(name)
		if err != nil {
			return dm.DevNum{}, false
		}
		return info.Dev, true
	}
}

// liveTable returns the live table of name, nil if the device does not
// exist.
func liveTable(k SnapshotKernel, name string) ([]dm.TargetLine, *dm.Info, error) {
	lines, info, err := k.Table(name, dm.TableOptions{})
	if errors.Is(err, dm.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return lines, &info, nil
}

// suspendOrigin are the suspend options of an origin's table swap: flush
// in-flight I/O and freeze a mounted filesystem, as LVM2 does for a thick
// snapshot.
var suspendOrigin = dm.SuspendOptions{}

// CreateSnapshot adds the snapshot spec to the pool and, when the origin
// is active, builds its devices with LVM2's layout and ordering:
//
//  1. commit the metadata with the snapshot and an [OpSnapshotCreate]
//     pending record;
//  2. create and resume <snap>-cow, zero its header chunk;
//  3. first snapshot only: create <origin>-real with the origin's linear
//     table (not resumed);
//  4. create <snap> and load its snapshot table (the kernel reads the COW);
//  5. first snapshot only: load snapshot-origin into the origin's
//     inactive slot;
//  6. suspend the origin (flush, lockfs); resume -real, the snapshot,
//     then the origin; this window is SnapshotResult.Suspended;
//  7. commit the metadata without the pending record.
//
// A failure undoes the kernel steps and the metadata. A crash leaves the
// pending record; [RecoverSnapshots] then keeps a snapshot whose swap
// completed and removes any other. The origin keeps its name, device
// number and DM UUID. It allocates only after [SettleForAllocation].
// Errors wrap [ErrNotFound], [ErrExists], [ErrNoSpace], [ErrInUse]
// (snapshot of a snapshot), [ErrConflict], [ErrUnsettled] or kernel
// errors.
func CreateSnapshot(ctx context.Context, s *Store, env SnapshotEnv, spec SnapshotSpec) (res SnapshotResult, err error) {
	if err := settle(ctx, s, env); err != nil {
		return res, fmt.Errorf("snapshot %s/%s: %w", s.Pool.Name, spec.Name, err)
	}
	p := s.Pool
	with, err := p.AddSnapshot(spec)
	if err != nil {
		return res, err
	}
	originVol := with.Volume(spec.Origin)
	cowVol := with.Volume(spec.Name)
	first := p.Volume(spec.Origin).Kind == KindPlain
	k := env.Kernel
	originName := DMName(p.Name, spec.Origin, LayerNone)
	realName := DMName(p.Name, spec.Origin, LayerReal)
	cowName := DMName(p.Name, spec.Name, LayerCOW)
	snapName := DMName(p.Name, spec.Name, LayerNone)

	var originLive []dm.TargetLine
	var originInfo *dm.Info
	if k != nil {
		if originLive, originInfo, err = liveTable(k, originName); err != nil {
			return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
	}
	if originInfo == nil {
		if spec.Store == dm.Transient {
			return res, fmt.Errorf("snapshot %s/%s: origin %s is not active, and a transient (N) snapshot exists only while active: %w", p.Name, spec.Name, spec.Origin, ErrInUse)
		}
		// Origin inactive: the snapshot is taken now, in the metadata;
		// activation builds its devices.
		if err := s.Commit(with); err != nil {
			return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
		return res, nil
	}
	if originInfo.UUID != DMUUID(p.UUID, originVol.UUID, LayerNone) {
		return res, fmt.Errorf("snapshot %s/%s: device %s has uuid %q, not the origin's: %w", p.Name, spec.Name, originName, originInfo.UUID, ErrConflict)
	}
	for _, n := range []string{cowName, snapName} {
		if _, err := k.Info(n); err == nil {
			return res, fmt.Errorf("snapshot %s/%s: device %s exists: %w", p.Name, spec.Name, n, ErrConflict)
		}
	}
	before, err := planned(p, env.Devs)
	if err != nil {
		return res, err
	}
	if first {
		if _, err := k.Info(realName); err == nil {
			return res, fmt.Errorf("snapshot %s/%s: device %s exists: %w", p.Name, spec.Name, realName, ErrConflict)
		}
		want, err := ResolveLines(before[originName].Lines, kernelDevnum(k))
		if err != nil || !slices.Equal(want, originLive) {
			return res, fmt.Errorf("snapshot %s/%s: origin device %s does not have the table its metadata describes (run dmsnap activate %s): %w",
				p.Name, spec.Name, originName, p.Name, ErrConflict)
		}
	}
	after, err := planned(with, env.Devs)
	if err != nil {
		return res, err
	}

	// 1. Record the intent.
	pending, opID := with.AddPending(PendingOp{Op: OpSnapshotCreate, Volume: cowVol.UUID, Args: map[string]string{"origin": string(originVol.UUID)}})
	if err := s.Commit(pending); err != nil {
		return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
	}
	env.logf("committed metadata with pending %s (seqno %d)", OpSnapshotCreate, s.Pool.Seqno)
	failpointHit("lvm.snapshot.after-intent")

	res.Active = true
	var created []string // devices to remove on failure, in creation order
	originLoaded := false
	swapped := false
	defer func() {
		if err == nil || swapped {
			return
		}
		var errs []error
		if originLoaded {
			errs = append(errs, k.ClearInactive(originName))
		}
		for i := len(created) - 1; i >= 0; i-- {
			if rerr := k.Remove(created[i], dm.RemoveOptions{}); rerr != nil && !errors.Is(rerr, dm.ErrNotFound) {
				errs = append(errs, fmt.Errorf("undo: remove %s: %w", created[i], rerr))
			}
		}
		if rerr := errors.Join(errs...); rerr != nil {
			err = errors.Join(err, rerr)
			return // leave the pending record for activation
		}
		if cerr := s.Commit(p); cerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", cerr))
		}
	}()
	devnum := kernelDevnum(k)
	create := func(name string, resume bool) (dm.Info, error) {
		d := after[name]
		lines, err := ResolveLines(d.Lines, devnum)
		if err != nil {
			return dm.Info{}, fmt.Errorf("snapshot %s/%s: %s: %w", p.Name, spec.Name, name, err)
		}
		info, err := k.Create(name, d.UUID)
		if err != nil {
			return dm.Info{}, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
		created = append(created, name)
		if err := k.Load(name, lines, dm.LoadOptions{ReadOnly: d.ReadOnly}); err != nil {
			return dm.Info{}, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
		env.logf("created %s, loaded %s", name, lines[0])
		if !resume {
			return info, nil
		}
		if info, err = k.Resume(name); err != nil {
			return dm.Info{}, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
		env.logf("resumed %s", name)
		return info, nil
	}

	// 2. The COW, resumed and zeroed: the snapshot constructor reads it.
	cowInfo, err := create(cowName, true)
	if err != nil {
		return res, err
	}
	zero := env.ZeroCOW
	if zero == nil {
		zero = zeroCOWDevice
	}
	if err := zero(cowInfo, spec.ChunkSize); err != nil {
		return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
	}
	env.logf("zeroed the header chunk of %s", cowName)
	failpointHit("lvm.snapshot.after-cow")
	// 3. -real, with the origin's current (linear) table.
	if first {
		if _, err := create(realName, false); err != nil {
			return res, err
		}
		failpointHit("lvm.snapshot.after-real")
	}
	// 4. The snapshot table.
	if _, err := create(snapName, false); err != nil {
		return res, err
	}
	failpointHit("lvm.snapshot.after-snapshot-load")
	// 5. snapshot-origin into the origin's inactive slot.
	if first {
		lines, err := ResolveLines(after[originName].Lines, devnum)
		if err != nil {
			return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
		if err := k.Load(originName, lines, dm.LoadOptions{}); err != nil {
			return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
		}
		originLoaded = true
		env.logf("loaded %s into the inactive slot of %s", lines[0], originName)
		failpointHit("lvm.snapshot.after-origin-load")
	}
	// 6. The table swap: the only moment the origin is suspended.
	start := time.Now()
	err = k.WithSuspended(ctx, originName, suspendOrigin, func() error {
		if first {
			if _, err := k.Resume(realName); err != nil {
				return errors.Join(err, k.ClearInactive(originName))
			}
		}
		if _, err := k.Resume(snapName); err != nil {
			var cerr error
			if first {
				cerr = k.ClearInactive(originName)
			}
			return errors.Join(err, cerr)
		}
		failpointHit("lvm.snapshot.suspended")
		return nil
	})
	res.Suspended = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
	}
	swapped = true
	env.logf("origin %s suspended for %s: resumed %s", originName, res.Suspended, snapName)
	failpointHit("lvm.snapshot.after-swap")
	// 7. Done: drop the intent.
	if err := s.Commit(s.Pool.RemovePending(opID)); err != nil {
		// The snapshot is complete; activation drops the record.
		return res, fmt.Errorf("snapshot %s/%s: %w", p.Name, spec.Name, err)
	}
	return res, nil
}

// snapshotOf returns the COW volume and the record of the snapshot name.
func snapshotOf(p *Pool, name string) (*Volume, *Snapshot, error) {
	v := p.Volume(name)
	if v == nil {
		return nil, nil, fmt.Errorf("snapshot %s/%s: %w", p.Name, name, ErrNotFound)
	}
	s := p.SnapshotByCOW(v.UUID)
	if s == nil {
		return nil, nil, fmt.Errorf("%s/%s is a %s volume, not a snapshot: %w", p.Name, name, v.Kind, ErrNotFound)
	}
	return v, s, nil
}

// ExtendSnapshot grows the COW of the snapshot name by n extents. When
// active, the -cow device is reloaded with the new segment, then the
// snapshot table is reloaded (an exception-store handover inside the
// kernel) while the origin is suspended, so the kernel's total grows.
// The metadata, with an [OpSnapshotExtend] record, is committed first;
// it allocates only after [SettleForAllocation].
func ExtendSnapshot(ctx context.Context, s *Store, env SnapshotEnv, name string, n ExtentCount) (res SnapshotResult, err error) {
	if err := settle(ctx, s, env); err != nil {
		return res, fmt.Errorf("extend %s/%s: %w", s.Pool.Name, name, err)
	}
	p := s.Pool
	v, rec, err := snapshotOf(p, name)
	if err != nil {
		return res, err
	}
	if rec.State == SnapshotMerging {
		return res, fmt.Errorf("snapshot %s/%s is merging: %w", p.Name, name, ErrInUse)
	}
	next, err := p.ExtendVolume(name, n)
	if err != nil {
		return res, err
	}
	k := env.Kernel
	cowName := DMName(p.Name, name, LayerCOW)
	if k != nil {
		if _, err := k.Info(cowName); errors.Is(err, dm.ErrNotFound) {
			k = nil
		} else if err != nil {
			return res, err
		}
	}
	if k == nil {
		return res, s.Commit(next)
	}
	pending, opID := next.AddPending(PendingOp{Op: OpSnapshotExtend, Volume: v.UUID})
	if err := s.Commit(pending); err != nil {
		return res, fmt.Errorf("extend %s/%s: %w", p.Name, name, err)
	}
	failpointHit("lvm.snapshot.extend.after-intent")
	res.Active = true
	if res.Suspended, err = reloadSnapshot(ctx, k, s.Pool, env, v.UUID); err != nil {
		return res, fmt.Errorf("extend %s/%s: %w (the metadata has the new size; dmsnap activate %s retries)", p.Name, name, err, p.Name)
	}
	failpointHit("lvm.snapshot.extend.after-reload")
	if err := s.Commit(s.Pool.RemovePending(opID)); err != nil {
		return res, fmt.Errorf("extend %s/%s: %w", p.Name, name, err)
	}
	return res, nil
}

// reloadSnapshot reloads the -cow device of the snapshot with COW volume
// u to its planned table, then the snapshot table under a suspended
// origin.
func reloadSnapshot(ctx context.Context, k SnapshotKernel, p *Pool, env SnapshotEnv, u UUID) (time.Duration, error) {
	v := p.VolumeByUUID(u)
	rec := p.SnapshotByCOW(u)
	origin := p.VolumeByUUID(rec.Origin)
	plan, err := planned(p, env.Devs)
	if err != nil {
		return 0, err
	}
	devnum := kernelDevnum(k)
	cowName := DMName(p.Name, v.Name, LayerCOW)
	snapName := DMName(p.Name, v.Name, LayerNone)
	originName := DMName(p.Name, origin.Name, LayerNone)
	lines, err := ResolveLines(plan[cowName].Lines, devnum)
	if err != nil {
		return 0, err
	}
	if err := k.Load(cowName, lines, dm.LoadOptions{}); err != nil {
		return 0, err
	}
	if _, err := k.Resume(cowName); err != nil {
		return 0, errors.Join(err, k.ClearInactive(cowName))
	}
	env.logf("reloaded %s: %d segments", cowName, len(lines))
	failpointHit("lvm.snapshot.extend.after-cow")
	d := plan[snapName]
	snapInfo, err := k.Info(snapName)
	if err != nil || d.Lines[0].Type != dm.TypeSnapshot {
		return 0, nil // not active, or merging: nothing to reload
	}
	snapLines, err := ResolveLines(d.Lines, devnum)
	if err != nil {
		return 0, err
	}
	if snapInfo.InactivePresent {
		// A reload killed between its load and its resume: the inactive
		// snapshot table already holds the COW for the exception-store
		// handover, and the kernel refuses a second (EINVAL).
		if err := k.ClearInactive(snapName); err != nil {
			return 0, err
		}
		env.logf("cleared the inactive table of %s left by an interrupted reload", snapName)
	}
	if err := k.Load(snapName, snapLines, dm.LoadOptions{ReadOnly: d.ReadOnly}); err != nil {
		return 0, err
	}
	failpointHit("lvm.snapshot.extend.after-snapshot-load")
	start := time.Now()
	err = k.WithSuspended(ctx, originName, suspendOrigin, func() error {
		if _, err := k.Resume(snapName); err != nil {
			return errors.Join(err, k.ClearInactive(snapName))
		}
		failpointHit("lvm.snapshot.extend.suspended")
		return nil
	})
	took := time.Since(start)
	env.logf("origin %s suspended for %s: reloaded %s", originName, took, snapName)
	return took, err
}

// RenameSnapshot renames the snapshot (its COW volume) and its active
// devices <snap> and <snap>-cow. The metadata is committed first, in one
// commit, so no intent record is needed: before it completes the old
// name wins, after it the new one, and a crash before or between the
// device renames leaves devices whose DM UUIDs (which a rename keeps)
// name their volume, so [Reconcile] renames them to the committed name.
// Both snapshot tables refer to their -cow and -real by device number,
// which a rename keeps too (tested by TestCrashSnapshotRenameKernel).
func RenameSnapshot(_ context.Context, s *Store, env SnapshotEnv, oldName, newName string) error {
	p := s.Pool
	if _, _, err := snapshotOf(p, oldName); err != nil {
		return err
	}
	next, err := p.RenameVolume(oldName, newName)
	if err != nil {
		return err
	}
	k := env.Kernel
	pairs := [][2]string{
		{DMName(p.Name, oldName, LayerNone), DMName(p.Name, newName, LayerNone)},
		{DMName(p.Name, oldName, LayerCOW), DMName(p.Name, newName, LayerCOW)},
	}
	if k != nil {
		for _, pr := range pairs {
			if _, err := k.Info(pr[1]); err == nil {
				return fmt.Errorf("rename %s/%s: device %s exists: %w", p.Name, oldName, pr[1], ErrConflict)
			}
		}
	}
	if err := s.Commit(next); err != nil {
		return fmt.Errorf("rename %s/%s: %w", p.Name, oldName, err)
	}
	if k == nil {
		return nil
	}
	failpointHit("lvm.snapshot.rename.after-commit")
	for _, pr := range pairs {
		if err := k.Rename(pr[0], pr[1]); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return fmt.Errorf("rename %s/%s: %w (dmsnap activate %s finishes it)", p.Name, oldName, err, p.Name)
		}
		env.logf("renamed %s to %s", pr[0], pr[1])
		failpointHit("lvm.snapshot.rename.after-device")
	}
	return nil
}

// RecoverSnapshots settles what a crash or a reboot left of the snapshot
// lifecycle, before [Activate]: for each pending [OpSnapshotCreate], a
// snapshot whose table swap completed (snapshot device live, origin on
// snapshot-origin) is kept and the record dropped; any other is rolled
// back (its half-built devices removed, the origin's table restored,
// the snapshot dropped from the description). A pending
// [OpSnapshotExtend] reloads the snapshot. A pending [OpSnapshotRemove]
// is finished (see recoverRemove). Devices of the pool left
// suspended are resumed with their live table. Pending merges are settled
// first (see recoverMerges). Transient snapshots whose
// device is gone cannot be rebuilt: they are dropped and reported. It
// returns the description to commit (p itself when nothing changed) and
// what it did, as warnings.
func RecoverSnapshots(ctx context.Context, k SnapshotKernel, p *Pool, env SnapshotEnv) (*Pool, []Warning, error) {
	next := p
	var warns []Warning
	warn := func(format string, args ...any) { warns = append(warns, Warning{Msg: fmt.Sprintf(format, args...)}) }
	cur, err := CurrentDevices(k, p.UUID, nil)
	if err != nil {
		return nil, nil, err
	}
	if mk, ok := k.(MergeKernel); ok {
		if next, err = recoverMerges(ctx, mk, next, warn); err != nil {
			return nil, nil, err
		}
	}
	var extend []UUID
	for _, op := range p.Pending {
		switch op.Op {
		case OpSnapshotCreate:
		case OpSnapshotRemove:
			if next, err = recoverRemove(ctx, k, next, env, op, warn); err != nil {
				return nil, nil, err
			}
			continue
		case OpSnapshotExtend:
			next = next.RemovePending(op.ID)
			if next.VolumeByUUID(op.Volume) != nil && next.SnapshotByCOW(op.Volume) != nil {
				extend = append(extend, op.Volume)
			}
			continue
		default:
			continue // another component's operation
		}
		cowVol := p.VolumeByUUID(op.Volume)
		next = next.RemovePending(op.ID)
		if cowVol == nil || p.SnapshotByCOW(op.Volume) == nil {
			continue
		}
		rec := p.SnapshotByCOW(op.Volume)
		origin := p.VolumeByUUID(rec.Origin)
		snapName := DMName(p.Name, cowVol.Name, LayerNone)
		originName := DMName(p.Name, origin.Name, LayerNone)
		snapLines, snapInfo, err := liveTable(k, snapName)
		if err != nil {
			return nil, nil, err
		}
		originLines, originInfo, err := liveTable(k, originName)
		if err != nil {
			return nil, nil, err
		}
		complete := snapInfo != nil && len(snapLines) == 1 && snapLines[0].Type == dm.TypeSnapshot &&
			originInfo != nil && len(originLines) == 1 && originLines[0].Type == dm.TypeSnapshotOrigin
		if complete {
			warn("snapshot %s/%s: creation was interrupted after its table swap; kept", p.Name, cowVol.Name)
			continue
		}
		// Roll back: the origin's table first (clear a loaded
		// snapshot-origin, resume if suspended), then the snapshot.
		if originInfo != nil && originInfo.InactivePresent {
			if err := k.ClearInactive(originName); err != nil {
				return nil, nil, err
			}
		}
		if originInfo != nil && originInfo.Suspended {
			if _, err := k.Resume(originName); err != nil {
				return nil, nil, err
			}
		}
		for _, n := range []string{snapName, DMName(p.Name, cowVol.Name, LayerCOW)} {
			if err := k.Remove(n, dm.RemoveOptions{}); err != nil && !errors.Is(err, dm.ErrNotFound) {
				return nil, nil, fmt.Errorf("roll back snapshot %s/%s: %w", p.Name, cowVol.Name, err)
			}
		}
		if next, err = next.RemoveSnapshot(cowVol.Name); err != nil {
			return nil, nil, err
		}
		warn("snapshot %s/%s: creation was interrupted before its table swap; rolled back", p.Name, cowVol.Name)
	}
	// Devices left suspended by a crash inside a table swap: resume them
	// with their live table.
	for _, d := range cur {
		info, err := k.Info(d.Name)
		if err != nil || !info.Suspended {
			continue
		}
		if info.InactivePresent {
			if err := k.ClearInactive(d.Name); err != nil {
				return nil, nil, err
			}
		}
		if _, err := k.Resume(d.Name); err != nil {
			return nil, nil, err
		}
		warn("device %s was left suspended; resumed", d.Name)
	}
	// Transient snapshots that are gone.
	for _, rec := range p.Snapshots {
		cv := p.VolumeByUUID(rec.COW)
		if rec.Store != dm.Transient || next.SnapshotByCOW(rec.COW) == nil {
			continue
		}
		if _, err := k.Info(DMName(p.Name, cv.Name, LayerNone)); !errors.Is(err, dm.ErrNotFound) {
			continue
		}
		if next, err = next.RemoveSnapshot(cv.Name); err != nil {
			return nil, nil, err
		}
		warn("snapshot %s/%s is lost: a transient (N) store does not survive deactivation; removed", p.Name, cv.Name)
	}
	for _, u := range extend {
		if _, err := reloadSnapshot(ctx, k, next, env, u); err != nil && !errors.Is(err, dm.ErrNotFound) {
			return nil, nil, err
		}
	}
	return next, warns, nil
}
