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

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/internal/sys"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/urfave/cli/v2"
)

// scanPatterns are the block devices searched for PV labels, under the
// device directory (/dev). Device-mapper devices (dm-*) are never PVs of
// ours: a pool on top of another pool's volume is refused by design.
var scanPatterns = []string{"loop*", "vd*", "sd*", "xvd*", "nvme*"}

// pvSource is where one PV was found.
type pvSource struct {
	// Path is what metadata I/O opens: an image file or a block device.
	Path string
	// Image is set for a regular file, attached through a loop device
	// for activation.
	Image bool
}

// foundPool is a pool assembled from the labels found by discover.
type foundPool struct {
	Name    string
	UUID    lvm.UUID
	Seqno   uint64
	Sources map[lvm.UUID]pvSource // by PV UUID
}

// discovery is the result of scanning devices and image files for PVs.
type discovery struct {
	Pools    []*foundPool // sorted by name
	Warnings []string
	// MissingImages lists, by pool name, remembered image files that
	// are gone.
	MissingImages map[string][]string
	// Unreadable maps the path of a disk whose label or metadata cannot
	// be read or parsed (damaged or hostile label, unknown version, both
	// slots corrupt) to why: such a disk belongs to no pool this dmsnap
	// can name, and commands must say why. Each is in Warnings once too.
	Unreadable map[string]string
}

// byName returns the pool called name. Two pools of the same name (a
// copied image) are an error, since a name must pick one pool.
func (d *discovery) byName(name string) (*foundPool, error) {
	var hits []*foundPool
	for _, p := range d.Pools {
		if p.Name == name {
			hits = append(hits, p)
		}
	}
	switch len(hits) {
	case 0:
		return nil, nil
	case 1:
		return hits[0], nil
	}
	var ids []string
	for _, p := range hits {
		ids = append(ids, string(p.UUID))
	}
	return nil, fmt.Errorf("pool name %s is ambiguous: pools %s carry it", name, strings.Join(ids, ", "))
}

func (g *globalOptions) devDir() string {
	if g.DevDir != "" {
		return g.DevDir
	}
	return "/dev"
}

// canonical returns the absolute, symlink-free form of path.
func canonical(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// classify checks that path is a regular file or a block device and
// returns its canonical source.
func classify(path string) (pvSource, error) {
	c, err := canonical(path)
	if err != nil {
		return pvSource{}, err
	}
	fi, err := os.Stat(c)
	if err != nil {
		return pvSource{}, err
	}
	switch {
	case fi.Mode().IsRegular():
		return pvSource{Path: c, Image: true}, nil
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0:
		return pvSource{Path: c}, nil
	}
	return pvSource{}, fmt.Errorf("%s: not a block device or regular file", path)
}

// loopBacking returns the backing file of a loop device, "" if it has
// none (not attached) or the file is gone.
func loopBacking(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	f := strings.TrimSuffix(string(b), "\n")
	if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return f
}

// discover finds every PV under the device directory, in the image files
// the state file remembers, and in extra (files or devices the user
// named; an unreadable one is an error). A loop device is read through
// its backing file, so a file-backed PV is found once.
func discover(g *globalOptions, extra []string) (*discovery, error) {
	d := &discovery{MissingImages: map[string][]string{}, Unreadable: map[string]string{}}
	var cands []pvSource
	seen := map[string]bool{}
	add := func(s pvSource) {
		if !seen[s.Path] {
			seen[s.Path] = true
			cands = append(cands, s)
		}
	}
	explicit := map[string]bool{}
	for _, p := range extra {
		s, err := classify(p)
		if err != nil {
			return nil, err
		}
		if !s.Image {
			if f := loopBacking(s.Path); f != "" {
				s = pvSource{Path: f, Image: true}
			}
		}
		explicit[s.Path] = true
		add(s)
	}
	st, err := loadState(g)
	if err != nil {
		return nil, err
	}
	for name, p := range st.Pools {
		for _, img := range p.Images {
			s, err := classify(img)
			if err != nil {
				d.MissingImages[name] = append(d.MissingImages[name], img)
				continue
			}
			add(s)
		}
	}
	for _, pat := range scanPatterns {
		matches, _ := filepath.Glob(filepath.Join(g.devDir(), pat))
		sort.Strings(matches)
		for _, m := range matches {
			s, err := classify(m)
			if err != nil || s.Image {
				continue
			}
			if strings.HasPrefix(filepath.Base(s.Path), "loop") {
				f := loopBacking(s.Path)
				if f == "" {
					continue // unattached, or its file is gone
				}
				s = pvSource{Path: f, Image: true}
			}
			add(s)
		}
	}

	var disks []lvm.Disk
	bySource := map[lvm.Disk]pvSource{}
	for _, s := range cands {
		fd, err := lvm.OpenDisk(s.Path, false)
		if err != nil {
			if explicit[s.Path] {
				return nil, err
			}
			continue // no permission, no medium: not ours to report
		}
		defer fd.Close()
		disks = append(disks, fd)
		bySource[fd] = s
	}
	results, warns := lvm.Scan(disks)
	readable := map[string]bool{} // path -> its PV has pool metadata
	for _, r := range results {
		readable[bySource[r.Disk].Path] = r.PoolName != ""
	}
	// A disk whose label or metadata cannot be read or parsed is skipped
	// with one warning naming it, whatever else it is; discovery goes on
	// with the others. Scan's warnings about it are folded into that one.
	why := map[string][]string{}
	for _, w := range warns {
		switch {
		case w.Disk == "":
			d.Warnings = append(d.Warnings, w.String())
		case readable[w.Disk]:
			// A damaged slot of a PV that still has valid metadata.
			if strings.HasPrefix(w.Msg, w.Disk) {
				d.Warnings = append(d.Warnings, w.Msg) // already names the disk
			} else {
				d.Warnings = append(d.Warnings, w.String())
			}
		default:
			why[w.Disk] = append(why[w.Disk], strings.TrimPrefix(w.Msg, w.Disk+": "))
		}
	}
	pools := map[lvm.UUID]*foundPool{}
	for _, r := range results {
		s := bySource[r.Disk]
		p := pools[r.Label.Pool]
		if p == nil {
			p = &foundPool{UUID: r.Label.Pool, Sources: map[lvm.UUID]pvSource{}}
			pools[r.Label.Pool] = p
		}
		if prev, dup := p.Sources[r.Label.PV]; dup {
			d.Warnings = append(d.Warnings, fmt.Sprintf("PV %s found twice, on %s and %s; using %s", r.Label.PV.Short(), prev.Path, s.Path, prev.Path))
			continue
		}
		p.Sources[r.Label.PV] = s
		if r.PoolName != "" && (p.Name == "" || r.Seqno > p.Seqno) {
			p.Name, p.Seqno = r.PoolName, r.Seqno
		}
	}
	for _, p := range pools {
		if p.Name == "" {
			continue // each of its PVs is in why
		}
		d.Pools = append(d.Pools, p)
	}
	poolOf := map[string]string{} // path -> name of the pool using it
	for _, p := range pools {
		for _, s := range p.Sources {
			poolOf[s.Path] = p.Name
		}
	}
	bad := make([]string, 0, len(why))
	for path := range why {
		bad = append(bad, path)
	}
	sort.Strings(bad)
	for _, path := range bad {
		msg := path + ": " + strings.Join(why[path], "; ")
		if name := poolOf[path]; name != "" {
			// Its label is good: pool name and layout come from the
			// pool's other PVs, and loading the pool says more.
			d.Warnings = append(d.Warnings, msg+" (pool "+name+" is read from its other PVs)")
			continue
		}
		d.Unreadable[path] = msg
		d.Warnings = append(d.Warnings, "skipped "+msg)
	}
	sort.Slice(d.Pools, func(i, j int) bool {
		if d.Pools[i].Name != d.Pools[j].Name {
			return d.Pools[i].Name < d.Pools[j].Name
		}
		return d.Pools[i].UUID < d.Pools[j].UUID
	})
	return d, nil
}

// lockPool takes the pool's lock; a conflicting holder is an error, not a
// wait, so that a stuck process is reported instead of hanging the next.
func lockPool(g *globalOptions, name string, mode lock.Mode) (*lock.Lock, error) {
	l, err := lock.TryAcquire(lock.Path(g.lockDir(), name), mode)
	if errors.Is(err, lock.ErrLocked) {
		return nil, fmt.Errorf("pool %s is in use by another dmsnap process (%s lock wanted): %w", name, mode, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lock pool %s: %w", name, err)
	}
	return l, nil
}

// openedPool is a pool loaded from its disks.
type openedPool struct {
	Store    *lvm.Store
	Sources  map[lvm.UUID]pvSource
	Warnings []string
	disks    []*lvm.FileDisk
}

func (o *openedPool) Close() error {
	var errs []error
	for _, d := range o.disks {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// errNoPool reports a pool that no scanned device or remembered image
// carries.
func errNoPool(d *discovery, name string) error {
	msg := fmt.Sprintf("no pool named %s", name)
	if miss := d.MissingImages[name]; len(miss) > 0 {
		msg += fmt.Sprintf(" (its image files are missing: %s)", strings.Join(miss, ", "))
	} else if len(d.Unreadable) == 0 {
		msg += " (for a pool on image files, name them: dmsnap pool import FILE...)"
	}
	if len(d.Unreadable) > 0 {
		msg += "; PVs whose metadata this dmsnap cannot read: " + strings.Join(sortedValues(d.Unreadable), "; ")
	}
	return fmt.Errorf("%s: %w", msg, lvm.ErrNotFound)
}

// openPool discovers and loads the pool called name, read-write when
// writable. The caller holds the pool's lock and must Close the result.
func openPool(g *globalOptions, name string, writable bool, extra []string) (*openedPool, error) {
	o, err := openPoolRemoving(g, name, writable, extra)
	if err != nil {
		return nil, err
	}
	if writable && o.Store.Pool.RemovalPending() {
		o.Close()
		return nil, fmt.Errorf("pool %s is being removed (a pool remove was interrupted); dmsnap activate or dmsnap pool remove %s finishes it: %w", name, name, lvm.ErrInUse)
	}
	return o, nil
}

// openPoolRemoving is openPool that also opens a pool whose removal is
// pending (pool remove finishes it).
func openPoolRemoving(g *globalOptions, name string, writable bool, extra []string) (*openedPool, error) {
	d, err := discover(g, extra)
	if err != nil {
		return nil, err
	}
	fp, err := d.byName(name)
	if err != nil {
		return nil, err
	}
	if fp == nil {
		return nil, errNoPool(d, name)
	}
	return loadFound(fp, writable)
}

// adoptHints adds to fp the missing PVs of s found at their DeviceHint,
// checked by label; it reports whether it added any.
func adoptHints(fp *foundPool, s *lvm.Store) bool {
	added := false
	for _, id := range s.Missing {
		pv := s.Pool.PV(id)
		if pv == nil || pv.DeviceHint == "" {
			continue
		}
		src, err := classify(pv.DeviceHint)
		if err != nil {
			continue
		}
		fd, err := lvm.OpenDisk(src.Path, false)
		if err != nil {
			continue
		}
		l, err := lvm.ReadLabel(fd)
		fd.Close()
		if err != nil || l.PV != id || l.Pool != fp.UUID {
			continue
		}
		fp.Sources[id] = src
		added = true
	}
	return added
}

// loadFound opens the disks of fp and loads the pool from them.
//
// A PV the metadata knows but discovery did not find may be an image file
// the state file never learnt of: a crash in `pool extend` after the new
// metadata reached the old PVs, before the state file was updated. Its
// last-seen path is in the metadata; if the label there names exactly
// that PV of this pool, the pool is loaded again with it.
func loadFound(fp *foundPool, writable bool) (*openedPool, error) {
	o, err := loadSources(fp, writable)
	if err != nil || len(o.Store.Missing) == 0 || !adoptHints(fp, o.Store) {
		return o, err
	}
	if err := o.Close(); err != nil {
		return nil, err
	}
	return loadSources(fp, writable)
}

// loadSources opens the disks of fp and loads the pool from them.
func loadSources(fp *foundPool, writable bool) (*openedPool, error) {
	o := &openedPool{Sources: fp.Sources}
	var disks []lvm.Disk
	ids := make([]lvm.UUID, 0, len(fp.Sources))
	for id := range fp.Sources {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		fd, err := lvm.OpenDisk(fp.Sources[id].Path, writable)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("open pool %s: %w", fp.Name, err), o.Close())
		}
		o.disks = append(o.disks, fd)
		disks = append(disks, fd)
	}
	s, err := lvm.Load(disks)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("load pool %s: %w", fp.Name, err), o.Close())
	}
	o.Store = s
	for _, w := range s.Warnings {
		o.Warnings = append(o.Warnings, w.String())
	}
	return o, nil
}

// images returns the image files among the pool's PVs.
func (o *openedPool) images() []string {
	var out []string
	for _, s := range o.Sources {
		if s.Image {
			out = append(out, s.Path)
		}
	}
	sort.Strings(out)
	return out
}

// warn prints warnings on stderr unless --quiet.
func (g *globalOptions) warn(msgs ...string) {
	if g.Quiet {
		return
	}
	for _, m := range msgs {
		fmt.Fprintf(g.stderr, "dmsnap: warning: %s\n", m)
	}
}

// attachedPVs maps each present PV to a device number: a block device's
// own, an image file's loop device (attached with autoclear when none
// is, so the kernel detaches it once no dm table holds it any more).
type attachedPVs struct {
	Devs  map[lvm.UUID]dm.DevNum
	Paths map[lvm.UUID]string // device node of each PV
	loops []*loop.Device
	held  []*os.File // loop devices found attached, held open
}

// Release closes the loop devices this process attached or held. With
// autoclear, those that a dm table now holds stay attached until that
// table goes.
func (a *attachedPVs) Release() error {
	var errs []error
	for _, l := range a.loops {
		errs = append(errs, l.Close())
	}
	for _, f := range a.held {
		errs = append(errs, f.Close())
	}
	a.loops, a.held = nil, nil
	return errors.Join(errs...)
}

func devNumOf(path string) (dm.DevNum, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return dm.DevNum{}, err
	}
	maj, minor, ok := sys.BlockDevNum(fi)
	if !ok {
		return dm.DevNum{}, fmt.Errorf("%s: not a block device", path)
	}
	return dm.DevNum{Major: maj, Minor: minor}, nil
}

// attachPVs resolves the device numbers of the pool's present PVs. With
// dryRun it attaches nothing: an image without a loop device gets 0:0,
// which only a plan that creates everything can refer to.
func attachPVs(o *openedPool, dryRun bool) (*attachedPVs, error) {
	a := &attachedPVs{Devs: map[lvm.UUID]dm.DevNum{}, Paths: map[lvm.UUID]string{}}
	for id := range o.Store.Disks {
		s := o.Sources[id]
		path := s.Path
		if s.Image {
			found, err := loop.Find(s.Path)
			if err != nil {
				return nil, errors.Join(err, a.Release())
			}
			if len(found) > 0 && !dryRun {
				// Held for the session: an autoclear device held only by
				// tables this session may remove would otherwise detach
				// under it. One that detached since Find is attached anew.
				f, err := loop.Hold(found[0], s.Path)
				switch {
				case errors.Is(err, loop.ErrNotBound):
					found = nil
				case err != nil:
					return nil, errors.Join(err, a.Release())
				default:
					a.held = append(a.held, f)
				}
			}
			switch {
			case len(found) > 0:
				path = found[0]
			case dryRun:
				a.Devs[id] = dm.DevNum{}
				a.Paths[id] = "(" + s.Path + ", not attached)"
				continue
			default:
				l, err := loop.Attach(s.Path, loop.Options{AutoClear: true})
				if err != nil {
					return nil, errors.Join(fmt.Errorf("attach %s: %w", s.Path, err), a.Release())
				}
				a.loops = append(a.loops, l)
				maj, minor := l.Dev()
				a.Devs[id] = dm.DevNum{Major: maj, Minor: minor}
				a.Paths[id] = l.Path()
				continue
			}
		}
		dn, err := devNumOf(path)
		if err != nil {
			return nil, errors.Join(err, a.Release())
		}
		a.Devs[id] = dn
		a.Paths[id] = path
	}
	return a, nil
}

// volumeDevices returns the kernel devices of pool whose DM UUID names
// volume (any layer), top device first.
func volumeDevices(k lvm.Kernel, pool, volume lvm.UUID) ([]lvm.KernelDevice, error) {
	cur, err := lvm.CurrentDevices(k, pool, nil)
	if err != nil {
		return nil, err
	}
	var out []lvm.KernelDevice
	for _, d := range cur {
		_, v, _, err := lvm.ParseDMUUID(d.UUID)
		if err == nil && v == volume {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		_, _, li, _ := lvm.ParseDMUUID(out[i].UUID)
		_, _, lj, _ := lvm.ParseDMUUID(out[j].UUID)
		return li == lvm.LayerNone && lj != lvm.LayerNone
	})
	return out, nil
}

// removeDevices removes devices in order and their /dev/mapper nodes.
func removeDevices(k lvm.Kernel, devs []lvm.KernelDevice) error {
	for _, d := range devs {
		if err := k.Remove(d.Name, dm.RemoveOptions{}); err != nil && !errors.Is(err, dm.ErrNotFound) {
			if errors.Is(err, dm.ErrBusy) {
				return fmt.Errorf("remove %s: %w (is it mounted or open?)", d.Name, err)
			}
			return fmt.Errorf("remove %s: %w", d.Name, err)
		}
		_ = dm.RemoveNode(d.Name)
	}
	return nil
}

// activateVolumes brings the devices of the named volumes (nil: all) of
// p in line with the metadata, leaving other volumes' devices alone, and
// makes the /dev/mapper node of each top device. It returns the actions
// taken and the node of each volume activated.
func activateVolumes(ctx context.Context, k *dm.Client, p *lvm.Pool, devs map[lvm.UUID]dm.DevNum, volumes map[string]bool, opts lvm.ActivateOptions) ([]lvm.Action, []lvm.Warning, map[string]string, error) {
	desired, warns, err := lvm.Plan(p, devs, opts.Plan)
	if err != nil {
		return nil, nil, nil, err
	}
	if volumes != nil {
		byName := map[string]lvm.DesiredDevice{}
		for _, d := range desired {
			byName[d.Name] = d
		}
		keep := map[string]bool{}
		var mark func(name string)
		mark = func(name string) {
			if keep[name] {
				return
			}
			keep[name] = true
			for _, dep := range byName[name].Deps {
				mark(dep)
			}
		}
		for _, d := range desired {
			if volumes[d.Volume] {
				mark(d.Name)
			}
		}
		var sel []lvm.DesiredDevice
		for _, d := range desired {
			if keep[d.Name] {
				sel = append(sel, d)
			}
		}
		desired = sel
	}
	names := make([]string, len(desired))
	for i, d := range desired {
		names[i] = d.Name
	}
	current, err := lvm.CurrentDevices(k, p.UUID, names)
	if err != nil {
		return nil, warns, nil, err
	}
	var actions []lvm.Action
	for _, a := range lvm.Reconcile(p.UUID, desired, current) {
		if a.Kind == lvm.ActionRemove && volumes != nil {
			continue // another volume's device, not a leftover
		}
		switch a.Kind {
		case lvm.ActionLost:
			warns = append(warns, lvm.Warning{Msg: fmt.Sprintf("snapshot %s/%s is lost: %s", p.Name, a.Device.Volume, a.Reason)})
		case lvm.ActionRemove:
			if !opts.Apply.RemoveLeftovers {
				warns = append(warns, lvm.Warning{Msg: fmt.Sprintf("device %s (uuid %s) belongs to pool %s but not to its metadata", a.Current.Name, a.Current.UUID, p.Name)})
			}
		}
		actions = append(actions, a)
	}
	if opts.DryRun {
		return actions, warns, nil, nil
	}
	if err := lvm.Apply(k, actions, opts.Apply); err != nil {
		return actions, warns, nil, fmt.Errorf("activate pool %s: %w", p.Name, err)
	}
	nodes := map[string]string{}
	for _, a := range actions {
		switch a.Kind {
		case lvm.ActionRemove:
			if opts.Apply.RemoveLeftovers {
				_ = dm.RemoveNode(a.Current.Name)
			}
			continue
		case lvm.ActionRename:
			_ = dm.RemoveNode(a.Current.Name)
		case lvm.ActionLost, lvm.ActionConflict:
			continue
		}
		_, _, layer, err := lvm.ParseDMUUID(a.Device.UUID)
		if err != nil || layer != lvm.LayerNone {
			continue
		}
		info, err := k.Info(a.Device.Name)
		if err != nil {
			return actions, warns, nodes, fmt.Errorf("activate pool %s: %w", p.Name, err)
		}
		node, err := dm.EnsureNode(ctx, info)
		if err != nil {
			return actions, warns, nodes, fmt.Errorf("activate pool %s: %w", p.Name, err)
		}
		nodes[a.Device.Volume] = node
	}
	return actions, warns, nodes, nil
}

// splitVolumePath splits POOL/NAME, or NAME in the default pool, into
// validated parts; mistakes are usage errors.
func splitVolumePath(g *globalOptions, arg string) (pool, volume string, err error) {
	pool, volume, err = lvm.SplitPath(arg)
	if err != nil {
		return "", "", usageError{err}
	}
	if pool == "" {
		if err := refusePoolName(g, volume); err != nil {
			return "", "", err
		}
		if pool, err = defaultPool(g); err != nil {
			return "", "", err
		}
	}
	return pool, volume, nil
}

// refusePoolName refuses a bare NAME that is a pool's name. lvcreate's
// habit, `lv create vg0 --size 1G`, names the pool where dmsnap wants a
// volume, and would otherwise make or remove vg0/vg0 in the default pool.
func refusePoolName(g *globalOptions, name string) error {
	st, err := loadState(g)
	if err != nil {
		return err
	}
	_, known := st.Pools[name]
	if !known {
		d, err := discover(g, nil)
		if err != nil {
			return err
		}
		known = poolNamed(d, name)
	}
	if known {
		return usageErrorf("%s is a pool, not a volume: write POOL/NAME (%s/NAME)", name, name)
	}
	return nil
}

// poolNamed reports whether some pool d found is called name (one or
// several: an ambiguous name is a pool's name too).
func poolNamed(d *discovery, name string) bool {
	for _, p := range d.Pools {
		if p.Name == name {
			return true
		}
	}
	return false
}

// sizeOf formats an extent count of p.
func sizeOf(p *lvm.Pool, n lvm.ExtentCount) string { return lvm.FormatSize(p.Sectors(n)) }

// withArgs adapts an action taking its arguments as a slice. Flags after
// the arguments were already moved in front of them by permuteArgs.
func withArgs(fn func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error { return fn(c, c.Args().Slice()) }
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func tail(args []string) []string {
	if len(args) < 2 {
		return nil
	}
	return args[1:]
}
