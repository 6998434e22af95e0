package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/blockdev"
	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/lvm"
)

// poolCreateOptions are the arguments of `pool create` and `pool extend`.
type poolCreateOptions struct {
	Name       string
	Devices    []string
	ExtentSize string
	Force      bool
	Default    bool
	File       string // create a sparse image here
	Size       string // of the image
}

func newPoolCommand(gopts *globalOptions) *cli.Command {
	imageFlags := []cli.Flag{
		&cli.StringFlag{Name: "file", Usage: "create a sparse image file at `PATH` and use it as a PV (attached through a loop device)"},
		&cli.StringFlag{Name: "size", Usage: "size of the --file image, e.g. 10G"},
		&cli.BoolFlag{Name: "force", Usage: "overwrite devices that hold a filesystem, partition table or other signature"},
	}
	createOpts := func(c *cli.Context, args []string) poolCreateOptions {
		return poolCreateOptions{
			Name: first(args), Devices: tail(args), ExtentSize: c.String("extent-size"),
			Force: c.Bool("force"), Default: c.Bool("default"), File: c.String("file"), Size: c.String("size"),
		}
	}
	activate := newActivateCommand(gopts)
	activate.Usage = "same as `dmsnap activate`"
	return &cli.Command{
		Name:  "pool",
		Usage: "create, list, grow, import and remove pools (volume groups) of PVs",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "make a pool of block devices or image files",
				ArgsUsage: "NAME [DEVICE|FILE...]",
				Description: "Writes a dmsnap label and metadata area on every PV. Refuses devices that hold a\n" +
					"filesystem, partition table or PV (--force overwrites), devices in use, and devices too\n" +
					"small for the metadata and one extent. Nothing is written unless every device passes.\n" +
					"With --file PATH --size SIZE it creates a sparse image and uses that.\n\n" + exitStatusHelp,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "extent-size", Value: "4M", Usage: "extent size, a power of two from 4K"},
					&cli.BoolFlag{Name: "default", Usage: "make this the default pool"},
				}, imageFlags...),
				Action: withArgs(func(c *cli.Context, args []string) error {
					return runPoolCreate(c.Context, gopts, createOpts(c, args))
				}),
			},
			{
				Name:        "ls",
				Usage:       "list pools found on devices and remembered image files",
				Description: "Read-only.\n\n" + exitStatusHelp,
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) > 0 {
						return usageErrorf("pool ls takes no arguments")
					}
					return runPoolList(c.Context, gopts)
				}),
			},
			{
				Name:        "show",
				Usage:       "show a pool's PVs, volumes and free space",
				ArgsUsage:   "NAME",
				Description: "Read-only.\n\n" + exitStatusHelp,
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("pool show needs exactly one pool name, got %d arguments", len(args))
					}
					return runPoolShow(c.Context, gopts, first(args))
				}),
			},
			{
				Name:        "extend",
				Usage:       "add block devices or image files to a pool",
				ArgsUsage:   "NAME [DEVICE|FILE...]",
				Description: "The checks of `pool create` apply to the new devices.\n\n" + exitStatusHelp,
				Flags:       imageFlags,
				Action: withArgs(func(c *cli.Context, args []string) error {
					return runPoolExtend(c.Context, gopts, createOpts(c, args))
				}),
			},
			{
				Name:      "remove",
				Usage:     "deactivate a pool and wipe its labels",
				ArgsUsage: "NAME",
				Description: "Refuses while the pool has volumes unless --force. Removes the pool's devices from\n" +
					"the kernel (refusing if one is open), then wipes label and metadata on every PV.\n" +
					"Image files are kept.\n\n" + exitStatusHelp,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "remove the pool with its volumes"}},
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("pool remove needs exactly one pool name, got %d arguments", len(args))
					}
					return runPoolRemove(c.Context, gopts, first(args), c.Bool("force"))
				}),
			},
			{
				Name:      "import",
				Usage:     "find pools on the given image files or devices (or all scanned ones) and remember them",
				ArgsUsage: "[FILE|DEVICE...]",
				Description: "Reads PV labels and records the image files of each pool found in the state file,\n" +
					"so that `dmsnap activate` finds them after a reboot. Changes no PV.\n\n" + exitStatusHelp,
				Action: withArgs(func(c *cli.Context, args []string) error {
					return runPoolImport(c.Context, gopts, args)
				}),
			},
			activate,
		},
	}
}

// minPVSectors is the smallest PV that holds the default metadata area
// and one extent.
func minPVSectors(extent dm.Sector) dm.Sector {
	meta := lvm.MetadataStart + 2*lvm.DefaultSlotSize
	meta = (meta + lvm.PEAlign - 1) / lvm.PEAlign * lvm.PEAlign
	return meta + extent
}

// newPVs checks the devices and image files given to create or extend and
// opens them read-write. Nothing is written.
func newPVs(args []string, image string) ([]pvSource, error) {
	var out []pvSource
	seen := map[string]string{}
	for _, a := range args {
		s, err := classify(a)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[s.Path]; dup {
			return nil, usageErrorf("%s and %s are the same device", prev, a)
		}
		seen[s.Path] = a
		if !s.Image {
			if blockdev.IsDM(s.Path) {
				return nil, fmt.Errorf("%s is a device-mapper device; dmsnap does not stack pools on volumes", a)
			}
			// An exclusive open fails while the device is mounted or
			// held by a dm table or another exclusive opener.
			f, err := os.OpenFile(s.Path, os.O_RDONLY|os.O_EXCL, 0)
			if err != nil {
				return nil, fmt.Errorf("%s is in use (mounted, or held by device-mapper or another program): %w", a, err)
			}
			f.Close()
		}
		out = append(out, s)
	}
	if image != "" {
		abs, err := filepath.Abs(image)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[abs]; dup {
			return nil, usageErrorf("%s is given twice", image)
		}
		out = append(out, pvSource{Path: abs, Image: true})
	}
	return out, nil
}

// checkImageFlags validates --file and --size, returning the image size.
func checkImageFlags(opts poolCreateOptions, extent dm.Sector, verb string) (dm.Sector, error) {
	if opts.File == "" {
		if opts.Size != "" {
			return 0, usageErrorf("--size is the size of a --file image; give --file too")
		}
		if len(opts.Devices) == 0 {
			return 0, usageErrorf("pool %s needs DEVICE|FILE arguments or --file PATH --size SIZE", verb)
		}
		return 0, nil
	}
	if opts.Size == "" {
		return 0, usageErrorf("--file needs --size")
	}
	size, err := lvm.ParseSize(opts.Size)
	if err != nil {
		return 0, usageErrorf("--size: %w", err)
	}
	if min := minPVSectors(extent); size < min {
		return 0, usageErrorf("--size %s is too small: a PV needs at least %s (metadata and one extent): %w", opts.Size, lvm.FormatSize(min), lvm.ErrTooSmall)
	}
	if _, err := os.Lstat(opts.File); err == nil {
		return 0, fmt.Errorf("%s already exists; to use an existing image, name it as an argument: %w", opts.File, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	return size, nil
}

// openPVs creates the --file image if asked, then opens every source
// read-write. cleanup closes them and, after a failure, removes the image.
func openPVs(srcs []pvSource, image string, imageSize dm.Sector) (disks []lvm.Disk, cleanup func(failed bool) error, err error) {
	var fds []*lvm.FileDisk
	created := false
	cleanup = func(failed bool) error {
		var errs []error
		for _, fd := range fds {
			errs = append(errs, fd.Close())
		}
		if failed && created {
			errs = append(errs, os.Remove(image))
		}
		return errors.Join(errs...)
	}
	if image != "" {
		abs, _ := filepath.Abs(image)
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return nil, nil, err
		}
		if err := lvm.CreateImage(abs, imageSize); err != nil {
			return nil, nil, fmt.Errorf("create image: %w", err)
		}
		created = true
		image = abs
	}
	for _, s := range srcs {
		fd, err := lvm.OpenDisk(s.Path, true)
		if err != nil {
			return nil, nil, errors.Join(err, cleanup(true))
		}
		fds = append(fds, fd)
		disks = append(disks, fd)
	}
	return disks, cleanup, nil
}

func runPoolCreate(ctx context.Context, gopts *globalOptions, opts poolCreateOptions) error {
	if opts.Name == "" {
		return usageErrorf("pool create needs a pool name")
	}
	if err := lvm.ValidateName("pool", opts.Name); err != nil {
		return usageError{err}
	}
	extent, err := lvm.ParseSize(opts.ExtentSize)
	if err != nil {
		return usageErrorf("--extent-size: %w", err)
	}
	if err := lvm.CheckExtentSize(extent); err != nil {
		return usageErrorf("--extent-size: %w", err)
	}
	imageSize, err := checkImageFlags(opts, extent, "create")
	if err != nil {
		return err
	}
	srcs, err := newPVs(opts.Devices, opts.File)
	if err != nil {
		return err
	}
	if opts.Force {
		if err := checkNotInPool(gopts, srcs); err != nil {
			return err
		}
	}
	l, err := lockPool(gopts, opts.Name, lock.Exclusive)
	if err != nil {
		return err
	}
	defer l.Close()
	d, err := discover(gopts, nil)
	if err != nil {
		return err
	}
	if fp, err := d.ByName(opts.Name); err != nil || fp != nil {
		if err == nil {
			err = fmt.Errorf("pool %s already exists (uuid %s): %w", opts.Name, fp.UUID, lvm.ErrExists)
		}
		return err
	}
	if st, err := loadState(gopts); err != nil {
		return err
	} else if sp, known := st.Pools[opts.Name]; known && sp.Removing {
		// A pool remove killed after its last wipe: finish it.
		if _, err := forgetIfRemoving(ctx, gopts, opts.Name); err != nil {
			return err
		}
	} else if known {
		return fmt.Errorf("pool %s is in the state file %s though its PVs were not found; `dmsnap pool remove --force %s` forgets it: %w", opts.Name, gopts.statePath(), opts.Name, lvm.ErrExists)
	}
	disks, cleanup, err := openPVs(srcs, opts.File, imageSize)
	if err != nil {
		return err
	}
	s, err := lvm.Create(opts.Name, disks, lvm.CreateOptions{ExtentSize: extent, Force: opts.Force})
	if err != nil {
		return errors.Join(fmt.Errorf("create pool %s: %w", opts.Name, err), cleanup(true))
	}
	if err := cleanup(false); err != nil {
		return err
	}
	var images []string
	for _, src := range srcs {
		if src.Image {
			images = append(images, src.Path)
		}
	}
	if err := rememberPool(ctx, gopts, opts.Name, s.Pool.UUID, images, opts.Default); err != nil {
		return fmt.Errorf("pool %s created, but: %w", opts.Name, err)
	}
	o := &openedPool{Store: s, Sources: map[lvm.UUID]pvSource{}}
	for i, pv := range s.Pool.PVs {
		o.Sources[pv.UUID] = srcs[i]
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, describePool(o, opts.Default, nil))
	}
	p := s.Pool
	fmt.Fprintf(gopts.stdout, "created pool %s (uuid %s): %d PVs, %s in %d extents of %s\n",
		p.Name, p.UUID, len(p.PVs), sizeOf(p, p.TotalExtents()), p.TotalExtents(), lvm.FormatSize(p.ExtentSize))
	if opts.Default {
		fmt.Fprintf(gopts.stdout, "default pool is now %s\n", p.Name)
	}
	return nil
}

func runPoolExtend(ctx context.Context, gopts *globalOptions, opts poolCreateOptions) error {
	if opts.Name == "" {
		return usageErrorf("pool extend needs a pool name")
	}
	if err := lvm.ValidateName("pool", opts.Name); err != nil {
		return usageError{err}
	}
	l, err := lockPool(gopts, opts.Name, lock.Exclusive)
	if err != nil {
		return err
	}
	defer l.Close()
	o, err := openPool(gopts, opts.Name, true, nil)
	if err != nil {
		return err
	}
	defer o.Close()
	gopts.warn(o.Warnings...)
	s := o.Store
	imageSize, err := checkImageFlags(opts, s.Pool.ExtentSize, "extend")
	if err != nil {
		return err
	}
	srcs, err := newPVs(opts.Devices, opts.File)
	if err != nil {
		return err
	}
	if err := checkNotInPool(gopts, srcs); err != nil {
		return err
	}
	before := len(s.Pool.PVs)
	disks, cleanup, err := openPVs(srcs, opts.File, imageSize)
	if err != nil {
		return err
	}
	if err := s.Extend(disks, lvm.CreateOptions{Force: opts.Force}); err != nil {
		return errors.Join(fmt.Errorf("extend pool %s: %w", opts.Name, err), cleanup(true))
	}
	if err := cleanup(false); err != nil {
		return err
	}
	var images []string
	for i, src := range srcs {
		o.Sources[s.Pool.PVs[before+i].UUID] = src
		if src.Image {
			images = append(images, src.Path)
		}
	}
	if err := rememberPool(ctx, gopts, opts.Name, s.Pool.UUID, images, false); err != nil {
		return fmt.Errorf("pool %s extended, but: %w", opts.Name, err)
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, describePool(o, false, nil))
	}
	p := s.Pool
	fmt.Fprintf(gopts.stdout, "extended pool %s by %d PVs: now %s, %s free\n", p.Name, len(srcs), sizeOf(p, p.TotalExtents()), sizeOf(p, p.FreeExtents()))
	return nil
}

// jsonPool is a pool in --json output.
type jsonPool struct {
	Name            string       `json:"name"`
	UUID            lvm.UUID     `json:"uuid"`
	Default         bool         `json:"default"`
	Seqno           uint64       `json:"seqno"`
	ExtentSizeBytes uint64       `json:"extent_size_bytes"`
	TotalExtents    uint64       `json:"total_extents"`
	FreeExtents     uint64       `json:"free_extents"`
	SizeBytes       uint64       `json:"size_bytes"`
	FreeBytes       uint64       `json:"free_bytes"`
	PVs             []jsonPV     `json:"pvs"`
	Volumes         []jsonVolume `json:"volumes"`
	Warnings        []string     `json:"warnings"`
}

type jsonPV struct {
	UUID        lvm.UUID `json:"uuid"`
	Path        string   `json:"path"`
	Image       bool     `json:"image"`
	Missing     bool     `json:"missing"`
	SizeBytes   uint64   `json:"size_bytes"`
	Extents     uint64   `json:"extents"`
	FreeExtents uint64   `json:"free_extents"`
}

type jsonVolume struct {
	Pool      string        `json:"pool"`
	Name      string        `json:"name"`
	UUID      lvm.UUID      `json:"uuid"`
	Kind      string        `json:"kind"`
	SizeBytes uint64        `json:"size_bytes"`
	Extents   uint64        `json:"extents"`
	Segments  []lvm.Segment `json:"segments"`
	DMName    string        `json:"dm_name"`
	// Device is the /dev/mapper path; Active says whether the kernel has
	// the device (absent when device-mapper could not be asked).
	Device string `json:"device"`
	Active *bool  `json:"active,omitempty"`
}

func describeVolume(p *lvm.Pool, v *lvm.Volume, active map[string]bool) jsonVolume {
	name := lvm.DMName(p.Name, v.Name, lvm.LayerNone)
	jv := jsonVolume{
		Pool: p.Name, Name: v.Name, UUID: v.UUID, Kind: string(v.Kind),
		SizeBytes: p.Sectors(v.Extents()).Bytes(), Extents: uint64(v.Extents()), Segments: v.Segments,
		DMName: name, Device: dm.DevicePath(name),
	}
	if jv.Segments == nil {
		jv.Segments = []lvm.Segment{}
	}
	if active != nil {
		a := active[lvm.DMUUID(p.UUID, v.UUID, lvm.LayerNone)]
		jv.Active = &a
	}
	return jv
}

func describePool(o *openedPool, isDefault bool, active map[string]bool) jsonPool {
	p := o.Store.Pool
	jp := jsonPool{
		Name: p.Name, UUID: p.UUID, Default: isDefault, Seqno: p.Seqno,
		ExtentSizeBytes: p.ExtentSize.Bytes(), TotalExtents: uint64(p.TotalExtents()), FreeExtents: uint64(p.FreeExtents()),
		SizeBytes: p.Sectors(p.TotalExtents()).Bytes(), FreeBytes: p.Sectors(p.FreeExtents()).Bytes(),
		PVs: []jsonPV{}, Volumes: []jsonVolume{}, Warnings: o.Warnings,
	}
	if jp.Warnings == nil {
		jp.Warnings = []string{}
	}
	free := map[lvm.UUID]lvm.ExtentCount{}
	for _, r := range p.FreeRuns() {
		free[r.PV] += r.Count
	}
	for _, pv := range p.PVs {
		_, present := o.Store.Disks[pv.UUID]
		src, ok := o.Sources[pv.UUID]
		path := src.Path
		if !ok || path == "" {
			path = pv.DeviceHint
		}
		jp.PVs = append(jp.PVs, jsonPV{
			UUID: pv.UUID, Path: path, Image: src.Image, Missing: !present,
			SizeBytes: pv.Size.Bytes(), Extents: uint64(pv.PECount), FreeExtents: uint64(free[pv.UUID]),
		})
	}
	for i := range p.Volumes {
		jp.Volumes = append(jp.Volumes, describeVolume(p, &p.Volumes[i], active))
	}
	return jp
}

// activeUUIDs returns the DM UUIDs the kernel has, or nil when
// device-mapper is unavailable (then activity is unknown).
func activeUUIDs() map[string]bool {
	c, err := dm.Open()
	if err != nil {
		return nil
	}
	defer c.Close()
	list, err := c.List()
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, e := range list {
		if e.UUID != "" {
			out[e.UUID] = true
		}
	}
	return out
}

// loadAllPools loads every discovered pool under a shared lock each.
func loadAllPools(gopts *globalOptions, d *discovery) ([]*openedPool, error) {
	var out []*openedPool
	for _, fp := range d.Pools {
		l, err := lockPool(gopts, fp.Name, lock.Shared)
		if err != nil {
			return nil, err
		}
		o, err := loadFound(fp, false)
		l.Close()
		if err != nil {
			gopts.warn(err.Error())
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

// anyUnreadable reports whether discovery skipped one of images as
// unreadable, and so has already warned about it.
func anyUnreadable(d *discovery, images []string) bool {
	for _, img := range images {
		if s, err := classify(img); err == nil && d.Unreadable[s.Path] != "" {
			return true
		}
	}
	return false
}

func runPoolList(_ context.Context, gopts *globalOptions) error {
	d, err := discover(gopts, nil)
	if err != nil {
		return err
	}
	gopts.warn(d.Warnings...) // unreadable PVs included
	st, err := loadState(gopts)
	if err != nil {
		return err
	}
	pools, err := loadAllPools(gopts, d)
	if err != nil {
		return err
	}
	defer func() {
		for _, o := range pools {
			o.Close()
		}
	}()
	found := map[string]bool{}
	for _, o := range pools {
		found[o.Store.Pool.Name] = true
	}
	for name, sp := range st.Pools {
		if !found[name] && !sp.Removing && !anyUnreadable(d, sp.Images) {
			gopts.warn(fmt.Sprintf("pool %s is in the state file but none of its PVs was found (missing images: %s)", name, strings.Join(d.MissingImages[name], ", ")))
		}
	}
	if gopts.JSON {
		out := []jsonPool{}
		for _, o := range pools {
			out = append(out, describePool(o, o.Store.Pool.Name == st.DefaultPool, nil))
		}
		return writeJSON(gopts.stdout, out)
	}
	tw := tabwriter.NewWriter(gopts.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPVS\tLVS\tSIZE\tFREE\tEXTENT\tDEFAULT\tUUID")
	for _, o := range pools {
		p := o.Store.Pool
		pvs := fmt.Sprint(len(p.PVs))
		if len(o.Store.Missing) > 0 {
			pvs = fmt.Sprintf("%d (%d missing)", len(p.PVs), len(o.Store.Missing))
		}
		def := ""
		if p.Name == st.DefaultPool {
			def = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, pvs, len(p.Volumes),
			sizeOf(p, p.TotalExtents()), sizeOf(p, p.FreeExtents()), lvm.FormatSize(p.ExtentSize), def, p.UUID)
	}
	return tw.Flush()
}

func runPoolShow(_ context.Context, gopts *globalOptions, name string) error {
	if err := lvm.ValidateName("pool", name); err != nil {
		return usageError{err}
	}
	l, err := lockPool(gopts, name, lock.Shared)
	if err != nil {
		return err
	}
	defer l.Close()
	o, err := openPool(gopts, name, false, nil)
	if err != nil {
		return err
	}
	defer o.Close()
	st, err := loadState(gopts)
	if err != nil {
		return err
	}
	jp := describePool(o, st.DefaultPool == name, activeUUIDs())
	if gopts.JSON {
		return writeJSON(gopts.stdout, jp)
	}
	gopts.warn(o.Warnings...)
	p := o.Store.Pool
	w := gopts.stdout
	fmt.Fprintf(w, "pool:     %s%s\n", p.Name, map[bool]string{true: " (default)"}[jp.Default])
	fmt.Fprintf(w, "uuid:     %s\n", p.UUID)
	fmt.Fprintf(w, "seqno:    %d\n", p.Seqno)
	fmt.Fprintf(w, "extent:   %s\n", lvm.FormatSize(p.ExtentSize))
	fmt.Fprintf(w, "size:     %s (%d extents)\n", sizeOf(p, p.TotalExtents()), p.TotalExtents())
	fmt.Fprintf(w, "free:     %s (%d extents)\n", sizeOf(p, p.FreeExtents()), p.FreeExtents())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPV\tPATH\tSIZE\tEXTENTS\tFREE")
	for _, pv := range jp.PVs {
		path := pv.Path
		if pv.Missing {
			path = "MISSING (last seen " + dashIfEmpty(pv.Path) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", pv.UUID, path, humanBytes(pv.SizeBytes), pv.Extents, pv.FreeExtents)
	}
	if len(jp.Volumes) > 0 {
		fmt.Fprintln(tw, "\nVOLUME\tKIND\tSIZE\tDEVICE\tACTIVE")
		for _, v := range jp.Volumes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Kind, humanBytes(v.SizeBytes), v.Device, yesNo(v.Active))
		}
	}
	return tw.Flush()
}

func yesNo(b *bool) string {
	switch {
	case b == nil:
		return "?"
	case *b:
		return "yes"
	}
	return "no"
}

// wipePV zeroes a PV's label and metadata area, so that no scan finds it.
// The label goes first: a PV without a label is no PV, whatever its slots
// hold.
func wipePV(d lvm.Disk, l lvm.Label) error {
	zero := make([]byte, lvm.LabelSize)
	if _, err := d.WriteAt(zero, lvm.LabelOffset); err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return err
	}
	failpoint.Hit(fpPoolRemoveAfterLabel)
	area := make([]byte, (l.MetadataStart+2*l.SlotSize).Bytes()-lvm.LabelOffset-lvm.LabelSize)
	if _, err := d.WriteAt(area, lvm.LabelOffset+lvm.LabelSize); err != nil {
		return err
	}
	return d.Sync()
}

// Failpoints of pool remove (internal/failpoint).
const (
	fpPoolRemoveAfterLabel = "pool.remove.after-label" // a PV's label zeroed and synced, its metadata area not
	fpPoolRemoveAfterWipe  = "pool.remove.after-wipe"  // a PV wiped and synced (fires per PV)
)

// wipePool marks the pool's state-file entry removing, wipes every PV of
// o present (with the failpoints of pool remove), then forgets the pool
// in the state file. The entry goes last: until then it names the image
// files, so that discovery still finds the PVs not yet wiped and their
// pending removal; its mark lets settleRemoved forget it after a kill
// past the last wipe.
func wipePool(ctx context.Context, gopts *globalOptions, o *openedPool, name string) error {
	if err := markRemoving(ctx, gopts, name, o.Store.Pool.UUID); err != nil {
		return fmt.Errorf("remove pool %s: %w (nothing was wiped)", name, err)
	}
	failpoint.Hit(fpPoolRemoveAfterMark)
	for id, d := range o.Store.Disks {
		lab, _ := o.Store.Label(id)
		if err := wipePV(d, lab); err != nil {
			return fmt.Errorf("remove pool %s: wipe %s: %w", name, o.Sources[id].Path, err)
		}
		failpoint.Hit(fpPoolRemoveAfterWipe)
	}
	if err := forgetPool(ctx, gopts, name); err != nil {
		return fmt.Errorf("pool %s removed, but: %w", name, err)
	}
	return nil
}

func runPoolRemove(ctx context.Context, gopts *globalOptions, name string, force bool) error {
	if err := lvm.ValidateName("pool", name); err != nil {
		return usageError{err}
	}
	l, err := lockPool(gopts, name, lock.Exclusive)
	if err != nil {
		return err
	}
	defer l.Close()
	o, err := openPoolRemoving(gopts, name, true, nil)
	if errors.Is(err, lvm.ErrNotFound) {
		// Killed after its last wipe: only the entry marked removing is
		// left.
		forgot, ferr := forgetIfRemoving(ctx, gopts, name)
		if ferr != nil {
			return ferr
		}
		if forgot && gopts.JSON {
			return writeJSON(gopts.stdout, map[string]any{"removed": name, "finished": true})
		}
		if forgot {
			fmt.Fprintf(gopts.stdout, "finished removing pool %s (an interrupted pool remove had wiped its PVs)\n", name)
			return nil
		}
	}
	if errors.Is(err, lvm.ErrNotFound) && force {
		// Only the state file remembers it: forget it.
		st, serr := loadState(gopts)
		if serr != nil {
			return serr
		}
		if _, known := st.Pools[name]; !known {
			return err
		}
		if err := forgetPool(ctx, gopts, name); err != nil {
			return err
		}
		fmt.Fprintf(gopts.stdout, "forgot pool %s (its PVs were not found)\n", name)
		return nil
	}
	if err != nil {
		return err
	}
	defer o.Close()
	p := o.Store.Pool
	resumed := p.RemovalPending() // an interrupted pool remove: finish it
	if len(p.Volumes) > 0 && !force && !resumed {
		var names []string
		for _, v := range p.Volumes {
			names = append(names, v.Name)
		}
		return fmt.Errorf("pool %s has %d volumes (%s); remove them first or use --force: %w", name, len(names), strings.Join(names, ", "), lvm.ErrInUse)
	}
	if k, err := dm.Open(); err == nil {
		cur, err := lvm.CurrentDevices(k, p.UUID, nil)
		if err == nil && len(cur) > 0 {
			err = lvm.Deactivate(k, p.UUID)
			for _, d := range cur {
				_ = dm.RemoveNode(d.Name)
			}
		}
		k.Close()
		if err != nil {
			return fmt.Errorf("remove pool %s: deactivate: %w (nothing was wiped)", name, err)
		}
	} else if !dm.Unavailable(err) {
		return err
	}
	// The intent, on every PV, before the first is wiped: a crash part
	// way leaves the pool's newest metadata saying it is being removed,
	// and activate (or this command again) finishes the job. A pool with
	// missing PVs cannot commit; it is wiped as found.
	if !resumed && len(o.Store.Missing) == 0 {
		next, _ := p.AddPending(lvm.PendingOp{Op: lvm.OpPoolRemove})
		if err := o.Store.Commit(next); err != nil {
			return fmt.Errorf("remove pool %s: %w (nothing was wiped)", name, err)
		}
	}
	if len(o.Store.Missing) > 0 && !resumed {
		gopts.warn(fmt.Sprintf("%d missing PVs of pool %s keep their labels", len(o.Store.Missing), name))
	}
	if err := wipePool(ctx, gopts, o, name); err != nil {
		return err
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, map[string]any{"removed": name, "uuid": p.UUID, "kept_images": nonNil(o.Images())})
	}
	fmt.Fprintf(gopts.stdout, "removed pool %s (%d PVs wiped)\n", name, len(o.Store.Disks))
	for _, img := range o.Images() {
		fmt.Fprintf(gopts.stdout, "image file kept: %s\n", img)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func forgetPool(ctx context.Context, gopts *globalOptions, name string) error {
	return updateState(ctx, gopts, func(st *state) error {
		delete(st.Pools, name)
		if st.DefaultPool == name {
			st.DefaultPool = ""
		}
		return nil
	})
}

type jsonImport struct {
	Name       string   `json:"name"`
	UUID       lvm.UUID `json:"uuid"`
	PVs        int      `json:"pvs"`
	MissingPVs int      `json:"missing_pvs"`
	Volumes    int      `json:"volumes"`
	Images     []string `json:"images"`
}

func runPoolImport(ctx context.Context, gopts *globalOptions, paths []string) error {
	d, err := discover(gopts, paths)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, p := range paths {
		s, err := classify(p)
		if err != nil {
			return err
		}
		if !s.Image {
			if f := loop.Backing(s.Path); f != "" {
				s.Path = f
			}
		}
		want[s.Path] = false
	}
	var sel []*foundPool
	for _, fp := range d.Pools {
		hit := len(paths) == 0
		for _, s := range fp.Sources {
			if _, ok := want[s.Path]; ok {
				want[s.Path] = true
				hit = true
			}
		}
		if hit {
			sel = append(sel, fp)
		}
	}
	var none []string
	for p, ok := range want {
		if ok {
			continue
		}
		if why, bad := d.Unreadable[p]; bad {
			return fmt.Errorf("cannot import %s: %s", p, why)
		}
		none = append(none, p)
	}
	if len(none) > 0 {
		sort.Strings(none)
		return fmt.Errorf("%s: %w", strings.Join(none, ", "), lvm.ErrNoLabel)
	}
	gopts.warn(d.Warnings...)
	st, err := loadState(gopts)
	if err != nil {
		return err
	}
	for _, fp := range sel {
		if known, ok := st.Pools[fp.Name]; ok && known.UUID != fp.UUID {
			return fmt.Errorf("pool %s (uuid %s) clashes with the pool of that name the state file knows (uuid %s): %w", fp.Name, fp.UUID, known.UUID, lvm.ErrExists)
		}
	}
	var out []jsonImport
	for _, fp := range sel {
		o, err := loadFound(fp, false)
		if err != nil {
			return err
		}
		o.Close()
		gopts.warn(o.Warnings...)
		imgs := o.Images()
		if err := rememberPool(ctx, gopts, fp.Name, fp.UUID, imgs, false); err != nil {
			return err
		}
		out = append(out, jsonImport{Name: fp.Name, UUID: fp.UUID, PVs: len(o.Store.Pool.PVs), MissingPVs: len(o.Store.Missing), Volumes: len(o.Store.Pool.Volumes), Images: nonNil(imgs)})
	}
	if gopts.JSON {
		if out == nil {
			out = []jsonImport{}
		}
		return writeJSON(gopts.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(gopts.stdout, "no pools found")
	}
	for _, i := range out {
		fmt.Fprintf(gopts.stdout, "imported pool %s (uuid %s): %d PVs, %d volumes", i.Name, i.UUID, i.PVs, i.Volumes)
		if i.MissingPVs > 0 {
			fmt.Fprintf(gopts.stdout, ", %d PVs MISSING", i.MissingPVs)
		}
		fmt.Fprintln(gopts.stdout)
	}
	return nil
}

// checkNotInPool refuses, even with --force, a device that is a PV of a
// pool that scanning finds: overwriting it would break that pool.
func checkNotInPool(gopts *globalOptions, srcs []pvSource) error {
	d, err := discover(gopts, nil)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		for _, fp := range d.Pools {
			for _, have := range fp.Sources {
				if have.Path == s.Path {
					return fmt.Errorf("%s is a PV of pool %s; remove that pool first: %w", s.Path, fp.Name, lvm.ErrInUse)
				}
			}
		}
	}
	return nil
}
