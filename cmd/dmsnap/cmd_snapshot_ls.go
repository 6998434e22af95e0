package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/urfave/cli/v2"
)

// jsonSnap is one row of `dmsnap ls --json` and the body of `dmsnap
// status --json`. Sector counts come from the kernel's status and are
// absent while the snapshot is not active.
type jsonSnap struct {
	Pool       string   `json:"pool"`
	Name       string   `json:"name"`
	UUID       lvm.UUID `json:"uuid"`
	Origin     string   `json:"origin"`
	SizeBytes  uint64   `json:"size_bytes"`
	COWBytes   uint64   `json:"cow_bytes"`
	Store      string   `json:"store"`
	ChunkBytes uint64   `json:"chunk_bytes"`
	// UsePercent is LVM's Snap%: 0 when allocated == metadata; null
	// when unknown (inactive, invalid).
	UsePercent *float64 `json:"use_percent"`
	// State is active, inactive, invalid, overflow, merging or
	// merge-failed.
	State    string   `json:"state"`
	Features []string `json:"features"`
	ReadOnly bool     `json:"read_only"`
	Device   string   `json:"device"`
	// Kernel status, in 512-byte sectors of the COW device.
	AllocatedSectors *uint64 `json:"allocated_sectors,omitempty"`
	TotalSectors     *uint64 `json:"total_sectors,omitempty"`
	MetadataSectors  *uint64 `json:"metadata_sectors,omitempty"`
	Table            string  `json:"table,omitempty"`
	Status           string  `json:"status,omitempty"`
}

// snapColumns are the columns `dmsnap ls -o` accepts, in default order.
var snapColumns = []string{"pool", "name", "origin", "size", "cow", "store", "chunk", "use%", "state", "features"}

func (j *jsonSnap) column(c string) string {
	switch c {
	case "pool":
		return j.Pool
	case "name":
		return j.Name
	case "origin":
		return j.Origin
	case "size":
		return lvm.FormatSize(dm.Sector(j.SizeBytes / dm.SectorSize))
	case "cow":
		return lvm.FormatSize(dm.Sector(j.COWBytes / dm.SectorSize))
	case "store":
		return j.Store
	case "chunk":
		return lvm.FormatSize(dm.Sector(j.ChunkBytes / dm.SectorSize))
	case "use%":
		if j.UsePercent == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", *j.UsePercent)
	case "state":
		return j.State
	case "features":
		if len(j.Features) == 0 {
			return "-"
		}
		return strings.Join(j.Features, ",")
	case "uuid":
		return string(j.UUID)
	case "device":
		return j.Device
	case "allocated", "total", "metadata":
		v := map[string]*uint64{"allocated": j.AllocatedSectors, "total": j.TotalSectors, "metadata": j.MetadataSectors}[c]
		if v == nil {
			return "-"
		}
		return fmt.Sprint(*v)
	}
	return ""
}

// describeSnapshot fills a row from the metadata and, with k, the kernel.
func describeSnapshot(k *dm.Client, p *lvm.Pool, rec lvm.Snapshot) jsonSnap {
	cv := p.VolumeByUUID(rec.COW)
	origin := p.VolumeByUUID(rec.Origin)
	name := lvm.DMName(p.Name, cv.Name, lvm.LayerNone)
	j := jsonSnap{
		Pool: p.Name, Name: cv.Name, UUID: cv.UUID, Origin: origin.Name,
		SizeBytes: p.Sectors(origin.Extents()).Bytes(), COWBytes: p.Sectors(cv.Extents()).Bytes(),
		Store: string(rec.Store), ChunkBytes: rec.ChunkSize.Bytes(), State: "inactive", Features: []string{},
		ReadOnly: rec.ReadOnly, Device: dm.DevicePath(name),
	}
	if rec.DiscardZeroesCOW {
		j.Features = append(j.Features, "discard_zeroes_cow")
	}
	if rec.DiscardPassdownOrigin {
		j.Features = append(j.Features, "discard_passdown_origin")
	}
	switch rec.State {
	case lvm.SnapshotMerging, lvm.SnapshotMergeFailed:
		j.State = string(rec.State)
		return j
	}
	if k == nil {
		return j
	}
	lines, info, err := k.Status(name)
	if err != nil || len(lines) != 1 || info.UUID != lvm.DMUUID(p.UUID, cv.UUID, lvm.LayerNone) {
		return j
	}
	j.Status = lines[0].String()
	if t, _, err := k.Table(name, dm.TableOptions{}); err == nil && len(t) == 1 {
		j.Table = t[0].String()
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		j.State = "unknown"
		return j
	}
	switch st.State {
	case dm.SnapshotActive:
		j.State = string(lvm.SnapshotActive)
		a, t, m := uint64(st.Allocated), uint64(st.Total), uint64(st.Metadata)
		j.AllocatedSectors, j.TotalSectors, j.MetadataSectors = &a, &t, &m
	case dm.SnapshotInvalid:
		j.State = string(lvm.SnapshotInvalid)
	case dm.SnapshotOverflow:
		j.State = string(lvm.SnapshotOverflow)
	case dm.SnapshotMergeFailed:
		j.State = string(lvm.SnapshotMergeFailed)
	default:
		j.State = "unknown"
	}
	if pct := st.Percent(); pct >= 0 {
		j.UsePercent = &pct
	}
	return j
}

func newLsCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list snapshots, like lvs: name, origin, size, COW, store, chunk, use%, state, features",
		ArgsUsage: "[POOL]",
		Description: "use% is LVM's Snap%: 0.00 for an empty COW (allocated == metadata), 100.00 when full.\n" +
			"state is active, inactive, invalid (COW full or I/O error), overflow (PO filled by its own\n" +
			"writes), merging or merge-failed. -o picks columns from: " + strings.Join(snapColumns, ",") +
			",uuid,device,allocated,total,metadata.\nRead-only.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{&cli.StringFlag{Name: "options", Aliases: []string{"o"}, Usage: "comma-separated columns"}},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) > 1 {
				return usageErrorf("ls takes at most one pool name")
			}
			return runSnapList(c.Context, gopts, first(args), c.String("options"))
		}),
	}
}

func runSnapList(_ context.Context, gopts *globalOptions, pool, columns string) error {
	cols := snapColumns
	if columns != "" {
		cols = strings.Split(columns, ",")
		known := append(slices.Clone(snapColumns), "uuid", "device", "allocated", "total", "metadata")
		for _, c := range cols {
			if !slices.Contains(known, c) {
				return usageErrorf("-o: unknown column %q (known: %s,uuid,device,allocated,total,metadata)", c, strings.Join(snapColumns, ","))
			}
		}
	}
	if pool != "" {
		if err := lvm.ValidateName("pool", pool); err != nil {
			return usageError{err}
		}
	}
	d, err := discover(gopts, nil)
	if err != nil {
		return err
	}
	gopts.warn(d.Warnings...)
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
	k, err := dm.Open()
	if err != nil && !dm.Unavailable(err) {
		return err
	}
	if k != nil {
		defer k.Close()
	}
	rows := []jsonSnap{}
	for _, o := range pools {
		p := o.Store.Pool
		for _, rec := range p.Snapshots {
			rows = append(rows, describeSnapshot(k, p, rec))
		}
		o.Close()
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, rows)
	}
	tw := tabwriter.NewWriter(gopts.stdout, 0, 4, 2, ' ', 0)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = strings.ToUpper(c)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for i := range rows {
		vals := make([]string, len(cols))
		for j, c := range cols {
			vals[j] = rows[i].column(c)
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

func newStatusCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show one snapshot with the kernel's raw sector counts",
		ArgsUsage: "[POOL/]SNAP",
		Description: "Prints the metadata record and, when active, the kernel's table and status with\n" +
			"allocated/total/metadata in 512-byte sectors of the COW. Read-only.\n\n" + exitStatusHelp,
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 1 {
				return usageErrorf("status needs one [POOL/]SNAP, got %d arguments", len(args))
			}
			return runSnapStatus(c.Context, gopts, args[0])
		}),
	}
}

func runSnapStatus(_ context.Context, gopts *globalOptions, arg string) error {
	pool, name, err := splitVolumePath(gopts, arg)
	if err != nil {
		return err
	}
	l, err := lockPool(gopts, pool, lock.Shared)
	if err != nil {
		return err
	}
	defer l.Close()
	o, err := openPool(gopts, pool, false, nil)
	if err != nil {
		return err
	}
	defer o.Close()
	p := o.Store.Pool
	v := p.Volume(name)
	if v == nil || p.SnapshotByCOW(v.UUID) == nil {
		return fmt.Errorf("snapshot %s/%s: %w", pool, name, lvm.ErrNotFound)
	}
	k, err := dm.Open()
	if err != nil && !dm.Unavailable(err) {
		return err
	}
	if k != nil {
		defer k.Close()
	}
	j := describeSnapshot(k, p, *p.SnapshotByCOW(v.UUID))
	if gopts.JSON {
		return writeJSON(gopts.stdout, j)
	}
	w := gopts.stdout
	fmt.Fprintf(w, "snapshot   %s/%s\n", j.Pool, j.Name)
	fmt.Fprintf(w, "origin     %s/%s (%s)\n", j.Pool, j.Origin, j.column("size"))
	fmt.Fprintf(w, "state      %s\n", j.State)
	fmt.Fprintf(w, "store      %s, chunk %s, COW %s\n", j.Store, j.column("chunk"), j.column("cow"))
	fmt.Fprintf(w, "features   %s\n", j.column("features"))
	fmt.Fprintf(w, "use%%       %s\n", j.column("use%"))
	if j.AllocatedSectors != nil {
		fmt.Fprintf(w, "allocated  %d sectors (data %d + metadata %d)\n", *j.AllocatedSectors, *j.AllocatedSectors-*j.MetadataSectors, *j.MetadataSectors)
		fmt.Fprintf(w, "total      %d sectors\n", *j.TotalSectors)
	}
	fmt.Fprintf(w, "device     %s\n", j.Device)
	if j.Table != "" {
		fmt.Fprintf(w, "table      %s\n", j.Table)
		fmt.Fprintf(w, "status     %s\n", j.Status)
	}
	return nil
}

func newRemoveCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove a snapshot and free its COW",
		ArgsUsage: "[POOL/]SNAP",
		Description: "Refuses while the snapshot device is open, unless --force, which swaps in an error\n" +
			"table first (its users get I/O errors instead of hanging) and removes the device at its\n" +
			"last close. Removing an origin's last snapshot turns the origin back into a plain\n" +
			"linear device and drops <origin>-real. Invalid and overflowed snapshots are removed\n" +
			"like any other.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "remove even while open"}},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 1 {
				return usageErrorf("remove needs one [POOL/]SNAP, got %d arguments", len(args))
			}
			return runSnapRemove(c.Context, gopts, args[0], c.Bool("force"))
		}),
	}
}

func runSnapRemove(ctx context.Context, gopts *globalOptions, arg string, force bool) error {
	pool, name, err := splitVolumePath(gopts, arg)
	if err != nil {
		return err
	}
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	defer s.Close()
	s.Logf = gopts.stepLog()
	if v := preRestoreOf(s.Opened.Store.Pool, name); v != "" {
		return fmt.Errorf("%s/%s is the pre-restore snapshot of %s/%s, whose restore was interrupted: finish the restore first (dmsnap restore), or merge it to roll the restore back", pool, name, pool, v)
	}
	res, err := s.RemoveSnapshot(ctx, name, force)
	if err != nil {
		return err
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, map[string]any{"removed": pool + "/" + name, "uuid": res.UUID, "freed_bytes": res.FreedBytes,
			"origin_suspended_seconds": res.Suspended.Seconds()})
	}
	fmt.Fprintf(gopts.stdout, "removed snapshot %s/%s, %s freed\n", pool, name, res.Freed)
	return nil
}

func newExtendCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "extend",
		Usage:     "grow a snapshot's COW: dmsnap extend snap --cow +50M",
		ArgsUsage: "[POOL/]SNAP",
		Description: "Adds extents to the COW (a new segment when the next ones are taken) and reloads the\n" +
			"-cow device and then the snapshot while active, so the kernel's total grows.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{&cli.StringFlag{Name: "cow", Aliases: []string{"L"}, Usage: "new COW size (200M) or growth (+50M)"}},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 1 {
				return usageErrorf("extend needs one [POOL/]SNAP, got %d arguments", len(args))
			}
			return runSnapExtend(c.Context, gopts, args[0], c.String("cow"))
		}),
	}
}

func runSnapExtend(ctx context.Context, gopts *globalOptions, arg, size string) error {
	pool, name, err := splitVolumePath(gopts, arg)
	if err != nil {
		return err
	}
	if size == "" {
		return usageErrorf("--cow is required (+50M, or a new size)")
	}
	sz, relative, err := lvm.ParseSizeChange(size)
	if err != nil {
		return usageErrorf("--cow: %w", err)
	}
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	defer s.Close()
	p := s.Opened.Store.Pool
	v := p.Volume(name)
	if v == nil || p.SnapshotByCOW(v.UUID) == nil {
		return fmt.Errorf("snapshot %s/%s: %w", pool, name, lvm.ErrNotFound)
	}
	n, _ := lvm.ExtentsFor(sz, p.ExtentSize)
	if !relative {
		if n <= v.Extents() {
			return usageErrorf("the COW of %s/%s is already %s; --cow %s would not grow it", pool, name, sizeOf(p, v.Extents()), size)
		}
		n -= v.Extents()
	}
	res, err := lvm.ExtendSnapshot(ctx, s.Opened.Store, s.env(gopts), name, n)
	if err != nil {
		return err
	}
	nv := s.Opened.Store.Pool.Volume(name)
	if gopts.JSON {
		return writeJSON(gopts.stdout, map[string]any{"snapshot": pool + "/" + name, "cow_bytes": s.Opened.Store.Pool.Sectors(nv.Extents()).Bytes(),
			"active": res.Active, "origin_suspended_seconds": res.Suspended.Seconds()})
	}
	fmt.Fprintf(gopts.stdout, "extended the COW of %s/%s to %s\n", pool, name, sizeOf(p, nv.Extents()))
	return nil
}

func newRenameCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "rename",
		Usage:     "rename a snapshot (and its active devices)",
		ArgsUsage: "[POOL/]SNAP NEW",
		Description: "Renames the snapshot (its COW volume) to NEW in the same pool and, while active, its\n" +
			"devices <pool>-<snap> and <pool>-<snap>-cow. Refused, with nothing changed, if the pool\n" +
			"has a volume NEW or another device holds one of the new names.\n\n" + exitStatusHelp,
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 2 {
				return usageErrorf("rename needs [POOL/]SNAP NEW, got %d arguments", len(args))
			}
			return runSnapRename(c.Context, gopts, args[0], args[1])
		}),
	}
}

func runSnapRename(ctx context.Context, gopts *globalOptions, arg, newArg string) error {
	pool, name, err := splitVolumePath(gopts, arg)
	if err != nil {
		return err
	}
	_, newName, err := snapPath(gopts, newArg, pool)
	if err != nil {
		return err
	}
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := lvm.RenameSnapshot(ctx, s.Opened.Store, s.env(gopts), name, newName); err != nil {
		if errors.Is(err, lvm.ErrBadName) {
			return usageError{err}
		}
		return err
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, map[string]any{"renamed": pool + "/" + name, "to": pool + "/" + newName})
	}
	fmt.Fprintf(gopts.stdout, "renamed snapshot %s/%s to %s/%s\n", pool, name, pool, newName)
	return nil
}
