package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/urfave/cli/v2"
)

// activateOptions are the arguments of `dmsnap activate`.
type activateOptions struct {
	Pool    string // "" for every pool found
	Partial bool
	DryRun  bool
}

func newActivateCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "activate",
		Usage:     "build the device-mapper devices of a pool (or of all pools) from its metadata",
		ArgsUsage: "[POOL]",
		Description: "Finds the pool's PVs by label (block devices under /dev, and the image files the state\n" +
			"file remembers, attached through loop devices), then brings the kernel in line with the\n" +
			"metadata: devices with the right table are kept, missing ones created, wrong tables\n" +
			"reloaded, leftovers of a crash (devices of the pool the metadata no longer lists)\n" +
			"removed. Running it twice changes nothing. A missing PV is an error naming it; with\n" +
			"--partial the volumes whose PVs are all present are activated and the exit status is 3.\n" +
			"--dry-run prints the actions, attaches nothing and takes no lock.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "partial", Usage: "activate the volumes whose PVs are present when some are missing"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be done"},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) > 1 {
				return usageErrorf("activate takes at most one pool name, got %d arguments", len(args))
			}
			return runActivate(c.Context, gopts, activateOptions{Pool: first(args), Partial: c.Bool("partial"), DryRun: c.Bool("dry-run")})
		}),
	}
}

func newDeactivateCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "deactivate",
		Usage:     "remove the device-mapper devices of a pool (or of every dmsnap pool)",
		ArgsUsage: "[POOL]",
		Description: "Without POOL, removes every device whose DM UUID starts with DMSNAP-, found from the\n" +
			"kernel alone. A device still open (mounted) is reported and left; the others go.\n" +
			"Loop devices of image files detach once their last device is gone.\n\n" + exitStatusHelp,
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) > 1 {
				return usageErrorf("deactivate takes at most one pool name, got %d arguments", len(args))
			}
			return runDeactivate(c.Context, gopts, first(args))
		}),
	}
}

type jsonAction struct {
	Kind   string `json:"kind"`
	Device string `json:"device"`
	Volume string `json:"volume,omitempty"`
	Reason string `json:"reason,omitempty"`
	Text   string `json:"text"`
}

type jsonActivation struct {
	Pool     string            `json:"pool"`
	UUID     lvm.UUID          `json:"uuid"`
	DryRun   bool              `json:"dry_run"`
	Actions  []jsonAction      `json:"actions"`
	Devices  map[string]string `json:"devices"` // volume -> /dev/mapper path
	Skipped  []string          `json:"skipped_volumes"`
	Missing  []string          `json:"missing_pvs"`
	Warnings []string          `json:"warnings"`
	// Removed: the pool's metadata said a pool remove was interrupted;
	// activate finished it (the PVs are wiped) instead of activating.
	Removed bool `json:"removed,omitempty"`
}

func runActivate(ctx context.Context, gopts *globalOptions, opts activateOptions) error {
	if opts.Pool != "" {
		if err := lvm.ValidateName("pool", opts.Pool); err != nil {
			return usageError{err}
		}
	}
	d, err := discover(gopts, nil)
	if err != nil {
		return err
	}
	pools := d.Pools
	if opts.Pool != "" {
		fp, err := d.ByName(opts.Pool)
		if err != nil {
			return err
		}
		pools = []*foundPool{fp}
		if fp == nil {
			pools = nil
			st, err := loadState(gopts)
			if err != nil {
				return err
			}
			if !slices.Contains(removedEntries(d, st), opts.Pool) {
				// The error names the disks discovery could not read:
				// their warnings would say it a second time.
				return errNoPool(d, opts.Pool)
			}
			// Else its pool remove was killed after the last wipe:
			// forgotten below.
		}
	}
	gopts.warn(d.Warnings...)
	k, err := dm.Open()
	if err != nil {
		return err
	}
	defer k.Close()
	var results []jsonActivation
	if !opts.DryRun {
		// A pool remove killed after its last wipe left its state-file
		// entry, marked removing: forget it.
		gone, err := settleRemoved(ctx, gopts, d, func(n string) bool { return opts.Pool == "" || n == opts.Pool })
		if err != nil {
			gopts.warn(err.Error())
		}
		for _, rp := range gone {
			msg := fmt.Sprintf("pool %s: a pool remove was interrupted after wiping every PV; forgot it in the state file", rp.Name)
			gopts.warn(msg)
			results = append(results, jsonActivation{Pool: rp.Name, UUID: rp.UUID, Removed: true, Actions: []jsonAction{},
				Devices: map[string]string{}, Skipped: []string{}, Missing: []string{}, Warnings: []string{msg}})
		}
	}
	var errs []error
	partial := false
	for _, fp := range pools {
		r, err := activatePool(ctx, gopts, k, fp, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(r.Skipped) > 0 {
			partial = true
		}
		results = append(results, r)
	}
	if gopts.JSON {
		if results == nil {
			results = []jsonActivation{}
		}
		if err := writeJSON(gopts.stdout, results); err != nil {
			return err
		}
	} else {
		printActivations(gopts, results)
	}
	if err := errors.Join(errs...); err != nil {
		if len(results) > 0 {
			return partialError{err}
		}
		return err
	}
	if partial {
		return partialError{errors.New("some volumes were not activated: their PVs are missing")}
	}
	return nil
}

func printActivations(gopts *globalOptions, results []jsonActivation) {
	w := gopts.stdout
	if len(results) == 0 {
		fmt.Fprintln(w, "no pools found")
	}
	for _, r := range results {
		if r.Removed {
			fmt.Fprintf(w, "finished removing pool %s (an interrupted pool remove)\n", r.Pool)
			continue
		}
		verb := "activated"
		if r.DryRun {
			verb = "would activate"
		}
		fmt.Fprintf(w, "%s pool %s: %d volumes\n", verb, r.Pool, len(r.Devices))
		for _, a := range r.Actions {
			if a.Kind != string(lvm.ActionKeep) || gopts.Verbose || r.DryRun {
				fmt.Fprintf(w, "  %s\n", a.Text)
			}
		}
		vols := make([]string, 0, len(r.Devices))
		for v := range r.Devices {
			vols = append(vols, v)
		}
		sort.Strings(vols)
		for _, v := range vols {
			fmt.Fprintf(w, "  %s/%s\t%s\n", r.Pool, v, r.Devices[v])
		}
		for _, v := range r.Skipped {
			fmt.Fprintf(w, "  %s/%s\tNOT ACTIVATED (PV missing)\n", r.Pool, v)
		}
	}
}

func activatePool(ctx context.Context, gopts *globalOptions, k *dm.Client, fp *foundPool, opts activateOptions) (jsonActivation, error) {
	if !opts.DryRun {
		l, err := lockPool(gopts, fp.Name, lock.Exclusive)
		if err != nil {
			return jsonActivation{}, err
		}
		defer l.Close()
	}
	o, err := loadFound(fp, !opts.DryRun)
	if err != nil {
		return jsonActivation{}, err
	}
	defer o.Close()
	p := o.Store.Pool
	r := jsonActivation{Pool: p.Name, UUID: p.UUID, DryRun: opts.DryRun, Actions: []jsonAction{}, Devices: map[string]string{},
		Skipped: []string{}, Missing: []string{}, Warnings: o.Warnings}
	if p.RemovalPending() {
		return finishPoolRemove(ctx, gopts, k, o, r, opts.DryRun)
	}
	for _, id := range o.Store.Missing {
		desc := string(id)
		if pv := p.PV(id); pv != nil && pv.DeviceHint != "" {
			desc += " (last seen at " + pv.DeviceHint + ")"
		}
		r.Missing = append(r.Missing, desc)
	}
	if len(r.Missing) > 0 && !opts.Partial {
		return r, fmt.Errorf("pool %s: missing PV %s; --partial activates the volumes whose PVs are present: %w", p.Name, strings.Join(r.Missing, ", missing PV "), lvm.ErrMissingPV)
	}
	gopts.warn(o.Warnings...)
	a, err := attachPVs(o, opts.DryRun)
	if err != nil {
		return r, fmt.Errorf("pool %s: %w", p.Name, err)
	}
	if !opts.DryRun {
		// Interrupted snapshot operations and lost transient snapshots
		// (cmd_snapshot.go).
		w, err := settleSnapshots(ctx, k, o, a.Devs)
		r.Warnings = append(r.Warnings, w...)
		gopts.warn(w...)
		if err != nil {
			return r, errors.Join(fmt.Errorf("pool %s: %w", p.Name, err), a.Release())
		}
		p = o.Store.Pool
	}
	actions, warns, nodes, err := activateVolumes(ctx, k, p, a.Devs, nil, lvm.ActivateOptions{
		Plan: lvm.PlanOptions{Partial: opts.Partial}, Apply: lvm.ApplyOptions{RemoveLeftovers: true}, DryRun: opts.DryRun,
	})
	err = errors.Join(err, a.Release())
	for _, w := range warns {
		r.Warnings = append(r.Warnings, w.String())
	}
	gopts.warn(stringsOf(warns)...)
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	planned := map[string]bool{}
	for _, act := range actions {
		ja := jsonAction{Kind: string(act.Kind), Volume: act.Device.Volume, Reason: act.Reason, Text: act.String(), Device: act.Device.Name}
		if act.Current != nil && ja.Device == "" {
			ja.Device = act.Current.Name
		}
		r.Actions = append(r.Actions, ja)
		if act.Device.Volume != "" {
			planned[act.Device.Volume] = true
		}
		if opts.DryRun && act.Device.Name == lvm.DMName(p.Name, act.Device.Volume, lvm.LayerNone) {
			nodes = setDefault(nodes, act.Device.Volume, dm.DevicePath(act.Device.Name))
		}
	}
	if err != nil {
		return r, err
	}
	if !opts.DryRun {
		// Interrupted restores: roll back by merging their pre-restore
		// snapshots (restore_intent.go).
		msgs, err := rollbackRestores(ctx, o.Store, lvm.SnapshotEnv{Kernel: k})
		r.Warnings = append(r.Warnings, msgs...)
		gopts.warn(msgs...)
		if err != nil {
			return r, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		// Pending merges: start deferred ones, finish completed ones
		// (cmd_merge_pool.go).
		msgs, err = settleMerges(ctx, o.Store, lvm.SnapshotEnv{Kernel: k})
		r.Warnings = append(r.Warnings, msgs...)
		gopts.warn(msgs...)
		if err != nil {
			return r, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		p = o.Store.Pool
	}
	for v, n := range nodes {
		r.Devices[v] = n
	}
	for i := range p.Volumes {
		if v := p.Volumes[i]; !planned[v.Name] {
			r.Skipped = append(r.Skipped, v.Name)
		}
	}
	// Keep actions of volumes whose node activateVolumes did not make
	// (unchanged devices): their node may still need making (no udev).
	if !opts.DryRun {
		for i := range p.Volumes {
			v := p.Volumes[i]
			name := lvm.DMName(p.Name, v.Name, lvm.LayerNone)
			if _, ok := r.Devices[v.Name]; ok || !planned[v.Name] {
				continue
			}
			if rec := p.SnapshotByCOW(v.UUID); rec != nil && (rec.State == lvm.SnapshotMerging || rec.State == lvm.SnapshotMergeFailed) {
				continue // merging into its origin: no device of its own
			}
			info, err := k.Info(name)
			if err != nil {
				return r, fmt.Errorf("pool %s: %w", p.Name, err)
			}
			node, err := dm.EnsureNode(ctx, info)
			if err != nil {
				return r, fmt.Errorf("pool %s: %w", p.Name, err)
			}
			r.Devices[v.Name] = node
		}
	}
	return r, nil
}

func setDefault(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	if _, ok := m[k]; !ok {
		m[k] = v
	}
	return m
}

func stringsOf(ws []lvm.Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.String()
	}
	return out
}

type jsonDeactivation struct {
	Pool    string   `json:"pool"`
	UUID    lvm.UUID `json:"uuid"`
	Removed []string `json:"removed"`
}

func runDeactivate(_ context.Context, gopts *globalOptions, pool string) error {
	if pool != "" {
		if err := lvm.ValidateName("pool", pool); err != nil {
			return usageError{err}
		}
	}
	k, err := dm.Open()
	if err != nil {
		return err
	}
	defer k.Close()
	// Pools to deactivate, by UUID, with their names where known.
	names := map[lvm.UUID]string{}
	if pool != "" {
		d, err := discover(gopts, nil)
		if err != nil {
			return err
		}
		fp, err := d.ByName(pool)
		if err != nil {
			return err
		}
		if fp == nil {
			return errNoPool(d, pool)
		}
		names[fp.UUID] = fp.Name
	} else {
		list, err := k.List()
		if err != nil {
			return err
		}
		for _, e := range list {
			if pu, _, _, err := lvm.ParseDMUUID(e.UUID); err == nil {
				names[pu] = ""
			}
		}
		if len(names) > 0 {
			if d, err := discover(gopts, nil); err == nil {
				for _, fp := range d.Pools {
					if _, ok := names[fp.UUID]; ok {
						names[fp.UUID] = fp.Name
					}
				}
			}
		}
	}
	ids := make([]lvm.UUID, 0, len(names))
	for id := range names {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return names[ids[i]]+string(ids[i]) < names[ids[j]]+string(ids[j]) })
	var results []jsonDeactivation
	var errs []error
	for _, id := range ids {
		name := names[id]
		if name != "" {
			l, err := lockPool(gopts, name, lock.Exclusive)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			defer l.Close()
		}
		before, err := lvm.CurrentDevices(k, id, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		derr := lvm.Deactivate(k, id)
		after, _ := lvm.CurrentDevices(k, id, nil)
		still := map[string]bool{}
		for _, d := range after {
			still[d.Name] = true
		}
		r := jsonDeactivation{Pool: name, UUID: id, Removed: []string{}}
		for _, d := range before {
			if !still[d.Name] {
				_ = dm.RemoveNode(d.Name)
				r.Removed = append(r.Removed, d.Name)
			}
		}
		results = append(results, r)
		if derr != nil {
			errs = append(errs, fmt.Errorf("deactivate pool %s: %w", dashIfEmpty(name), derr))
		}
	}
	if gopts.JSON {
		if results == nil {
			results = []jsonDeactivation{}
		}
		if err := writeJSON(gopts.stdout, results); err != nil {
			return err
		}
	} else {
		if len(results) == 0 && len(errs) == 0 {
			fmt.Fprintln(gopts.stdout, "no active dmsnap pools")
		}
		for _, r := range results {
			label := r.Pool
			if label == "" {
				label = string(r.UUID)
			}
			fmt.Fprintf(gopts.stdout, "deactivated pool %s: %d devices removed\n", label, len(r.Removed))
			if gopts.Verbose {
				for _, n := range r.Removed {
					fmt.Fprintf(gopts.stdout, "  removed %s\n", n)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		if len(results) > len(errs) {
			return partialError{err}
		}
		return err
	}
	return nil
}

// finishPoolRemove finishes an interrupted `pool remove` found by
// activate: the pool's devices (if any) go, the PVs still labelled are
// wiped and the state file forgets the pool.
func finishPoolRemove(ctx context.Context, gopts *globalOptions, k *dm.Client, o *openedPool, r jsonActivation, dryRun bool) (jsonActivation, error) {
	p := o.Store.Pool
	r.Removed = true
	msg := fmt.Sprintf("pool %s: a pool remove was interrupted; finished it (%d PVs wiped)", p.Name, len(o.Store.Disks))
	if dryRun {
		msg = fmt.Sprintf("pool %s: a pool remove was interrupted; activate would finish it (%d PVs to wipe)", p.Name, len(o.Store.Disks))
		r.Warnings = append(r.Warnings, msg)
		gopts.warn(msg)
		return r, nil
	}
	cur, err := lvm.CurrentDevices(k, p.UUID, nil)
	if err == nil && len(cur) > 0 {
		err = lvm.Deactivate(k, p.UUID)
		for _, d := range cur {
			_ = dm.RemoveNode(d.Name)
		}
	}
	if err != nil {
		return r, fmt.Errorf("pool %s: finish its removal: deactivate: %w", p.Name, err)
	}
	if err := wipePool(ctx, gopts, o, p.Name); err != nil {
		return r, err
	}
	r.Warnings = append(r.Warnings, msg)
	gopts.warn(msg)
	return r, nil
}
