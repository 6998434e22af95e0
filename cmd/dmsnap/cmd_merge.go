package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/merge"
	"github.com/urfave/cli/v2"
)

// mergeOptions are the arguments of `dmsnap merge`.
type mergeOptions struct {
	// Target is the snapshot to merge, or with Watch alone the origin (or
	// any device of its layout) to watch; "" with Watch watches every merge.
	Target     string
	Watch      bool
	Background bool
	Finish     bool
	Force      bool
	Interval   time.Duration
}

// mergeDM is what merge needs from the device-mapper client.
type mergeDM interface {
	merge.Client
	Close() error
}

// mergeEnv holds what runMerge gets from outside, so tests can run it
// against a fake kernel and the pool integration can add a resolver.
type mergeEnv struct {
	open func() (mergeDM, error)
	// resolve maps the SNAP argument to a device-mapper snapshot name.
	// The default takes raw device names and refuses POOL/SNAP; the pool
	// integration replaces it (and records the merge in pool metadata
	// through OnStep).
	resolve func(ctx context.Context, arg string) (string, error)
	// pool merges a dmsnap pool snapshot ([POOL/]SNAP, cmd_merge_pool.go);
	// nil in tests of the raw-device path.
	pool func(ctx context.Context, opts mergeOptions, gopts *globalOptions, env mergeEnv, out *mergeOutput) error
	// isTTY reports whether progress may draw a bar on stderr.
	isTTY bool
	now   func() time.Time
}

func defaultMergeEnv(gopts *globalOptions) mergeEnv {
	return mergeEnv{
		open: func() (mergeDM, error) {
			c, err := dm.Open()
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		resolve: resolveRawSnapshot,
		pool:    runPoolMerge,
		isTTY:   isTerminal(gopts.stderr),
		now:     time.Now,
	}
}

func resolveRawSnapshot(_ context.Context, arg string) (string, error) {
	if strings.Contains(arg, "/") {
		return "", usageErrorf("%q: the POOL/SNAP form is not available yet; give the snapshot's device-mapper name", arg)
	}
	return arg, nil
}

const mergeDescription = `Merges a snapshot back into its origin with the kernel's snapshot-merge target: the
origin rolls back to the snapshot's content while it stays usable.

  dmsnap merge [POOL/]SNAP              start, wait until merged, then tidy up
  dmsnap merge [POOL/]SNAP --watch      the same, showing progress
  dmsnap merge [POOL/]SNAP --background start and return; follow with merge --watch POOL/SNAP
  dmsnap merge --watch [ORIGIN]         watch one origin's merge, or every merge on the
                                        machine (LVM2's included), to the end

[POOL/]SNAP is a snapshot of a pool (POOL/ may be left out when a default pool is set). Only
persistent stores (P, PO) merge; transient (N) and invalid snapshots are refused, as is a
second merge into an origin that already merges (or waits to merge) a snapshot: nothing is
changed. If the origin or the snapshot is open (mounted, in use) the merge is recorded as
pending and the command exits 0 ("Delaying merge since origin is open ..."): dmsnap activate
starts it once neither is open, --force starts it now. With an inactive origin it runs at the
next activation. The merge state lives in the pool metadata: after a kill, a crash or a
reboot dmsnap activate continues it, and dmsnap merge --watch POOL/SNAP re-attaches.

A bare device-mapper name instead of POOL/SNAP merges a raw (non-pool) layout: a snapshot
device ("snapshot <real> <cow> P|PO <chunk>") whose origin runs snapshot-origin over the same
<real> (LVM2's layout). There an open origin or snapshot is refused, with nothing changed,
unless --force.

The handover: snapshot-merge is loaded into the origin, the error target into the snapshot
device, then the snapshot and the origin are suspended and the origin resumed. Other
snapshots of the same origin keep their content: the kernel copies each chunk out to them
before the merge changes it (so their COWs fill up). When the merge is done the origin goes
back to snapshot-origin (other snapshots remain) or to its -real table (plain linear), and
the old snapshot, its -cow and, if unused, the -real device are removed. Watching alone
(--watch without a snapshot) changes nothing unless --finish is given: LVM2 finishes its own
merges, and dmsnap pool volumes are finished by the pool commands.

Progress: a bar on stderr when stderr is a terminal; otherwise, or with --json, one JSON
line per poll on stdout:
  {"message_type":"merge_progress","origin":..,"total_bytes":..,"remaining_bytes":..,
   "merged_bytes":..,"percent":..,"rate_bytes_per_second":..,"eta_seconds":..,"done":..}
(eta_seconds is -1 while unknown), and at the end one
  {"message_type":"merge_done","origin":..,"total_bytes":..,"elapsed_seconds":..,
   "finished":..,"origin_target":..,"removed":[..]}
per origin. --quiet turns the bar off (JSON lines stay with --json).

`

func newMergeCommand(gopts *globalOptions) *cli.Command {
	return newMergeCommandWith(gopts, func() mergeEnv { return defaultMergeEnv(gopts) })
}

func newMergeCommandWith(gopts *globalOptions, env func() mergeEnv) *cli.Command {
	return &cli.Command{
		Name:        "merge",
		Usage:       "merge a snapshot back into its origin, or watch merges in progress",
		ArgsUsage:   "[POOL/]SNAP | DMNAME | --watch [ORIGIN]",
		Description: mergeDescription + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "show progress until the merge is done"},
			&cli.BoolFlag{Name: "background", Aliases: []string{"b"}, Usage: "start the merge and return at once"},
			&cli.BoolFlag{Name: "finish", Usage: "with --watch and no snapshot: tidy up finished merges of plain device-mapper layouts"},
			&cli.BoolFlag{Name: "force", Usage: "merge even though the origin or the snapshot is open"},
			&cli.DurationFlag{Name: "interval", Value: merge.DefaultInterval,
				Usage: fmt.Sprintf("status polling interval, %v to %v", merge.MinInterval, merge.MaxInterval)},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) > 1 {
				return usageErrorf("merge takes at most one snapshot, got %d arguments", len(args))
			}
			opts := mergeOptions{Target: first(args), Watch: c.Bool("watch"), Background: c.Bool("background"),
				Finish: c.Bool("finish"), Force: c.Bool("force"), Interval: c.Duration("interval")}
			return runMerge(c.Context, opts, gopts, env())
		}),
	}
}

func (o mergeOptions) check() error {
	if err := merge.CheckInterval(o.Interval); err != nil {
		return usageError{err}
	}
	switch {
	case o.Target == "" && !o.Watch:
		return usageErrorf("merge needs a snapshot device ([POOL/]SNAP or a device-mapper name), or --watch")
	case o.Background && o.Watch:
		return usageErrorf("--background and --watch exclude each other")
	case o.Finish && !o.Watch:
		return usageErrorf("--finish goes with --watch")
	}
	return nil
}

func runMerge(ctx context.Context, opts mergeOptions, gopts *globalOptions, env mergeEnv) error {
	if err := opts.check(); err != nil {
		return err
	}
	c, err := env.open()
	if err != nil {
		return err
	}
	defer c.Close()
	out := newMergeOutput(gopts, env, opts.Watch)
	defer out.close()

	if opts.Target != "" && env.pool != nil && isPoolTarget(c, opts.Target) {
		return env.pool(ctx, opts, gopts, env, out)
	}
	if opts.Watch && (opts.Target == "" || !isSnapshotToStart(c, opts.Target)) {
		return watchMerges(ctx, c, opts, out)
	}
	snap, err := env.resolve(ctx, opts.Target)
	if err != nil {
		return err
	}
	l, err := merge.FindLayout(c, snap)
	if err != nil {
		return err
	}
	switch l.Owner {
	case merge.OwnerLVM2:
		return fmt.Errorf("%s belongs to LVM2: merge it with lvconvert --merge (dmsnap merge --watch follows it)", snap)
	case merge.OwnerDMSnap:
		return fmt.Errorf("%s is a dmsnap pool volume: merge it by POOL/SNAP so that the pool metadata follows", snap)
	}
	// Steps inside the suspend window are printed after it: a blocked or
	// closed stderr must not hold the devices suspended.
	later := make([]merge.Step, 0, 3) // no growth inside the window
	m, err := merge.Start(ctx, c, snap, merge.StartOptions{Force: opts.Force, OnStep: func(s merge.Step) error {
		if s.Suspended() {
			later = append(later, s)
		} else {
			mergeVerbosef(gopts, "merge %s: %s", snap, s)
		}
		return nil
	}})
	for _, s := range later {
		mergeVerbosef(gopts, "merge %s: %s", snap, s)
	}
	if errors.Is(err, merge.ErrOriginOpen) || errors.Is(err, merge.ErrSnapshotOpen) {
		return fmt.Errorf("%w\nnothing was changed; close it and run again, or use --force", err)
	}
	if err != nil {
		return err
	}
	if opts.Background {
		if gopts.JSON {
			return writeJSONLine(gopts.stdout, jsonMergeStarted{MessageType: "merge_started", Origin: m.Origin, Snapshot: m.Snapshot})
		}
		if !gopts.Quiet {
			fmt.Fprintf(gopts.stdout, "merge of %s into %s started; follow it with: dmsnap merge --watch %s\n", m.Snapshot, m.Origin, m.Origin)
		}
		return nil
	}
	mergeVerbosef(gopts, "merge %s: handover done, merging into %s", snap, m.Origin)
	rep, err := merge.Watch(ctx, c, m.Origin, opts.Interval, out)
	if err != nil {
		return err
	}
	res, err := merge.Finish(ctx, c, m)
	out.done(rep, &res, err == nil)
	return err
}

// isPoolTarget tells a pool snapshot ([POOL/]SNAP) from a raw
// device-mapper name: POOL/SNAP always, a bare name when no device-mapper
// device has it (SNAP in the default pool).
func isPoolTarget(c merge.Client, arg string) bool {
	if strings.Contains(arg, "/") {
		return true
	}
	_, err := c.Info(arg)
	return errors.Is(err, dm.ErrNotFound)
}

// isSnapshotToStart tells `merge --watch X` apart: X is a snapshot to merge
// when its table is a snapshot and its origin does not merge yet.
func isSnapshotToStart(c merge.Client, name string) bool {
	l, err := merge.FindLayout(c, name)
	if err != nil || l.Merge != nil {
		return false
	}
	for _, s := range l.Snapshots {
		if s.Name == name {
			return true
		}
	}
	return false
}

// watchMerges watches the merge of one origin (any device of its layout
// names it) or every merge on the machine.
func watchMerges(ctx context.Context, c mergeDM, opts mergeOptions, out *mergeOutput) error {
	var ms []merge.Merge
	if opts.Target != "" {
		l, err := merge.FindLayout(c, opts.Target)
		if err != nil {
			return err
		}
		if l.Merge == nil {
			return fmt.Errorf("%s: origin %s runs no merge: %w", opts.Target, l.Origin.Name, merge.ErrNotMerging)
		}
		all, err := merge.FindMerges(c)
		if err != nil {
			return err
		}
		for _, m := range all {
			if m.Origin == l.Origin.Name {
				ms = append(ms, m)
			}
		}
	} else {
		var err error
		if ms, err = merge.FindMerges(c); err != nil {
			return err
		}
		if len(ms) == 0 {
			out.infof("no merge in progress")
			return nil
		}
	}
	origins := make([]string, len(ms))
	for i, m := range ms {
		origins[i] = m.Origin
	}
	reps, werr := merge.WatchAll(ctx, c, origins, opts.Interval, out)
	ok := 0
	var errs []error
	if werr != nil {
		errs = append(errs, werr)
	}
	for i, m := range ms {
		r := reps[i]
		if !r.Done {
			continue
		}
		ok++
		finish := opts.Finish || opts.Target != "" && m.Owner == merge.OwnerNone
		if !finish || m.Owner != merge.OwnerNone || ctx.Err() != nil {
			out.done(r, nil, false)
			continue
		}
		res, err := merge.Finish(ctx, c, m)
		if err != nil {
			errs = append(errs, err)
			ok--
			out.done(r, &res, false)
			continue
		}
		out.done(r, &res, true)
	}
	err := errors.Join(errs...)
	if err != nil && ok > 0 && ctx.Err() == nil {
		return partialError{err}
	}
	return err
}

// mergeVerbosef explains a step on stderr with --verbose.
func mergeVerbosef(g *globalOptions, format string, args ...any) {
	if g.Verbose && !g.Quiet {
		fmt.Fprintf(g.stderr, format+"\n", args...)
	}
}
