package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/merge"
)

// jsonMergeDeferred is printed when a pool merge is recorded as pending.
type jsonMergeDeferred struct {
	MessageType string `json:"message_type"` // "merge_deferred"
	Pool        string `json:"pool"`
	Snapshot    string `json:"snapshot"`
	Origin      string `json:"origin"`
	Reason      string `json:"reason"`
}

// jsonMergeFinished is the last line of a pool merge: what the pool got
// back.
type jsonMergeFinished struct {
	MessageType   string   `json:"message_type"` // "merge_finished"
	Pool          string   `json:"pool"`
	Snapshot      string   `json:"snapshot"`
	Origin        string   `json:"origin"`
	OriginTarget  string   `json:"origin_target"`
	Removed       []string `json:"removed"`
	SnapshotsLeft []string `json:"snapshots_left"`
	FreedBytes    uint64   `json:"freed_bytes"`
	FreeBytes     uint64   `json:"pool_free_bytes"`
}

// runPoolMerge merges the pool snapshot opts.Target ([POOL/]SNAP): start
// (or re-attach to a merge already running), watch, finish. The pool lock
// is held to start and to finish, not while watching.
func runPoolMerge(ctx context.Context, opts mergeOptions, gopts *globalOptions, env mergeEnv, out *mergeOutput) error {
	pool, name, err := snapPath(gopts, opts.Target, "")
	if err != nil {
		return err
	}
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	p := s.Opened.Store.Pool
	v := p.Volume(name)
	if v == nil {
		s.Close()
		return fmt.Errorf("snapshot %s/%s: %w", pool, name, lvm.ErrNotFound)
	}
	rec := p.SnapshotByCOW(v.UUID)
	if rec == nil {
		s.Close()
		return usageErrorf("%s/%s is a %s volume, not a snapshot: merge takes a snapshot", pool, name, v.Kind)
	}
	attach := rec.State == lvm.SnapshotMerging || rec.State == lvm.SnapshotMergeFailed
	if attach && opts.Background {
		s.Close()
		return fmt.Errorf("merge %s/%s: %w (dmsnap merge --watch %s/%s follows it)", pool, name, merge.ErrAlreadyMerging, pool, name)
	}
	if attach {
		if _, err := lvm.MergeOf(s.Kernel, p, name); err != nil {
			s.Close()
			return err
		}
		if _, err := s.Kernel.Info(lvm.DMName(pool, p.VolumeByUUID(rec.Origin).Name, lvm.LayerNone)); err != nil {
			s.Close()
			return fmt.Errorf("merge %s/%s is recorded but its origin is not active; dmsnap activate %s resumes it: %w", pool, name, pool, merge.ErrNotMerging)
		}
		out.infof("re-attaching to the merge of %s/%s", pool, name)
	} else {
		senv := s.env(gopts)
		res, err := lvm.StartMerge(ctx, s.Opened.Store, senv, name, lvm.MergeOptions{Force: opts.Force, OnStep: func(st merge.Step) {
			mergeVerbosef(gopts, "merge %s/%s: %s", pool, name, st)
		}})
		if err != nil {
			s.Close()
			return err
		}
		if res.Deferred {
			s.Close()
			if gopts.JSON {
				return writeJSONLine(gopts.stdout, jsonMergeDeferred{MessageType: "merge_deferred", Pool: pool, Snapshot: name, Origin: res.Origin, Reason: res.Reason})
			}
			fmt.Fprintln(gopts.stdout, res.Reason)
			return nil
		}
		if len(res.Others) > 0 && !gopts.Quiet && !gopts.JSON {
			fmt.Fprintf(gopts.stderr, "dmsnap: other snapshots of %s/%s are kept: %s; their COWs fill as the merge copies chunks back\n",
				pool, res.Origin, strings.Join(res.Others, ", "))
		}
		if opts.Background {
			s.Close()
			if gopts.JSON {
				return writeJSONLine(gopts.stdout, jsonMergeStarted{MessageType: "merge_started", Origin: res.Merge.Origin, Snapshot: res.Merge.Snapshot})
			}
			if !gopts.Quiet {
				fmt.Fprintf(gopts.stdout, "merge of %s/%s into %s/%s started; follow it with: dmsnap merge --watch %s/%s\n", pool, name, pool, res.Origin, pool, name)
			}
			return nil
		}
	}
	originDev := lvm.DMName(pool, p.VolumeByUUID(rec.Origin).Name, lvm.LayerNone)
	// Watch without the lock: other pool commands may run meanwhile.
	s.Close()
	c, err := env.open()
	if err != nil {
		return err
	}
	rep, werr := merge.Watch(ctx, c, originDev, opts.Interval, out)
	c.Close()
	if werr != nil && !errors.Is(werr, merge.ErrMergeFailed) {
		return werr
	}
	return finishPoolMerge(ctx, gopts, out, pool, name, rep)
}

// finishPoolMerge takes the lock again and finishes a merge the kernel
// completed (or records that it failed), printing the result.
func finishPoolMerge(ctx context.Context, gopts *globalOptions, out *mergeOutput, pool, name string, rep merge.Report) error {
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	defer s.Close()
	p := s.Opened.Store.Pool
	v := p.Volume(name)
	if v == nil {
		// Finished meanwhile by another dmsnap (activate).
		out.done(rep, nil, false)
		return nil
	}
	freed := p.Sectors(v.Extents())
	rec := p.SnapshotByCOW(v.UUID)
	origin := p.VolumeByUUID(rec.Origin).Name
	res, err := lvm.FinishMerge(ctx, s.Opened.Store, s.Kernel, name)
	if errors.Is(err, merge.ErrMergeFailed) {
		return fmt.Errorf("%w\nthe kernel reports \"Merge failed\" (a COW read or origin write error): the origin %s/%s stays usable "+
			"with the part merged so far; check the kernel log, then dmsnap deactivate %s && dmsnap activate %s retries the merge "+
			"(dmsnap cow verify inspects the COW)", err, pool, origin, pool, pool)
	}
	out.done(rep, &res, err == nil)
	if err != nil {
		return err
	}
	np := s.Opened.Store.Pool
	fin := jsonMergeFinished{MessageType: "merge_finished", Pool: pool, Snapshot: name, Origin: origin, OriginTarget: res.OriginTarget,
		Removed: res.Removed, SnapshotsLeft: res.SnapshotsLeft, FreedBytes: freed.Bytes(), FreeBytes: np.Sectors(np.FreeExtents()).Bytes()}
	if fin.Removed == nil {
		fin.Removed = []string{}
	}
	if fin.SnapshotsLeft == nil {
		fin.SnapshotsLeft = []string{}
	}
	if gopts.JSON || out.json {
		return writeJSONLine(gopts.stdout, fin)
	}
	if gopts.Quiet {
		return nil
	}
	fmt.Fprintf(gopts.stdout, "merged %s/%s into %s/%s: origin is %s; %s returned to the pool (%s free)",
		pool, name, pool, origin, res.OriginTarget, lvm.FormatSize(freed), lvm.FormatSize(np.Sectors(np.FreeExtents())))
	if len(fin.SnapshotsLeft) > 0 {
		fmt.Fprintf(gopts.stdout, "; snapshots kept: %s", strings.Join(fin.SnapshotsLeft, ", "))
	}
	fmt.Fprintln(gopts.stdout)
	return nil
}

// settleMerges starts deferred merges, finishes completed ones and
// reports failed ones after `dmsnap activate` built the pool's devices.
// It returns one line per pending merge.
func settleMerges(ctx context.Context, s *lvm.Store, env lvm.SnapshotEnv) ([]string, error) {
	events, err := lvm.SettleMerges(ctx, s, env)
	var out []string
	for _, e := range events {
		switch e.What {
		case "started":
			out = append(out, fmt.Sprintf("merge of %s/%s into %s started (dmsnap merge --watch %s/%s follows it)", s.Pool.Name, e.Snapshot, e.Origin, s.Pool.Name, e.Snapshot))
		case "deferred":
			out = append(out, fmt.Sprintf("merge of %s/%s still deferred: %s is open", s.Pool.Name, e.Snapshot, e.Origin))
		case "merging":
			out = append(out, fmt.Sprintf("merge of %s/%s into %s resumed (dmsnap merge --watch %s/%s follows it)", s.Pool.Name, e.Snapshot, e.Origin, s.Pool.Name, e.Snapshot))
		case "finished":
			if e.Err == nil {
				out = append(out, fmt.Sprintf("merge of %s/%s into %s finished: origin is %s", s.Pool.Name, e.Snapshot, e.Origin, e.Finish.OriginTarget))
			}
		case "failed":
			out = append(out, fmt.Sprintf("merge of %s/%s into %s: %v", s.Pool.Name, e.Snapshot, e.Origin, e.Err))
		}
	}
	return out, err
}
