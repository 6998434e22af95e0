package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/dmsnap/dmsnap/zfs/sendstream"
)

// More sentinels.
var (
	// ErrRefused: the target cannot be restored as asked (open, another
	// size, a snapshot, a differential restore the lineage does not
	// prove); nothing was changed.
	ErrRefused = errors.New("restore refused")
	// ErrVerify: after the copy, the volume differs from the snapshot.
	ErrVerify = errors.New("restored volume differs from the snapshot")
)

// SnapInfo describes a zvol snapshot, the restore's source.
type SnapInfo struct {
	Name       string // ZPOOL/DATASET@SNAP
	GUID       uint64
	CreateTXG  uint64
	SizeBytes  int64 // volsize
	BlockBytes int64 // volblocksize
}

// Dataset returns the zvol of the snapshot.
func (s SnapInfo) Dataset() string { d, _, _ := strings.Cut(s.Name, "@"); return d }

// Source is the ZFS side of a restore; [ZFSSource] implements it over
// zfs(8).
type Source interface {
	// Snapshot describes the zvol snapshot name. Errors:
	// [zfs.ErrDatasetNotFound], [zfs.ErrNotAZvol] (a snapshot of a
	// filesystem).
	Snapshot(ctx context.Context, name string) (SnapInfo, error)
	// Points lists the zvol's snapshots and bookmarks in createtxg order.
	Points(ctx context.Context, dataset string) ([]zfs.Point, error)
	// Increment parses `zfs send -i from to` of the zvol
	// ([sendstream.ZvolChanges]).
	Increment(ctx context.Context, from, to string) (*sendstream.Substream, error)
	// OpenSnapshot returns the snapshot's content as a read-only device;
	// its Close releases whatever exposed it.
	OpenSnapshot(ctx context.Context, name string) (ingest.Device, error)
}

// Env is what [Run] needs from the host: locks, the lineage (through the
// ingest package's lineage API) and the pool holding the target.
type Env interface {
	// LockDataset takes the exclusive lock of the ZFS dataset (shared
	// with ingest, replicate and prune) without waiting.
	LockDataset(dataset string) (io.Closer, error)
	// Lineage returns the recorded ingest lineage of dataset
	// ([ingest.Env.Lineage]); ok is false if none is recorded.
	Lineage(dataset string) (l ingest.Lineage, ok bool, err error)
	// OpenPool opens the target's pool: under its exclusive lock, or
	// with readOnly, without a lock and for reading only (--dry-run).
	OpenPool(ctx context.Context, readOnly bool) (Pool, error)
}

// Pool is the target's pool.
type Pool interface {
	// Volume returns the size of the volume name; exists is false when
	// the pool has no such volume. A snapshot is an error.
	Volume(name string) (sizeBytes int64, exists bool, err error)
	// InUse names the open devices of the volume name and its snapshots
	// (mounted, held by a process), "" when none is open.
	InUse(name string) (string, error)
	// Has says whether the pool has a volume or snapshot name.
	Has(name string) bool
	// CreateVolume creates and activates the volume name of at least
	// sizeBytes (rounded up to whole extents) and returns its size.
	CreateVolume(ctx context.Context, name string, sizeBytes int64) (int64, error)
	// CreateSnapshot takes the persistent snapshot name of origin with
	// chunks of chunkBytes and a COW of at least cowBytes.
	CreateSnapshot(ctx context.Context, name, origin string, cowBytes, chunkBytes int64) error
	// OpenCOW opens the COW device of the snapshot name for reading past
	// the page cache.
	OpenCOW(name string) (ingest.Device, error)
	// OpenVolume opens the active volume name for writing.
	OpenVolume(name string) (Volume, error)
	// ReadVolume opens the active volume name for reading past the page
	// cache.
	ReadVolume(name string) (ingest.Device, error)
	// Intent returns the restore intent recorded for the volume name, nil
	// when none is.
	Intent(name string) (*Intent, error)
	// SetIntent records in durably, in the pool's metadata, before the
	// first write to the volume name; ClearIntent drops it.
	SetIntent(ctx context.Context, name string, in Intent) error
	ClearIntent(ctx context.Context, name string) error
	// Close releases the pool and its lock.
	Close()
}

// Intent marks a volume as being restored: recorded before its first
// write, dropped after the copy is synced and verified. While it is
// recorded the volume may be a mix of its old content and Snapshot's:
// ingest refuses it; the next restore resumes (reusing PreRestore), and
// merging PreRestore rolls it back.
type Intent struct {
	Snapshot string // ZPOOL/DATASET@SNAP
	GUID     uint64
	// PreRestore is the pre-restore snapshot's name, "" when the restore
	// created the volume.
	PreRestore string
	Created    bool
}

// Volume is the target's block device, open for writing. Its methods are
// called from several goroutines at once, at disjoint ranges.
type Volume interface {
	ingest.Target
	Sync() error
	Close() error
}

// Verify says whether [Run] compares the restored volume with the
// snapshot.
type Verify int

// Verify modes.
const (
	VerifyDefault Verify = iota // on for differential restores, off for full ones
	VerifyOn
	VerifyOff
)

// Failpoints of [Run], passed to Request.Failpoint.
const (
	FailpointAfterPreRestore = "restore.after-pre-restore" // pre-restore snapshot taken, nothing copied
	FailpointMidCopy         = "restore.mid-copy"          // half the plan written, not synced
	FailpointAfterIntent     = "restore.after-intent"      // intent recorded, nothing written
	FailpointAfterCopy       = "restore.after-copy"        // copied and synced, not verified
	FailpointAfterVerify     = "restore.after-verify"      // verified, intent not dropped
)

// Request is one restore of Snapshot onto Pool/Volume.
type Request struct {
	Snapshot     string // ZPOOL/DATASET@SNAP
	Pool, Volume string
	// Full copies everything even when a differential restore is
	// possible.
	Full   bool
	Verify Verify
	// DryRun plans only: no lock, no change.
	DryRun bool
	// Source reads ZFS; required.
	Source Source
	// Observer, if set, is told of progress and decisions.
	Observer ingest.Observer
	// Failpoint, if set, is called at each Failpoint* step (crash tests).
	Failpoint func(name string)
	// Now is the clock of the pre-restore snapshot's name; nil means
	// time.Now.
	Now func() time.Time
}

// Result is a restore done (or, with DryRun, planned).
type Result struct {
	Snapshot string // ZPOOL/DATASET@SNAP
	GUID     uint64
	Target   string // POOL/VOLUME
	// Created says the volume did not exist and was created.
	Created bool
	DryRun  bool
	Plan    Plan
	// PreRestore names the pre-restore snapshot (POOL/NAME), "" when the
	// volume was created.
	PreRestore string
	// Stats counts the copy of Plan.Ranges and Plan.Sparse (and the
	// zeroed tail of a created volume larger than the snapshot).
	Stats ingest.Stats
	// Resumed names the snapshot of an interrupted restore of the volume
	// that this one finished or replaced, "" when there was none.
	Resumed string
	// Verified: the restored ranges (VerifiedBytes) and a sample of the
	// rest (SampledBytes) equal the snapshot's.
	Verified      bool
	VerifiedBytes int64
	SampledBytes  int64
	Seconds       float64
}

type nopObserver struct{}

func (nopObserver) Notice(string)             {}
func (nopObserver) Warn(string)               {}
func (nopObserver) CopyStart(string, int64)   {}
func (nopObserver) CopyProgress(int64, int64) {}
func (nopObserver) CopyEnd(bool)              {}

// ParseSnapshot checks the restore's source argument ZPOOL/DATASET@SNAP
// and returns the dataset. A bookmark (ZPOOL/DATASET#BM) holds no data
// and is refused.
func ParseSnapshot(name string) (dataset string, err error) {
	if strings.Contains(name, "#") {
		return "", fmt.Errorf("%s is a bookmark: it holds no data to restore from; name a snapshot (ZPOOL/DATASET@SNAP): %w", name, ErrBadInput)
	}
	ds, snap, ok := strings.Cut(name, "@")
	if !ok || snap == "" || !strings.Contains(ds, "/") || zfs.CheckDatasetName(ds) != nil || strings.ContainsAny(snap, "@/ ") {
		return "", fmt.Errorf("%q is not a zvol snapshot name ZPOOL/DATASET@SNAP: %w", name, ErrBadInput)
	}
	return ds, nil
}

// PreRestoreName returns the name of the snapshot a restore takes of
// volume before writing it: "<volume>-pre-restore-<UTC time>".
func PreRestoreName(volume string, t time.Time) string {
	return volume + "-pre-restore-" + t.UTC().Format("20060102T150405Z")
}

// COWBytes returns the size of a persistent COW with chunks of chunkBytes
// that holds copy-outs of dataBytes of origin writes: the header chunk,
// the data chunks and one metadata area per chunkBytes/16 of them, plus
// one spare area (the kernel starts a new area before it needs it).
func COWBytes(dataBytes, chunkBytes int64) int64 {
	chunks := (dataBytes + chunkBytes - 1) / chunkBytes
	perArea := chunkBytes / cow.ExceptionSize
	areas := (chunks+perArea-1)/perArea + 1
	return (1 + chunks + areas) * chunkBytes
}

// run is one [Run] in progress.
type run struct {
	env  Env
	req  Request
	obs  ingest.Observer
	src  Source
	pool Pool
	out  Result
}

func (x *run) failpoint(name string) {
	if x.req.Failpoint != nil {
		x.req.Failpoint(name)
	}
}

// Run restores req.Snapshot onto req.Pool/req.Volume:
//
//   - a volume that does not exist is created with the zvol's volsize,
//     written in full and left active;
//   - an existing volume must not be open (nor its snapshots) and must
//     have the zvol's size; it is restored differentially when it is the
//     zvol's ingest origin (the lineage proves which blocks can differ,
//     [Differential]) and in full otherwise or with req.Full. Before it
//     is written, a pre-restore snapshot ([PreRestoreName]) with a COW
//     for the planned bytes is taken: merging it undoes the restore.
//
// The copy writes through the volume's device (so the ingest cursor's
// COW records every restored block, and the next ingest stays
// incremental and correct); zero blocks are zeroed, holes of a sparse
// range are left alone. Verification compares the restored ranges and a
// sample of the rest. Errors wrap [ErrBadInput], [ErrRefused] (nothing
// changed), [ingest.ErrLineage] (a differential restore the lineage does
// not prove), [ErrVerify], and the errors of env and the source.
func Run(ctx context.Context, env Env, req Request) (Result, error) {
	start := time.Now()
	x := &run{env: env, req: req, obs: req.Observer, src: req.Source}
	if x.obs == nil {
		x.obs = nopObserver{}
	}
	if x.req.Now == nil {
		x.req.Now = time.Now
	}
	if x.src == nil {
		return Result{}, fmt.Errorf("restore: no ZFS source: %w", ErrBadInput)
	}
	defer func() {
		if x.pool != nil {
			x.pool.Close()
		}
	}()
	if err := x.run(ctx); err != nil {
		return Result{}, err
	}
	x.out.Seconds = math.Round(time.Since(start).Seconds()*1000) / 1000
	return x.out, nil
}

func (x *run) run(ctx context.Context) error {
	req := x.req
	dataset, err := ParseSnapshot(req.Snapshot)
	if err != nil {
		return err
	}
	if req.Pool == "" || req.Volume == "" {
		return fmt.Errorf("target %q/%q: want POOL/VOLUME: %w", req.Pool, req.Volume, ErrBadInput)
	}
	target := req.Pool + "/" + req.Volume
	x.out.Target, x.out.DryRun = target, req.DryRun
	if !req.DryRun {
		// The dataset's lock keeps prune from destroying SNAP and ingest
		// from committing while the restore reads.
		dl, err := x.env.LockDataset(dataset)
		if err != nil {
			return err
		}
		defer dl.Close()
	}
	snap, err := x.src.Snapshot(ctx, req.Snapshot)
	if err != nil {
		return fmt.Errorf("restore from %s: %w", req.Snapshot, err)
	}
	x.out.Snapshot, x.out.GUID = snap.Name, snap.GUID
	if x.pool, err = x.env.OpenPool(ctx, req.DryRun); err != nil {
		return err
	}
	size, exists, err := x.pool.Volume(req.Volume)
	if err != nil {
		return err
	}
	if exists {
		if size != snap.SizeBytes {
			return fmt.Errorf("%s is %d bytes, the zvol snapshot %s is %d bytes: sizes differ: %w", target, size, snap.Name, snap.SizeBytes, ErrRefused)
		}
		open, err := x.pool.InUse(req.Volume)
		if err != nil {
			return err
		}
		if open != "" {
			return fmt.Errorf("%s is in use (%s open): unmount it and stop its users first: %w", target, open, ErrRefused)
		}
	}
	var intent *Intent
	if exists {
		if intent, err = x.pool.Intent(req.Volume); err != nil {
			return err
		}
		if intent != nil && intent.PreRestore != "" && !x.pool.Has(intent.PreRestore) {
			// Its pre-restore snapshot was never taken (killed before:
			// nothing was written) or has been merged back: the volume
			// holds its old content, the record is stale.
			msg := fmt.Sprintf("dropped the record of an interrupted restore of %s from %s: its pre-restore snapshot %s is gone (never taken, or merged back)", target, intent.Snapshot, intent.PreRestore)
			if !req.DryRun {
				if err := x.pool.ClearIntent(ctx, req.Volume); err != nil {
					return err
				}
			}
			x.obs.Notice(msg)
			intent = nil
		}
	}
	var plan Plan
	if intent != nil && intent.Created {
		plan, err = Full(snap.SizeBytes, "an interrupted restore created "+target+": it is written in full again")
		plan.BlockBytes = snap.BlockBytes
	} else {
		plan, err = x.plan(ctx, snap, exists)
	}
	if err != nil {
		return err
	}
	x.out.Plan = plan
	if intent != nil {
		x.out.Resumed = intent.Snapshot
		x.obs.Notice(fmt.Sprintf("%s: an interrupted restore from %s left it partly written; this restore finishes it", target, intent.Snapshot))
	}
	if exists && req.Verify != VerifyOff && (req.Verify == VerifyOn || plan.Differential) {
		x.out.Verified = true // planned; cleared below unless it passes
	}
	preName := PreRestoreName(req.Volume, x.req.Now())
	if intent != nil {
		preName = intent.PreRestore
	}
	if req.DryRun {
		x.out.Created = !exists
		if exists && preName != "" {
			x.out.PreRestore = req.Pool + "/" + preName
		}
		return nil
	}
	volBytes := size
	switch {
	case !exists:
		if volBytes, err = x.pool.CreateVolume(ctx, req.Volume, snap.SizeBytes); err != nil {
			return fmt.Errorf("restore: create %s: %w", target, err)
		}
		x.out.Created = true
		x.obs.Notice(fmt.Sprintf("created %s (%d bytes) for %s", target, volBytes, snap.Name))
		if err := x.pool.SetIntent(ctx, req.Volume, Intent{Snapshot: snap.Name, GUID: snap.GUID, Created: true}); err != nil {
			return err
		}
		x.failpoint(FailpointAfterIntent)
	case intent != nil:
		x.out.Created = intent.Created
		if intent.PreRestore != "" {
			x.out.PreRestore = req.Pool + "/" + intent.PreRestore
		}
		if intent.Snapshot != snap.Name || intent.GUID != snap.GUID {
			in := *intent
			in.Snapshot, in.GUID = snap.Name, snap.GUID
			if err := x.pool.SetIntent(ctx, req.Volume, in); err != nil {
				return err
			}
		}
	default:
		// The intent first: a kill before the snapshot exists leaves a
		// record whose snapshot is missing, which the next run drops
		// (nothing was written yet).
		if err := x.pool.SetIntent(ctx, req.Volume, Intent{Snapshot: snap.Name, GUID: snap.GUID, PreRestore: preName}); err != nil {
			return err
		}
		x.failpoint(FailpointAfterIntent)
		chunk := max(plan.BlockBytes, 4096)
		cowBytes := COWBytes(plan.Bytes()+plan.SparseBytes(), chunk)
		if err := x.pool.CreateSnapshot(ctx, preName, req.Volume, cowBytes, chunk); err != nil {
			err = fmt.Errorf("restore: pre-restore snapshot of %s: %w", target, err)
			return errors.Join(err, x.pool.ClearIntent(context.WithoutCancel(ctx), req.Volume))
		}
		x.out.PreRestore = req.Pool + "/" + preName
		x.failpoint(FailpointAfterPreRestore)
	}
	if err := x.copy(ctx, snap, plan, volBytes); err != nil {
		return x.interrupted(err)
	}
	x.failpoint(FailpointAfterCopy)
	if x.out.Verified || (!exists && req.Verify == VerifyOn) {
		x.out.Verified = false
		if err := x.verify(ctx, snap, plan); err != nil {
			return x.interrupted(err)
		}
		x.out.Verified = true
	}
	x.failpoint(FailpointAfterVerify)
	return x.pool.ClearIntent(context.WithoutCancel(ctx), req.Volume)
}

// interrupted adds to the error of a restore that wrote part of the
// volume what to do next.
func (x *run) interrupted(err error) error {
	undo := ""
	if x.out.PreRestore != "" {
		undo = ", or roll it back with dmsnap merge " + x.out.PreRestore
	}
	return fmt.Errorf("%w; %s is partly restored: rerun the restore to finish it%s", err, x.out.Target, undo)
}

// plan decides full or differential and computes the plan.
func (x *run) plan(ctx context.Context, snap SnapInfo, exists bool) (Plan, error) {
	req := x.req
	target := req.Pool + "/" + req.Volume
	dataset := snap.Dataset()
	block := snap.BlockBytes
	full := func(reason string) (Plan, error) {
		p, err := Full(snap.SizeBytes, reason)
		p.BlockBytes = block
		return p, err
	}
	if !exists {
		return full(target + " does not exist: it is created and written in full")
	}
	lin, known, err := x.env.Lineage(dataset)
	if err != nil {
		return Plan{}, err
	}
	if !known || lin.Pool != req.Pool || lin.Origin != req.Volume {
		return full(target + " is not the ingest origin of " + dataset)
	}
	if req.Full {
		return full("--full")
	}
	pts, err := x.src.Points(ctx, dataset)
	if err != nil {
		return Plan{}, fmt.Errorf("restore: %w", err)
	}
	last, err := CheckLineage(lin, snap, pts, x.pool.Has)
	if err != nil {
		return Plan{}, err
	}
	in := Input{SizeBytes: snap.SizeBytes, BlockBytes: block, SnapGUID: snap.GUID, LastGUID: lin.GUID}
	dev, err := x.pool.OpenCOW(lin.Cursor)
	if err != nil {
		return Plan{}, fmt.Errorf("restore: cursor %s/%s: %w", req.Pool, lin.Cursor, err)
	}
	store, err := cow.Decoder{}.Open(dev, dev.Size())
	dev.Close()
	if errors.Is(err, cow.ErrInvalidated) {
		return Plan{}, refuseDifferential(fmt.Errorf("the ingest cursor %s/%s was invalidated (its COW filled up): the origin's writes since the last ingest are unknown: %w", req.Pool, lin.Cursor, ingest.ErrLineage))
	}
	if err != nil {
		return Plan{}, fmt.Errorf("restore: cursor %s/%s: %w", req.Pool, lin.Cursor, err)
	}
	in.CursorExtents, in.ChunkSectors = store.ChangedExtents(), store.ChunkSectors()
	if snap.GUID != lin.GUID {
		if in.Stream, err = x.src.Increment(ctx, snap.Name, last); err != nil {
			return Plan{}, fmt.Errorf("restore: zfs send -i %s %s: %w", snap.Name, last, err)
		}
	}
	return Differential(in)
}

func refuseDifferential(err error) error {
	return fmt.Errorf("differential restore refused: %w (restore --full copies the whole snapshot)", err)
}

// CheckLineage checks that the lineage proves where the ingest origin
// stands relative to snap: the last ingest snapshot (lin.GUID, with its
// createtxg) is among the zvol's points pts, snap is not newer than it,
// no ingest is pending, and the cursor exists in the pool (has). It
// returns the last ingest snapshot's name. Errors wrap
// [ingest.ErrLineage], with the reason.
func CheckLineage(lin ingest.Lineage, snap SnapInfo, pts []zfs.Point, has func(string) bool) (string, error) {
	switch {
	case lin.Pending != nil:
		return "", refuseDifferential(fmt.Errorf("an ingest into %s was interrupted (%s): run dmsnap ingest to settle it first: %w", lin.Dataset, lin.Pending.Snapshot, ingest.ErrLineage))
	case lin.GUID == 0 || lin.Cursor == "":
		return "", refuseDifferential(fmt.Errorf("no ingest into %s was committed: %w", lin.Dataset, ingest.ErrLineage))
	}
	var lastPt *zfs.Point
	for i := range pts {
		if pts[i].Kind == zfs.Snapshot && pts[i].GUID == lin.GUID {
			lastPt = &pts[i]
		}
	}
	switch {
	case lastPt == nil:
		return "", refuseDifferential(fmt.Errorf("the last ingest snapshot %s (guid %d) is gone: %w", lin.Snapshot, lin.GUID, ingest.ErrLineage))
	case lastPt.CreateTXG != lin.CreateTXG:
		return "", refuseDifferential(fmt.Errorf("snapshot guid %d has createtxg %d, the lineage recorded %d: %w", lin.GUID, lastPt.CreateTXG, lin.CreateTXG, ingest.ErrLineage))
	case snap.CreateTXG > lastPt.CreateTXG:
		return "", refuseDifferential(fmt.Errorf("%s is newer than the last ingest %s: the origin never held it: %w", snap.Name, lastPt.Name, ingest.ErrLineage))
	case !has(lin.Cursor):
		return "", refuseDifferential(fmt.Errorf("the ingest cursor %s/%s is gone: the origin's writes since the last ingest are unknown: %w", lin.Pool, lin.Cursor, ingest.ErrLineage))
	}
	return lastPt.Name, nil
}

// copy writes plan from the snapshot onto the volume (of volBytes,
// larger than the snapshot only when created and rounded up: the tail is
// zeroed) and syncs it.
func (x *run) copy(ctx context.Context, snap SnapInfo, plan Plan, volBytes int64) error {
	target := x.out.Target
	src, err := x.src.OpenSnapshot(ctx, snap.Name)
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", snap.Name, err)
	}
	defer func() {
		if cerr := src.Close(); cerr != nil {
			x.obs.Warn(fmt.Sprintf("restore: close %s: %v", snap.Name, cerr))
		}
	}()
	if src.Size() < snap.SizeBytes {
		return fmt.Errorf("restore: the device of %s is %d bytes, volsize %d", snap.Name, src.Size(), snap.SizeBytes)
	}
	dst, err := x.pool.OpenVolume(x.req.Volume)
	if err != nil {
		return fmt.Errorf("restore: open %s: %w", target, err)
	}
	total := plan.Bytes() + plan.SparseBytes()
	x.obs.CopyStart(target, total)
	var st ingest.Stats
	progress := func(base int64) func(done, _ int64) {
		return func(done, _ int64) {
			x.obs.CopyProgress(base+done, total)
			if 2*(base+done) >= total {
				x.failpoint(FailpointMidCopy)
			}
		}
	}
	opts := ingest.CopyOptions{BlockBytes: plan.BlockBytes, Progress: progress(0)}
	s, err := ingest.Copy(ctx, src, dst, ingest.Plan{SizeBytes: plan.SizeBytes, Ranges: plan.Ranges}, opts)
	st = addStats(st, s)
	if err == nil && len(plan.Sparse) > 0 {
		// Zero on the volume already: only SNAP's data is written.
		opts.KnownZero, opts.Progress = true, progress(plan.Bytes())
		s, err = ingest.Copy(ctx, src, dst, ingest.Plan{SizeBytes: plan.SizeBytes, Ranges: plan.Sparse}, opts)
		st = addStats(st, s)
	}
	if err == nil && volBytes > plan.SizeBytes {
		err = dst.Zero(plan.SizeBytes, volBytes-plan.SizeBytes)
		st.BytesZeroed += volBytes - plan.SizeBytes
	}
	if err == nil {
		err = dst.Sync()
	}
	err = errors.Join(err, dst.Close())
	x.obs.CopyEnd(err == nil)
	x.out.Stats = st
	if err != nil {
		return fmt.Errorf("restore %s onto %s: %w", snap.Name, target, err)
	}
	return nil
}

func addStats(a, b ingest.Stats) ingest.Stats {
	a.Ranges += b.Ranges
	a.BytesRead += b.BytesRead
	a.BytesWritten += b.BytesWritten
	a.BytesZeroed += b.BytesZeroed
	a.BytesSkipped += b.BytesSkipped
	return a
}
