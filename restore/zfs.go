package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/dmsnap/dmsnap/zfs/sendstream"
)

// CloneProperty marks the temporary clone a restore reads SNAP through:
// its value is the snapshot's full name. A leftover clone (a killed
// restore) is destroyed by the next restore only if it carries it.
const CloneProperty = "dmsnap:restore-clone"

// CloneName returns the temporary clone of the zvol dataset a restore
// reads its snapshots through: "<dataset>-dmsnap-restore".
func CloneName(dataset string) string { return dataset + "-dmsnap-restore" }

// ZFSSource is [Source] over zfs(8). It reads a snapshot through a
// temporary read-only clone (docs/decisions.md D-restore-read).
type ZFSSource struct {
	R *zfs.Runner
	// Open opens a block device for reading past the page cache.
	Open func(path string) (ingest.Device, error)
	// DeviceWait bounds the wait for the clone's device node (0: 30s).
	DeviceWait time.Duration
}

// Snapshot implements [Source].
func (z *ZFSSource) Snapshot(ctx context.Context, name string) (SnapInfo, error) {
	if _, err := ParseSnapshot(name); err != nil {
		return SnapInfo{}, err
	}
	m, err := z.R.Get(ctx, name, "type", "guid", "createtxg", "volsize")
	if err != nil {
		return SnapInfo{}, err
	}
	if m["type"] != "snapshot" {
		return SnapInfo{}, fmt.Errorf("%s is a %s, not a snapshot: %w", name, m["type"], ErrBadInput)
	}
	if m["volsize"] == "-" || m["volsize"] == "" {
		return SnapInfo{}, fmt.Errorf("%s is a snapshot of a filesystem, not of a zvol: %w", name, zfs.ErrNotAZvol)
	}
	s := SnapInfo{Name: name}
	for _, f := range []struct {
		prop string
		dst  *uint64
	}{{"guid", &s.GUID}, {"createtxg", &s.CreateTXG}} {
		if *f.dst, err = strconv.ParseUint(m[f.prop], 10, 64); err != nil {
			return SnapInfo{}, fmt.Errorf("zfs get %s %s = %q: %w", f.prop, name, m[f.prop], zfs.ErrSyntax)
		}
	}
	if s.SizeBytes, err = strconv.ParseInt(m["volsize"], 10, 64); err != nil {
		return SnapInfo{}, fmt.Errorf("zfs get volsize %s = %q: %w", name, m["volsize"], zfs.ErrSyntax)
	}
	// A snapshot has no volblocksize of its own; the zvol's cannot
	// change after its creation.
	v, err := z.R.Volume(ctx, s.Dataset())
	if err != nil {
		return SnapInfo{}, err
	}
	s.BlockBytes = int64(v.VolBlockSizeBytes)
	return s, nil
}

// Points implements [Source].
func (z *ZFSSource) Points(ctx context.Context, dataset string) ([]zfs.Point, error) {
	return z.R.Points(ctx, dataset)
}

// Increment implements [Source]: `zfs send -i from to` piped into the
// record parser, the payload discarded.
func (z *ZFSSource) Increment(ctx context.Context, from, to string) (*sendstream.Substream, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := z.R.Send(ctx, zfs.Send{From: from, To: to, Incremental: true}, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	s, perr := sendstream.ZvolChanges(pr)
	if perr == nil {
		// The stream ended at its END record; drain what follows.
		_, perr = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(errors.New("parser stopped"))
	if perr != nil {
		cancel()
	}
	serr := <-done
	if perr != nil {
		return nil, errors.Join(perr, serr)
	}
	if serr != nil {
		return nil, serr
	}
	return s, nil
}

// OpenSnapshot implements [Source]: it clones name read-only (replacing
// a leftover clone of an earlier restore), waits for the clone's device
// and opens it; Close closes it and destroys the clone.
func (z *ZFSSource) OpenSnapshot(ctx context.Context, name string) (ingest.Device, error) {
	ds, err := ParseSnapshot(name)
	if err != nil {
		return nil, err
	}
	clone := CloneName(ds)
	if err := z.dropClone(ctx, clone); err != nil {
		return nil, err
	}
	if err := z.R.Clone(ctx, name, clone, "readonly=on", "volmode=dev", CloneProperty+"="+name); err != nil {
		return nil, err
	}
	wait := z.DeviceWait
	if wait == 0 {
		wait = 30 * time.Second
	}
	path, err := z.R.ZvolDevice(ctx, clone, wait)
	var dev ingest.Device
	if err == nil {
		dev, err = z.Open(path)
	}
	if err != nil {
		return nil, errors.Join(err, z.destroyClone(clone))
	}
	return &cloneDevice{Device: dev, z: z, clone: clone}, nil
}

// dropClone destroys a leftover clone that a restore made; a dataset of
// that name without CloneProperty is refused.
func (z *ZFSSource) dropClone(ctx context.Context, clone string) error {
	props, err := z.R.UserProperties(ctx, clone, CloneProperty)
	if errors.Is(err, zfs.ErrDatasetNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if props[CloneProperty] == "" {
		return fmt.Errorf("%s exists and is not a restore's clone (no %s): rename or destroy it: %w", clone, CloneProperty, ErrRefused)
	}
	return z.destroyClone(clone)
}

// destroyClone destroys the clone, retrying while udev still holds its
// device; it runs after cancellation.
func (z *ZFSSource) destroyClone(clone string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	for range 50 {
		if err = z.R.DestroyClone(ctx, clone); !errors.Is(err, zfs.ErrBusy) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

type cloneDevice struct {
	ingest.Device
	z     *ZFSSource
	clone string
}

func (d *cloneDevice) Close() error {
	return errors.Join(d.Device.Close(), d.z.destroyClone(d.clone))
}
