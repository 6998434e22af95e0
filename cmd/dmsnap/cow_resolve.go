package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
)

// cowTarget is what a cow/diff argument names: a store to read, and what
// the pool metadata says about it when the argument was a snapshot.
type cowTarget struct {
	Path         string
	Snapshot     string    // "pool/snap" when resolved from a snapshot name
	ChunkSectors uint32    // from the pool metadata; 0 for a path
	OriginSize   dm.Sector // origin volume size; 0 for a path
}

// isPathArg reports whether arg names a file or device rather than a
// snapshot: it starts with / or ., or exists in the working directory.
func isPathArg(arg string) bool {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return true
	}
	_, err := os.Stat(arg)
	return err == nil
}

// resolveCowArg turns a DEVICE|FILE|[POOL/]SNAP argument into the store to
// read. A snapshot resolves to its active -cow device; its chunk size and
// origin size come from the pool metadata, so that a store that disagrees
// with the metadata is reported instead of silently trusted.
func resolveCowArg(gopts *globalOptions, arg string) (cowTarget, error) {
	if isPathArg(arg) {
		return cowTarget{Path: arg}, nil
	}
	pool, name, err := splitVolumePath(gopts, arg)
	if err != nil {
		return cowTarget{}, err
	}
	l, err := lockPool(gopts, pool, lock.Shared)
	if err != nil {
		return cowTarget{}, err
	}
	defer l.Close()
	o, err := openPool(gopts, pool, false, nil)
	if err != nil {
		return cowTarget{}, err
	}
	defer o.Close()
	gopts.warn(o.Warnings...)
	p := o.Store.Pool
	v := p.Volume(name)
	if v == nil {
		return cowTarget{}, fmt.Errorf("%q is neither a file nor a snapshot of pool %s", arg, pool)
	}
	s := p.SnapshotByCOW(v.UUID)
	if s == nil {
		return cowTarget{}, fmt.Errorf("%s/%s is a volume, not a snapshot: it has no exception store", pool, name)
	}
	if !s.Store.IsPersistent() {
		return cowTarget{}, fmt.Errorf("%s/%s is a transient (N) snapshot: its store has no on-disk metadata to read", pool, name)
	}
	t := cowTarget{
		Path:         dm.DevicePath(lvm.DMName(pool, name, lvm.LayerCOW)),
		Snapshot:     pool + "/" + name,
		ChunkSectors: uint32(s.ChunkSize),
	}
	if origin := p.VolumeByUUID(s.Origin); origin != nil {
		t.OriginSize = p.Sectors(origin.Extents())
	}
	if _, err := os.Stat(t.Path); err != nil {
		return cowTarget{}, fmt.Errorf("snapshot %s is not active (no %s): run 'dmsnap activate %s'", t.Snapshot, t.Path, pool)
	}
	return t, nil
}

// resolveCowOptions resolves *path with resolveCowArg and fills in what
// the pool metadata knows (chunk size, origin size) where the user gave no
// flag; originSize may be nil for commands without --origin-size.
func resolveCowOptions(gopts *globalOptions, path *string, chunkSectors *uint, originSize *string) error {
	t, err := resolveCowArg(gopts, *path)
	if err != nil {
		return err
	}
	*path = t.Path
	if *chunkSectors == 0 {
		*chunkSectors = uint(t.ChunkSectors)
	}
	if originSize != nil && *originSize == "" && t.OriginSize != 0 {
		*originSize = fmt.Sprintf("%ds", t.OriginSize)
	}
	return nil
}
