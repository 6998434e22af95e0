package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/restore"
)

// opRestore is the pending operation that records a restore.Intent in
// the pool's metadata (docs/formats.md, "Restore intent"): Volume is the
// target's UUID; Args hold snapshot, guid, pre_restore (a snapshot name
// in the pool) and created ("true").
const opRestore = "restore"

// restoreIntentOp returns the restore record of the volume name in p.
func restoreIntentOp(p *lvm.Pool, name string) *lvm.PendingOp {
	v := p.Volume(name)
	if v == nil {
		return nil
	}
	for i := range p.Pending {
		if p.Pending[i].Op == opRestore && p.Pending[i].Volume == v.UUID {
			return &p.Pending[i]
		}
	}
	return nil
}

func intentOf(op *lvm.PendingOp) restore.Intent {
	guid, _ := strconv.ParseUint(op.Args["guid"], 10, 64)
	return restore.Intent{Snapshot: op.Args["snapshot"], GUID: guid, PreRestore: op.Args["pre_restore"], Created: op.Args["created"] == "true"}
}

// refuseRestoring fails if the volume name of p is being restored (for
// ingest: its content is not a point in time).
func refuseRestoring(p *lvm.Pool, name string) error {
	op := restoreIntentOp(p, name)
	if op == nil {
		return nil
	}
	in := intentOf(op)
	if in.PreRestore != "" && p.Volume(in.PreRestore) == nil {
		return nil // stale: the pre-restore snapshot was never taken or was merged back
	}
	return fmt.Errorf("%s/%s is being restored from %s (interrupted): finish with `dmsnap restore %s %s/%s` or roll back by merging its pre-restore snapshot first", p.Name, name, in.Snapshot, in.Snapshot, p.Name, name)
}

func (p *restorePool) Intent(name string) (*restore.Intent, error) {
	pl := p.s.Opened.Store.Pool
	op := restoreIntentOp(pl, name)
	if op == nil {
		return nil, nil
	}
	in := intentOf(op)
	if pre := pl.Volume(in.PreRestore); pre != nil {
		rec := pl.SnapshotByCOW(pre.UUID)
		if rec == nil || rec.State != lvm.SnapshotActive || slices.ContainsFunc(pl.Pending, func(o lvm.PendingOp) bool { return o.Op == lvm.OpMerge && o.Volume == pre.UUID }) {
			return nil, fmt.Errorf("%s/%s: the interrupted restore from %s is being rolled back (its pre-restore snapshot %s/%s merges): dmsnap merge --watch %s/%s finishes it: %w",
				p.s.Name, name, in.Snapshot, p.s.Name, in.PreRestore, p.s.Name, in.PreRestore, restore.ErrRefused)
		}
	}
	return &in, nil
}

func (p *restorePool) SetIntent(_ context.Context, name string, in restore.Intent) error {
	pl := p.s.Opened.Store.Pool
	v := pl.Volume(name)
	if v == nil {
		return fmt.Errorf("restore intent: no volume %s/%s", p.s.Name, name)
	}
	next := pl
	if op := restoreIntentOp(pl, name); op != nil {
		next = pl.RemovePending(op.ID)
	}
	args := map[string]string{"snapshot": in.Snapshot, "guid": strconv.FormatUint(in.GUID, 10)}
	if in.PreRestore != "" {
		args["pre_restore"] = in.PreRestore
	}
	if in.Created {
		args["created"] = "true"
	}
	next, _ = next.AddPending(lvm.PendingOp{Op: opRestore, Volume: v.UUID, Args: args})
	if err := p.s.Opened.Store.Commit(next); err != nil {
		return fmt.Errorf("restore intent of %s/%s: %w", p.s.Name, name, err)
	}
	return nil
}

func (p *restorePool) ClearIntent(_ context.Context, name string) error {
	pl := p.s.Opened.Store.Pool
	op := restoreIntentOp(pl, name)
	if op == nil {
		return nil
	}
	if err := p.s.Opened.Store.Commit(pl.RemovePending(op.ID)); err != nil {
		return fmt.Errorf("drop the restore intent of %s/%s: %w", p.s.Name, name, err)
	}
	return nil
}

// rollbackRestores rolls every interrupted restore of the pool back, as
// activate does: the merge of its pre-restore snapshot is started (or
// deferred while the volume is open, like any merge); a restore that
// created its volume has nothing to roll back to and is only reported.
// It returns the messages to print.
func rollbackRestores(ctx context.Context, s *lvm.Store, env lvm.SnapshotEnv) ([]string, error) {
	var out []string
	for _, op := range s.Pool.Pending {
		if op.Op != opRestore {
			continue
		}
		p := s.Pool
		v := p.VolumeByUUID(op.Volume)
		if v == nil {
			continue
		}
		in := intentOf(&op)
		pre := p.Volume(in.PreRestore)
		switch {
		case in.PreRestore == "":
			out = append(out, fmt.Sprintf("%s/%s: a restore from %s that created it was interrupted; its content is partial: rerun `dmsnap restore %s %s/%s` or remove it", p.Name, v.Name, in.Snapshot, in.Snapshot, p.Name, v.Name))
			continue
		case pre == nil:
			continue // stale: the next restore drops it
		}
		if rec := p.SnapshotByCOW(pre.UUID); rec == nil || rec.State != lvm.SnapshotActive || slices.ContainsFunc(p.Pending, func(o lvm.PendingOp) bool { return o.Op == lvm.OpMerge && o.Volume == pre.UUID }) {
			continue // merging already
		}
		res, err := lvm.StartMerge(ctx, s, env, in.PreRestore, lvm.MergeOptions{})
		if err != nil {
			return out, fmt.Errorf("roll back the interrupted restore of %s/%s: merge %s/%s: %w", p.Name, v.Name, p.Name, in.PreRestore, err)
		}
		what := "started"
		if res.Deferred {
			what = "deferred (" + res.Reason + ")"
		}
		out = append(out, fmt.Sprintf("%s/%s: the interrupted restore from %s is rolled back to the content before it: merge of %s/%s %s", p.Name, v.Name, in.Snapshot, p.Name, in.PreRestore, what))
	}
	return out, nil
}

// preRestoreOf returns the volume whose pending restore's pre-restore
// snapshot is name, "" if none.
func preRestoreOf(p *lvm.Pool, name string) string {
	for _, op := range p.Pending {
		if op.Op == opRestore && op.Args["pre_restore"] == name {
			if v := p.VolumeByUUID(op.Volume); v != nil {
				return v.Name
			}
		}
	}
	return ""
}
