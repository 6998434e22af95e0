package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/pool"
	"github.com/urfave/cli/v2"
)

// lvOptions are the arguments of the lv commands.
type lvOptions struct {
	Path       string // POOL/NAME or NAME (default pool)
	NewName    string // lv rename
	Size       string
	NoActivate bool
}

func newLVCommand(gopts *globalOptions) *cli.Command {
	noActivate := &cli.BoolFlag{Name: "no-activate", Usage: "change the metadata only; leave the kernel alone"}
	return &cli.Command{
		Name:  "lv",
		Usage: "create, list, grow, rename and remove volumes (logical volumes) of a pool",
		Description: "A volume is named POOL/NAME, or NAME in the default pool ($" + defaultPoolEnv + ",\n" +
			"`dmsnap config set default-pool`). Its device is /dev/mapper/<pool>-<name>, with\n" +
			"hyphens inside names doubled, as LVM2 does.",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "carve a volume from a pool's free extents and activate it",
				ArgsUsage: "POOL/NAME",
				Description: "The size is rounded up to whole extents (and says so). Refuses with no change when the\n" +
					"pool has too little free space.\n\n" + exitStatusHelp,
				Flags: []cli.Flag{&cli.StringFlag{Name: "size", Aliases: []string{"L"}, Usage: "size, e.g. 1G, 512M"}, noActivate},
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("lv create needs exactly one POOL/NAME, got %d arguments", len(args))
					}
					return runLVCreate(c.Context, gopts, lvOptions{Path: first(args), Size: c.String("size"), NoActivate: c.Bool("no-activate")})
				}),
			},
			{
				Name:        "ls",
				Usage:       "list volumes of one pool or of all pools",
				ArgsUsage:   "[POOL]",
				Description: "Read-only.\n\n" + exitStatusHelp,
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) > 1 {
						return usageErrorf("lv ls takes at most one pool name")
					}
					return runLVList(c.Context, gopts, first(args))
				}),
			},
			{
				Name:        "remove",
				Usage:       "deactivate a volume and free its extents",
				ArgsUsage:   "POOL/NAME",
				Description: "Refuses while the volume's device is open (mounted) or it has snapshots.\n\n" + exitStatusHelp,
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("lv remove needs exactly one POOL/NAME, got %d arguments", len(args))
					}
					return runLVRemove(c.Context, gopts, lvOptions{Path: first(args)})
				}),
			},
			{
				Name:      "extend",
				Usage:     "grow a volume to a size (2G) or by a size (+1G)",
				ArgsUsage: "POOL/NAME",
				Description: "An active volume's table is reloaded in place. Shrinking is not supported.\n\n" +
					exitStatusHelp,
				Flags: []cli.Flag{&cli.StringFlag{Name: "size", Aliases: []string{"L"}, Usage: "new size (2G) or growth (+1G)"}, noActivate},
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("lv extend needs exactly one POOL/NAME, got %d arguments", len(args))
					}
					return runLVExtend(c.Context, gopts, lvOptions{Path: first(args), Size: c.String("size"), NoActivate: c.Bool("no-activate")})
				}),
			},
			{
				Name:      "rename",
				Usage:     "rename a volume (and its active device)",
				ArgsUsage: "POOL/OLD NEW",
				Description: "Renames the volume to NEW in the same pool (a POOL/ prefix on NEW must name\n" +
					"that pool) and, while active, its device <pool>-<old> to <pool>-<new>. Refused, with\n" +
					"nothing changed, if the pool has a volume NEW or another device holds the new device\n" +
					"name. --no-activate changes the metadata only.\n\n" + exitStatusHelp,
				Flags: []cli.Flag{noActivate},
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 2 {
						return usageErrorf("lv rename needs POOL/OLD NEW, got %d arguments", len(args))
					}
					return runLVRename(c.Context, gopts, lvOptions{Path: args[0], NewName: args[1], NoActivate: c.Bool("no-activate")})
				}),
			},
		},
	}
}

// lvSession is a pool opened for a volume change: locked, loaded
// read-write, and (unless NoActivate) with device-mapper open, all
// before anything changes, so that a missing kernel is reported with
// nothing done.
type lvSession struct {
	*pool.Session
	volume string
}

func openLV(gopts *globalOptions, path string, kernel bool) (*lvSession, error) {
	name, volume, err := splitVolumePath(gopts, path)
	if err != nil {
		return nil, err
	}
	ps, err := gopts.host().Session(name, pool.SessionOptions{Mode: lock.Exclusive, Warn: gopts.warn})
	if err != nil {
		return nil, err
	}
	s := &lvSession{Session: ps, volume: volume}
	if kernel {
		if s.Kernel, err = dm.Open(); err != nil {
			s.Close()
			return nil, fmt.Errorf("%w (use --no-activate to change the metadata only)", err)
		}
	}
	return s, nil
}

// activate brings the named volumes' devices in line with the metadata.
func (s *lvSession) activate(ctx context.Context, volumes ...string) (map[string]string, error) {
	a, err := attachPVs(s.Opened, false)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, v := range volumes {
		set[v] = true
	}
	_, _, nodes, err := activateVolumes(ctx, s.Kernel, s.Opened.Store.Pool, a.Devs, set, lvm.ActivateOptions{Plan: lvm.PlanOptions{Partial: true}})
	return nodes, errors.Join(err, a.Release())
}

// settle makes allocating safe (lvm.SettleForAllocation): an
// interrupted snapshot operation is finished or rolled back first, and a
// leftover device, whose extents may be free in the metadata, refuses.
// Without device-mapper only the metadata is checked.
func (s *lvSession) settle(ctx context.Context, gopts *globalOptions) error {
	env := lvm.SnapshotEnv{}
	if s.Kernel != nil {
		env.Kernel = s.Kernel
	} else if k, err := dm.Open(); err == nil {
		defer k.Close()
		env.Kernel = k
	} else if !dm.Unavailable(err) {
		return err
	}
	if env.Kernel != nil && len(s.Opened.Store.Pool.Pending) > 0 {
		a, err := attachPVs(s.Opened, false)
		if err != nil {
			return err
		}
		defer a.Release()
		env.Devs = a.Devs
	}
	warns, err := lvm.SettleForAllocation(ctx, s.Opened.Store, env)
	gopts.warn(stringsOf(warns)...)
	return err
}

func runLVCreate(ctx context.Context, gopts *globalOptions, opts lvOptions) error {
	pool, volume, err := splitVolumePath(gopts, opts.Path)
	if err != nil {
		return err
	}
	if err := requireSize(opts.Size); err != nil {
		return err
	}
	size, err := lvm.ParseSize(opts.Size)
	if err != nil {
		return usageErrorf("--size: %w", err)
	}
	s, err := openLV(gopts, pool+"/"+volume, !opts.NoActivate)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.settle(ctx, gopts); err != nil {
		return fmt.Errorf("create %s/%s: %w", pool, volume, err)
	}
	p := s.Opened.Store.Pool
	n, rounded := lvm.ExtentsFor(size, p.ExtentSize)
	next, err := p.AddVolume(volume, n)
	if err != nil {
		return err
	}
	if rounded && !gopts.Quiet {
		fmt.Fprintf(gopts.stderr, "dmsnap: size %s rounded up to %s (%d extents of %s)\n", opts.Size, sizeOf(p, n), n, lvm.FormatSize(p.ExtentSize))
	}
	if err := s.Opened.Store.Commit(next); err != nil {
		return fmt.Errorf("create %s/%s: %w", pool, volume, err)
	}
	return s.finish(ctx, gopts, "created volume", volume, !opts.NoActivate)
}

// finish activates volume if asked and prints it.
func (s *lvSession) finish(ctx context.Context, gopts *globalOptions, verb, volume string, activate bool) error {
	p := s.Opened.Store.Pool
	var node string
	if activate {
		nodes, err := s.activate(ctx, volume)
		if err != nil {
			return fmt.Errorf("%s %s/%s in the metadata, but activation failed (retry with `dmsnap activate %s`): %w", verb, s.Name, volume, s.Name, err)
		}
		node = nodes[volume]
	}
	v := p.Volume(volume)
	jv := describeVolume(p, v, nil)
	if activate {
		t := true
		jv.Active = &t
		if node != "" {
			jv.Device = node
		}
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, jv)
	}
	fmt.Fprintf(gopts.stdout, "%s %s/%s: %s (%d extents)", verb, s.Name, volume, sizeOf(p, v.Extents()), v.Extents())
	if activate {
		fmt.Fprintf(gopts.stdout, ", device %s", jv.Device)
	}
	fmt.Fprintln(gopts.stdout)
	return nil
}

func runLVList(_ context.Context, gopts *globalOptions, pool string) error {
	if pool != "" {
		if err := lvm.ValidateName("pool", pool); err != nil {
			return usageError{err}
		}
	}
	d, err := discover(gopts, nil)
	if err != nil {
		return err
	}
	if pool != "" {
		fp, err := d.ByName(pool)
		if err != nil {
			return err
		}
		if fp == nil {
			return errNoPool(d, pool)
		}
		d.Pools = []*foundPool{fp}
	}
	pools, err := loadAllPools(gopts, d)
	if err != nil {
		return err
	}
	active := activeUUIDs()
	out := []jsonVolume{}
	for _, o := range pools {
		p := o.Store.Pool
		for i := range p.Volumes {
			out = append(out, describeVolume(p, &p.Volumes[i], active))
		}
		o.Close()
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, out)
	}
	tw := tabwriter.NewWriter(gopts.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tNAME\tKIND\tSIZE\tSEGMENTS\tACTIVE\tDEVICE")
	for _, v := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Pool, v.Name, v.Kind, humanBytes(v.SizeBytes), len(v.Segments), yesNo(v.Active), v.Device)
	}
	return tw.Flush()
}

func runLVRemove(_ context.Context, gopts *globalOptions, opts lvOptions) error {
	pool, volume, err := splitVolumePath(gopts, opts.Path)
	if err != nil {
		return err
	}
	s, err := openLV(gopts, pool+"/"+volume, false)
	if err != nil {
		return err
	}
	defer s.Close()
	p := s.Opened.Store.Pool
	v := p.Volume(volume)
	next, err := p.RemoveVolume(volume)
	if err != nil {
		return err
	}
	// Deactivate first, so that an open volume refuses with no change.
	if k, err := dm.Open(); err == nil {
		defer k.Close()
		devs, err := volumeDevices(k, p.UUID, v.UUID)
		if err != nil {
			return err
		}
		if err := removeDevices(k, devs); err != nil {
			return fmt.Errorf("remove %s/%s: %w", pool, volume, err)
		}
	} else if !dm.Unavailable(err) {
		return err
	}
	if err := s.Opened.Store.Commit(next); err != nil {
		return fmt.Errorf("remove %s/%s: %w", pool, volume, err)
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, map[string]any{"removed": pool + "/" + volume, "uuid": v.UUID, "freed_bytes": p.Sectors(v.Extents()).Bytes()})
	}
	fmt.Fprintf(gopts.stdout, "removed volume %s/%s, %s freed\n", pool, volume, sizeOf(p, v.Extents()))
	return nil
}

// isActive reports whether the volume's top device exists.
func (s *lvSession) isActive(v *lvm.Volume) (bool, error) {
	if s.Kernel == nil {
		return false, nil
	}
	devs, err := volumeDevices(s.Kernel, s.Opened.Store.Pool.UUID, v.UUID)
	return len(devs) > 0, err
}

func runLVExtend(ctx context.Context, gopts *globalOptions, opts lvOptions) error {
	pool, volume, err := splitVolumePath(gopts, opts.Path)
	if err != nil {
		return err
	}
	if err := requireSize(opts.Size); err != nil {
		return err
	}
	size, relative, err := lvm.ParseSizeChange(opts.Size)
	if err != nil {
		return usageErrorf("--size: %w", err)
	}
	s, err := openLV(gopts, pool+"/"+volume, !opts.NoActivate)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.settle(ctx, gopts); err != nil {
		return fmt.Errorf("extend %s/%s: %w", pool, volume, err)
	}
	p := s.Opened.Store.Pool
	v := p.Volume(volume)
	if v == nil {
		return fmt.Errorf("volume %s/%s: %w", pool, volume, lvm.ErrNotFound)
	}
	n, rounded := lvm.ExtentsFor(size, p.ExtentSize)
	if !relative {
		if n <= v.Extents() {
			return usageErrorf("volume %s/%s is already %s; --size %s would not grow it (shrinking is not supported)", pool, volume, sizeOf(p, v.Extents()), opts.Size)
		}
		n -= v.Extents()
	}
	next, err := p.ExtendVolume(volume, n)
	if err != nil {
		return err
	}
	if rounded && !gopts.Quiet {
		fmt.Fprintf(gopts.stderr, "dmsnap: size %s rounded up to whole extents of %s\n", opts.Size, lvm.FormatSize(p.ExtentSize))
	}
	active, err := s.isActive(v)
	if err != nil {
		return err
	}
	if err := s.Opened.Store.Commit(next); err != nil {
		return fmt.Errorf("extend %s/%s: %w", pool, volume, err)
	}
	return s.finish(ctx, gopts, "extended volume", volume, active)
}

func runLVRename(ctx context.Context, gopts *globalOptions, opts lvOptions) error {
	pool, volume, err := splitVolumePath(gopts, opts.Path)
	if err != nil {
		return err
	}
	newPool, newName, err := lvm.SplitPath(opts.NewName)
	if err != nil {
		return usageError{err}
	}
	if newPool != "" && newPool != pool {
		return usageErrorf("lv rename cannot move a volume to another pool (%s to %s)", pool, newPool)
	}
	s, err := openLV(gopts, pool+"/"+volume, !opts.NoActivate)
	if err != nil {
		return err
	}
	defer s.Close()
	p := s.Opened.Store.Pool
	v := p.Volume(volume)
	next, err := p.RenameVolume(volume, newName)
	if err != nil {
		return err
	}
	active, err := s.isActive(v)
	if err != nil {
		return err
	}
	if active {
		// The new device name must be free, or the rename after the
		// commit would fail: check before changing anything.
		if _, err := s.Kernel.Info(lvm.DMName(pool, newName, lvm.LayerNone)); err == nil {
			return fmt.Errorf("rename %s/%s: device %s exists: %w", pool, volume, lvm.DMName(pool, newName, lvm.LayerNone), lvm.ErrConflict)
		}
	}
	if err := s.Opened.Store.Commit(next); err != nil {
		return fmt.Errorf("rename %s/%s: %w", pool, volume, err)
	}
	return s.finish(ctx, gopts, "renamed volume "+pool+"/"+volume+" to", newName, active)
}

func requireSize(size string) error {
	if size == "" {
		return usageErrorf("--size is required")
	}
	return nil
}
