package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/blockdev"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/internal/loop"
	"github.com/dmsnap/dmsnap/lvm"
)

// Host is where pools are found and locked: the device directory that is
// scanned for PV labels, the lock directory, and the image files the host
// remembers for each pool (hints: a pool is what its labels say).
type Host struct {
	// DevDir is scanned for block devices; "" means /dev.
	DevDir string
	// LockDir holds one lock file per pool name.
	LockDir string
	// ImageHints returns the remembered image files by pool name; nil
	// means none.
	ImageHints func() (map[string][]string, error)
}

func (h *Host) devDir() string {
	if h.DevDir != "" {
		return h.DevDir
	}
	return "/dev"
}

func (h *Host) imageHints() (map[string][]string, error) {
	if h.ImageHints == nil {
		return nil, nil
	}
	return h.ImageHints()
}

// sortedValues returns m's values ordered by key.
func sortedValues(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// ScanPatterns are the block devices searched for PV labels, under the
// device directory (/dev). Device-mapper devices (dm-*) are never PVs of
// ours: a pool on top of another pool's volume is refused by design.
var ScanPatterns = []string{"loop*", "vd*", "sd*", "xvd*", "nvme*"}

// Source is where one PV was found.
type Source struct {
	// Path is what metadata I/O opens: an image file or a block device.
	Path string
	// Image is set for a regular file, attached through a loop device
	// for activation.
	Image bool
}

// Found is a pool assembled from the labels found by Discover.
type Found struct {
	Name    string
	UUID    lvm.UUID
	Seqno   uint64
	Sources map[lvm.UUID]Source // by PV UUID
}

// Discovery is the result of scanning devices and image files for PVs.
type Discovery struct {
	Pools    []*Found // sorted by name
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

// ByName returns the pool called name. Two pools of the same name (a
// copied image) are an error, since a name must pick one pool.
func (d *Discovery) ByName(name string) (*Found, error) {
	var hits []*Found
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

// Canonical returns the absolute, symlink-free form of path.
func Canonical(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// Classify checks that path is a regular file or a block device and
// returns its Canonical source.
func Classify(path string) (Source, error) {
	c, err := Canonical(path)
	if err != nil {
		return Source{}, err
	}
	fi, err := os.Stat(c)
	if err != nil {
		return Source{}, err
	}
	switch {
	case fi.Mode().IsRegular():
		return Source{Path: c, Image: true}, nil
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0:
		return Source{Path: c}, nil
	}
	return Source{}, fmt.Errorf("%s: not a block device or regular file", path)
}

// Discover finds every PV under the device directory, in the image files
// the state file remembers, and in extra (files or devices the user
// named; an unreadable one is an error). A loop device is read through
// its backing file, so a file-backed PV is found once.
func (h *Host) Discover(extra []string) (*Discovery, error) {
	d := &Discovery{MissingImages: map[string][]string{}, Unreadable: map[string]string{}}
	var cands []Source
	seen := map[string]bool{}
	add := func(s Source) {
		if !seen[s.Path] {
			seen[s.Path] = true
			cands = append(cands, s)
		}
	}
	explicit := map[string]bool{}
	for _, p := range extra {
		s, err := Classify(p)
		if err != nil {
			return nil, err
		}
		if !s.Image {
			if f := loop.Backing(s.Path); f != "" {
				s = Source{Path: f, Image: true}
			}
		}
		explicit[s.Path] = true
		add(s)
	}
	hints, err := h.imageHints()
	if err != nil {
		return nil, err
	}
	for name, images := range hints {
		for _, img := range images {
			s, err := Classify(img)
			if err != nil {
				d.MissingImages[name] = append(d.MissingImages[name], img)
				continue
			}
			add(s)
		}
	}
	for _, pat := range ScanPatterns {
		matches, _ := filepath.Glob(filepath.Join(h.devDir(), pat))
		sort.Strings(matches)
		for _, m := range matches {
			s, err := Classify(m)
			if err != nil || s.Image {
				continue
			}
			if strings.HasPrefix(filepath.Base(s.Path), "loop") {
				f := loop.Backing(s.Path)
				if f == "" {
					continue // unattached, or its file is gone
				}
				s = Source{Path: f, Image: true}
			}
			add(s)
		}
	}

	var disks []lvm.Disk
	bySource := map[lvm.Disk]Source{}
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
	// with one warning naming it, whatever else it is; Discovery goes on
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
	pools := map[lvm.UUID]*Found{}
	for _, r := range results {
		s := bySource[r.Disk]
		p := pools[r.Label.Pool]
		if p == nil {
			p = &Found{UUID: r.Label.Pool, Sources: map[lvm.UUID]Source{}}
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

// Lock takes the pool's lock; a conflicting holder is an error, not a
// wait, so that a stuck process is reported instead of hanging the next.
func (h *Host) Lock(name string, mode lock.Mode) (*lock.Lock, error) {
	l, err := lock.TryAcquire(lock.Path(h.LockDir, name), mode)
	if errors.Is(err, lock.ErrLocked) {
		return nil, fmt.Errorf("pool %s is in use by another dmsnap process (%s lock wanted): %w", name, mode, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lock pool %s: %w", name, err)
	}
	return l, nil
}

// Opened is a pool loaded from its disks.
type Opened struct {
	Store    *lvm.Store
	Sources  map[lvm.UUID]Source
	Warnings []string
	disks    []*lvm.FileDisk
}

func (o *Opened) Close() error {
	var errs []error
	for _, d := range o.disks {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// ErrNoPool reports a pool that no scanned device or remembered image
// carries.
func ErrNoPool(d *Discovery, name string) error {
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

// Open discovers and loads the pool called name, read-write when
// writable. The caller holds the pool's lock and must Close the result.
func (h *Host) Open(name string, writable bool, extra []string) (*Opened, error) {
	o, err := h.OpenRemoving(name, writable, extra)
	if err != nil {
		return nil, err
	}
	if writable && o.Store.Pool.RemovalPending() {
		o.Close()
		return nil, fmt.Errorf("pool %s is being removed (a pool remove was interrupted); dmsnap activate or dmsnap pool remove %s finishes it: %w", name, name, lvm.ErrInUse)
	}
	return o, nil
}

// OpenRemoving is Open that also opens a pool whose removal is
// pending (pool remove finishes it).
func (h *Host) OpenRemoving(name string, writable bool, extra []string) (*Opened, error) {
	d, err := h.Discover(extra)
	if err != nil {
		return nil, err
	}
	fp, err := d.ByName(name)
	if err != nil {
		return nil, err
	}
	if fp == nil {
		return nil, ErrNoPool(d, name)
	}
	return LoadFound(fp, writable)
}

// AdoptHints adds to fp the missing PVs of s found at their DeviceHint,
// checked by label; it reports whether it added any.
func AdoptHints(fp *Found, s *lvm.Store) bool {
	added := false
	for _, id := range s.Missing {
		pv := s.Pool.PV(id)
		if pv == nil || pv.DeviceHint == "" {
			continue
		}
		src, err := Classify(pv.DeviceHint)
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

// LoadFound opens the disks of fp and loads the pool from them.
//
// A PV the metadata knows but Discovery did not find may be an image file
// the state file never learnt of: a crash in `pool extend` after the new
// metadata reached the old PVs, before the state file was updated. Its
// last-seen path is in the metadata; if the label there names exactly
// that PV of this pool, the pool is loaded again with it.
func LoadFound(fp *Found, writable bool) (*Opened, error) {
	o, err := loadSources(fp, writable)
	if err != nil || len(o.Store.Missing) == 0 || !AdoptHints(fp, o.Store) {
		return o, err
	}
	if err := o.Close(); err != nil {
		return nil, err
	}
	return loadSources(fp, writable)
}

// loadSources opens the disks of fp and loads the pool from them.
func loadSources(fp *Found, writable bool) (*Opened, error) {
	o := &Opened{Sources: fp.Sources}
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

// Images returns the image files among the pool's PVs.
func (o *Opened) Images() []string {
	var out []string
	for _, s := range o.Sources {
		if s.Image {
			out = append(out, s.Path)
		}
	}
	sort.Strings(out)
	return out
}

// AttachedPVs maps each present PV to a device number: a block device's
// own, an image file's loop device (attached with autoclear when none
// is, so the kernel detaches it once no dm table holds it any more).
type AttachedPVs struct {
	Devs  map[lvm.UUID]dm.DevNum
	Paths map[lvm.UUID]string // device node of each PV
	loops []*loop.Device
	held  []*os.File // loop devices found attached, held open
}

// Release closes the loop devices this process attached or held. With
// autoclear, those that a dm table now holds stay attached until that
// table goes.
func (a *AttachedPVs) Release() error {
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

func DevNumOf(path string) (dm.DevNum, error) {
	major, minor, err := blockdev.DevNum(path)
	return dm.DevNum{Major: major, Minor: minor}, err
}

// AttachPVs resolves the device numbers of the pool's present PVs. With
// dryRun it attaches nothing: an image without a loop device gets 0:0,
// which only a plan that creates everything can refer to.
func AttachPVs(o *Opened, dryRun bool) (*AttachedPVs, error) {
	a := &AttachedPVs{Devs: map[lvm.UUID]dm.DevNum{}, Paths: map[lvm.UUID]string{}}
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
		dn, err := DevNumOf(path)
		if err != nil {
			return nil, errors.Join(err, a.Release())
		}
		a.Devs[id] = dn
		a.Paths[id] = path
	}
	return a, nil
}

// VolumeDevices returns the kernel devices of pool whose DM UUID names
// volume (any layer), top device first.
func VolumeDevices(k lvm.Kernel, pool, volume lvm.UUID) ([]lvm.KernelDevice, error) {
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

// RemoveDevices removes devices in order and their /dev/mapper nodes.
func RemoveDevices(k lvm.Kernel, devs []lvm.KernelDevice) error {
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
