package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/zfs"
)

// Env is what [Run] needs from the pool that holds the origin and from
// the host. Its implementation owns the locks, the pool's store and the
// devices; Run owns the order of the steps.
type Env interface {
	// LockDataset takes the exclusive lock of the ZFS dataset (shared
	// with replication and pruning) without waiting.
	LockDataset(dataset string) (io.Closer, error)
	// LockPool takes the origin pool's exclusive lock and opens the pool.
	// wait 0 fails at once if the lock is taken; otherwise it waits up to
	// wait, even after ctx is cancelled.
	LockPool(ctx context.Context, wait time.Duration) (Pool, error)
	// OpenCOW opens the COW device of the pool snapshot name for reading
	// past the page cache.
	OpenCOW(name string) (Device, error)
	// OpenSnapshot opens the device of the pool snapshot name (its frozen
	// image) for reading past the page cache.
	OpenSnapshot(name string) (Device, error)
	// CheckFrozen fails unless the device of the pool snapshot name is
	// still the one [Pool.CreateFrozen] returned token for, and is valid
	// (its COW did not fill up).
	CheckFrozen(name, token string) error
	// OpenZvol opens the block device of the zvol dataset for writing.
	OpenZvol(ctx context.Context, dataset string) (Zvol, error)
	// Lineage returns the recorded lineage of dataset; ok is false if
	// none is recorded.
	Lineage(dataset string) (l Lineage, ok bool, err error)
	// SaveLineage records l (keyed by l.Dataset) durably.
	SaveLineage(ctx context.Context, l Lineage) error
	// LineageHome names where lineages are recorded, for messages.
	LineageHome() string
}

// Pool is the origin's pool, opened under its exclusive lock.
type Pool interface {
	// OriginBytes returns the size of the volume origin, which must exist,
	// be active and not be a snapshot.
	OriginBytes(origin string) (int64, error)
	// Has says whether the pool has a volume (or snapshot) name.
	Has(name string) bool
	// COWExtents returns the extents of a COW of cowSize (the CLI's size
	// syntax: 100M, 20%ORIGIN, 50%FREE) for a snapshot of origin with
	// chunks of chunkBytes, at least the smallest COW that holds one.
	COWExtents(origin, cowSize string, chunkBytes int64) (uint64, error)
	// CreateFrozen takes the read-only persistent snapshot name of origin
	// with chunks of chunkBytes and a COW of cowExtents, and returns a
	// token identifying its device.
	CreateFrozen(ctx context.Context, name, origin string, cowExtents uint64, chunkBytes int64) (token string, err error)
	// RemoveSnapshot removes the snapshot name and its devices.
	RemoveSnapshot(ctx context.Context, name string) error
	// Close releases the pool and its lock.
	Close()
}

// Device is an open block device being read.
type Device interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Zvol is the zvol's block device, open for writing.
type Zvol interface {
	Target
	Sync() error
	Close() error
}

// Observer is told what [Run] does; every method must be safe to call
// from the goroutine that runs the ingest. The CLI prints it.
type Observer interface {
	// Notice reports a decision the user should know of: a recovery, a
	// relinked lineage, why the copy is full.
	Notice(msg string)
	// Warn reports a problem that did not stop the ingest.
	Warn(msg string)
	// CopyStart, CopyProgress and CopyEnd bracket the copy of
	// totalBytes into dataset.
	CopyStart(dataset string, totalBytes int64)
	CopyProgress(doneBytes, totalBytes int64)
	CopyEnd(ok bool)
}

// Failpoints of [Run], passed to Request.Failpoint.
const (
	FailpointMidCopy     = "ingest.mid-copy"     // half the plan written, not synced
	FailpointAfterCopy   = "ingest.after-copy"   // zvol written and synced, no ZFS snapshot
	FailpointAfterCommit = "ingest.after-commit" // ZFS snapshot made, lineage not recorded
)

// Request is one ingest: the frozen snapshot of Pool/Origin into Dataset.
type Request struct {
	Pool, Origin string
	Dataset      string // ZPOOL/DATASET
	// COW is the COW size of the frozen snapshot, in the CLI's syntax
	// (100M, 20%ORIGIN, 50%FREE).
	COW string
	// VolBlockBytes is the volblocksize of a zvol this ingest creates.
	VolBlockBytes int64
	// Full copies everything even with a valid cursor, and may relink a
	// lost lineage to the zvol's newest dmsnap snapshot.
	Full bool
	// ZFS runs zfs(8); nil means a default [zfs.Runner].
	ZFS *zfs.Runner
	// Observer, if set, is told of progress and decisions.
	Observer Observer
	// Failpoint, if set, is called at each Failpoint* step (crash tests).
	Failpoint func(name string)
}

// Phases are the seconds each step of an ingest took.
type Phases struct {
	Check  float64 // arguments, zfs version, zvol, recovery
	Freeze float64 // the new read-only snapshot
	Plan   float64 // reading the cursor's COW
	Copy   float64 // copy and fsync
	Commit float64 // zfs snapshot, bookmark, lineage, old cursor removed
}

// Result is a committed ingest.
type Result struct {
	Lineage Lineage // after the commit
	// Snapshot, GUID and CreateTXG are the ZFS snapshot that committed it.
	Snapshot      string
	GUID          uint64
	CreateTXG     uint64
	Cursor        string // POOL/CURSOR
	Full          bool
	FullReason    string
	Recovered     string
	ChangedChunks uint64
	ChunkBytes    int64
	PlanBytes     int64
	Stats         Stats
	Seconds       float64
	Phases        Phases
}

// RelockWait bounds how long an ingest waits for the pool's lock after
// its copy: other commands hold it for seconds at most.
const RelockWait = 2 * time.Minute

type nopObserver struct{}

func (nopObserver) Notice(string)             {}
func (nopObserver) Warn(string)               {}
func (nopObserver) CopyStart(string, int64)   {}
func (nopObserver) CopyProgress(int64, int64) {}
func (nopObserver) CopyEnd(bool)              {}

// run is one [Run] in progress.
type run struct {
	env  Env
	req  Request
	obs  Observer
	r    *zfs.Runner
	pool Pool // nil while the copy runs unlocked
	out  Result
	mark time.Time
}

func (x *run) failpoint(name string) {
	if x.req.Failpoint != nil {
		x.req.Failpoint(name)
	}
}

// since returns the seconds since x.mark (rounded to milliseconds) and
// moves the mark to now.
func (x *run) since() float64 {
	now := time.Now()
	d := now.Sub(x.mark).Seconds()
	x.mark = now
	return round3(d)
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Run ingests the frozen snapshot of req.Pool/req.Origin into the zvol
// req.Dataset: it creates the zvol on the first run, recovers from an
// interrupted ingest (the ZFS snapshot is the commit point: before it,
// the zvol is rolled back; after it, the commit is adopted), takes the
// new frozen snapshot, copies the whole of it or the chunks the cursor's
// COW lists, commits with a ZFS snapshot and a bookmark, records the
// lineage and retires the old cursor. A failure before the commit point
// is undone before Run returns, or, if that fails, by the next Run.
//
// Errors wrap [ErrLineage] (the zvol's history does not match the
// lineage), [ErrNotOurs] (the zvol is not dmsnap's for this origin), and
// the errors of env and of [zfs.Runner].
func Run(ctx context.Context, env Env, req Request) (Result, error) {
	start := time.Now()
	x := &run{env: env, req: req, obs: req.Observer, r: req.ZFS, mark: start}
	if x.obs == nil {
		x.obs = nopObserver{}
	}
	if x.r == nil {
		x.r = &zfs.Runner{}
	}
	defer func() {
		if x.pool != nil {
			x.pool.Close()
		}
	}()
	if err := x.run(ctx); err != nil {
		return Result{}, err
	}
	x.out.Phases.Commit = x.since()
	x.out.Seconds = round3(time.Since(start).Seconds())
	return x.out, nil
}

func (x *run) run(ctx context.Context) error {
	req, r := x.req, x.r
	pool, base, dataset := req.Pool, req.Origin, req.Dataset
	// The dataset's lock keeps replicate and zfs prune off the zvol while
	// it is rolled back, written and snapshotted.
	dl, err := x.env.LockDataset(dataset)
	if err != nil {
		return err
	}
	defer dl.Close()
	vs, err := r.Version(ctx)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if g := zfs.CheckVersions(vs); g.Warning != "" {
		x.obs.Warn(g.Warning)
	}
	lin, known, err := x.env.Lineage(dataset)
	if err != nil {
		return err
	}
	if !known {
		lin = Lineage{Dataset: dataset, Pool: pool, Origin: base}
	} else if lin.Pool != pool || lin.Origin != base {
		return fmt.Errorf("%s holds ingests of %s/%s, not %s/%s: %w", dataset, lin.Pool, lin.Origin, pool, base, ErrLineage)
	}

	// The pool's lock is held for the steps that change the pool or the
	// kernel (recovery, the new frozen snapshot, retiring the old cursor),
	// not for the copy: that runs under the dataset's lock and the
	// lineage's pending record, so that the monitor's autoextend, ls and
	// status work on the pool meanwhile.
	if x.pool, err = x.env.LockPool(ctx, 0); err != nil {
		return err
	}
	originBytes, err := x.pool.OriginBytes(base)
	if err != nil {
		return err
	}

	// The zvol: create it on the first run, else check it is ours and
	// large enough.
	created := false
	vol, props, err := r.VolumeWith(ctx, dataset, OwnerProperty, "written")
	switch {
	case errors.Is(err, zfs.ErrDatasetNotFound):
		if lin.GUID != 0 {
			return fmt.Errorf("%s is gone but dmsnap committed ingests into it (last %s): %w", dataset, lin.Snapshot, ErrLineage)
		}
		if err := r.CreateVolume(ctx, dataset, uint64(originBytes), uint64(req.VolBlockBytes), true, OwnerProperty+"="+pool+"/"+base); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		created = true
		if vol, err = r.Volume(ctx, dataset); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	case err != nil:
		return fmt.Errorf("ingest: %w", err)
	default:
		switch owner := props[OwnerProperty]; owner {
		case "":
			return fmt.Errorf("zvol %s exists and was not made by dmsnap ingest (no %s property); refusing to overwrite it: %w", dataset, OwnerProperty, ErrNotOurs)
		case pool + "/" + base:
		default:
			return fmt.Errorf("zvol %s holds ingests of %s, not %s/%s: %w", dataset, owner, pool, base, ErrNotOurs)
		}
		if int64(vol.SizeBytes) < originBytes {
			return fmt.Errorf("zvol %s is %d bytes, smaller than the origin %s/%s (%d bytes)", dataset, vol.SizeBytes, pool, base, originBytes)
		}
	}
	blockBytes := int64(vol.VolBlockSizeBytes)

	knownZero := created
	if !created {
		if lin, err = x.recover(ctx, lin, known, props["written"]); err != nil {
			return err
		}
	}
	var skip uint64
	if lin.Pending != nil {
		// An ingest died before committing: its snapshot is not a cursor.
		if x.pool.Has(lin.Pending.Cursor) {
			if err := x.pool.RemoveSnapshot(ctx, lin.Pending.Cursor); err != nil {
				return fmt.Errorf("remove the snapshot %s/%s of an interrupted ingest: %w", pool, lin.Pending.Cursor, err)
			}
		}
		knownZero = knownZero && lin.Pending.CreatedZvol
		skip = lin.Pending.Seq
		lin.Pending = nil
	}

	// The new frozen snapshot; a sequence number is never reused.
	seq := max(lin.Seq, skip) + 1
	next := CursorName(base, seq)
	chunkBytes := max(blockBytes, 4096)
	cowExtents, err := x.pool.COWExtents(base, req.COW, chunkBytes)
	if err != nil {
		return err
	}
	x.out.Phases.Check = x.since()
	lin.Pending = &Pending{Seq: seq, Cursor: next, CreatedZvol: created,
		Snapshot: zfs.SnapshotFullName(dataset, zfs.SnapshotName(time.Now(), seq)), Started: time.Now().UTC()}
	if err := x.env.SaveLineage(ctx, lin); err != nil {
		return err
	}
	plan, stats, err := x.copy(ctx, lin, next, cowExtents, blockBytes, originBytes, knownZero)
	if err == nil {
		x.failpoint(FailpointAfterCopy)
		// The commit point.
		err = r.Snapshot(ctx, lin.Pending.Snapshot)
	}
	if err != nil {
		// Undo now rather than leave it to the next run: no change made.
		if x.pool == nil {
			// The copy ran unlocked: the pool's lock again to undo.
			var lerr error
			if x.pool, lerr = x.env.LockPool(ctx, RelockWait); lerr != nil {
				return errors.Join(err, fmt.Errorf("the next ingest will undo this one: %w", lerr))
			}
		}
		if aerr := x.abandon(lin); aerr != nil {
			return errors.Join(err, fmt.Errorf("the next ingest will finish undoing this one: %w", aerr))
		}
		return err
	}
	snap := lin.Pending.Snapshot
	x.failpoint(FailpointAfterCommit)
	if err := r.Bookmark(ctx, snap, zfs.BookmarkFor(snap)); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	pts, err := r.Points(ctx, dataset)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	var committed *zfs.Point
	for i := range pts {
		if pts[i].Kind == zfs.Snapshot && pts[i].Name == snap {
			committed = &pts[i]
		}
	}
	if committed == nil {
		return fmt.Errorf("ingest: %s missing right after zfs snapshot: %w", snap, zfs.ErrDatasetNotFound)
	}
	old := lin.Cursor
	lin = lin.Committed(*committed)
	if err := x.env.SaveLineage(ctx, lin); err != nil {
		return err
	}
	if x.pool == nil {
		// The old cursor's removal changes the pool: its lock again,
		// waiting for whoever took it during the copy.
		var rerr error
		if x.pool, rerr = x.env.LockPool(ctx, RelockWait); rerr != nil {
			x.obs.Warn(fmt.Sprintf("the old ingest cursor %s/%s was not removed (dmsnap remove %s/%s): %v", pool, old, pool, old, rerr))
		}
	}
	if x.pool != nil {
		x.retire(ctx, old, lin.Cursor)
	}
	o := &x.out
	o.Lineage = lin
	o.Snapshot, o.GUID, o.CreateTXG, o.Cursor = lin.Snapshot, lin.GUID, lin.CreateTXG, pool+"/"+lin.Cursor
	o.ChangedChunks, o.ChunkBytes, o.PlanBytes, o.Stats = plan.ChangedChunks, plan.ChunkBytes, plan.Bytes(), stats
	return nil
}

// recover compares the lineage with the zvol (written is its "written"
// property) and rolls back, adopts or relinks as [Decide] says. It
// returns the lineage to continue from.
func (x *run) recover(ctx context.Context, lin Lineage, known bool, writtenProp string) (Lineage, error) {
	req, r, dataset := x.req, x.r, x.req.Dataset
	pts, err := r.Points(ctx, dataset)
	if err != nil {
		return lin, fmt.Errorf("ingest: %w", err)
	}
	written, err := strconv.ParseUint(writtenProp, 10, 64)
	if err != nil {
		return lin, fmt.Errorf("ingest: zfs get written %s = %q: %w", dataset, writtenProp, zfs.ErrSyntax)
	}
	relinked := ""
	if !known && req.Full {
		// The lineage was lost; the zvol is ours by its property. Full
		// may start again from its newest snapshot.
		if rl, ok := Relink(lin, pts); ok {
			lin, relinked = rl, "relinked "+dataset+" to its newest dmsnap snapshot "+rl.Snapshot+" (the lineage in "+x.env.LineageHome()+" was lost)"
			// That ingest's cursor, if still there, is retired after
			// this commit like any other (the copy is full anyway).
			if c := CursorName(req.Origin, rl.Seq); x.pool.Has(c) {
				lin.Cursor = c
			}
		}
	}
	act, err := Decide(lin, pts, written)
	if errors.Is(err, ErrLineage) && !known && !req.Full {
		err = fmt.Errorf("%w; if %s lost its record, ingest --full starts again from the zvol's newest dmsnap snapshot", err, x.env.LineageHome())
	}
	if err != nil {
		return lin, err
	}
	if relinked != "" {
		x.out.Recovered = relinked
		x.obs.Notice(relinked)
	}
	switch act {
	case Adopt:
		for _, p := range pts {
			if p.Name == lin.Pending.Snapshot {
				old := lin.Cursor
				lin = lin.Committed(p)
				if err := x.env.SaveLineage(ctx, lin); err != nil {
					return lin, err
				}
				if err := r.Bookmark(ctx, p.Name, zfs.BookmarkFor(p.Name)); err != nil && !errors.Is(err, zfs.ErrExists) {
					return lin, fmt.Errorf("ingest: %w", err)
				}
				x.retire(ctx, old, lin.Cursor)
				x.out.Recovered = "adopted " + p.Name + ", committed by an interrupted ingest"
			}
		}
	case Rollback:
		if err := r.Rollback(ctx, lin.Snapshot); err != nil {
			return lin, fmt.Errorf("ingest: %w", err)
		}
		x.out.Recovered = fmt.Sprintf("rolled %s back to %s (%d bytes written after it)", dataset, lin.Snapshot, written)
	case Dirty:
		x.out.Recovered = "an interrupted first ingest left " + dataset + " partly written: full copy"
	}
	if x.out.Recovered != "" {
		x.obs.Notice(x.out.Recovered)
	}
	return lin, nil
}

// retire removes the previous cursor once the new ZFS snapshot is
// recorded. A failure only costs COW space: it is a warning.
func (x *run) retire(ctx context.Context, old, current string) {
	if old == "" || old == current || !x.pool.Has(old) {
		return
	}
	if err := x.pool.RemoveSnapshot(ctx, old); err != nil {
		pool := x.req.Pool
		x.obs.Warn(fmt.Sprintf("the old ingest cursor %s/%s was not removed (dmsnap remove %s/%s): %v", pool, old, pool, old, err))
	}
}

// cursorPlan reads the cursor's COW (past the page cache, which could be
// stale) and plans the copy of the chunks it lists.
func (x *run) cursorPlan(cursor string, originBytes int64) (Plan, error) {
	pool := x.req.Pool
	dev, err := x.env.OpenCOW(cursor)
	if err != nil {
		return Plan{}, fmt.Errorf("cursor %s/%s: %w", pool, cursor, err)
	}
	defer dev.Close()
	store, err := cow.Decoder{}.Open(dev, dev.Size())
	if err != nil {
		return Plan{}, fmt.Errorf("cursor %s/%s: %w", pool, cursor, err)
	}
	return IncrementalPlan(store.ChangedExtents(), store.ChunkSectors(), originBytes)
}

// copy takes the new frozen snapshot next, plans the copy (full, or the
// chunks the cursor's COW lists: read after the new snapshot froze, so
// they cover every write before it) and copies it into the zvol. It
// releases the pool's lock before the copy. It fails if the snapshot was
// invalidated while being copied: what was read from it is garbage.
func (x *run) copy(ctx context.Context, lin Lineage, next string, cowExtents uint64, blockBytes, originBytes int64, knownZero bool) (Plan, Stats, error) {
	pool, dataset := x.req.Pool, x.req.Dataset
	token, err := x.pool.CreateFrozen(ctx, next, x.req.Origin, cowExtents, max(blockBytes, 4096))
	if err != nil {
		return Plan{}, Stats{}, err
	}
	x.out.Phases.Freeze = x.since()
	var plan Plan
	out := &x.out
	switch {
	case x.req.Full:
		out.FullReason = "--full"
	case lin.Cursor == "":
		out.FullReason = "first ingest"
	case !x.pool.Has(lin.Cursor):
		out.FullReason = fmt.Sprintf("the cursor %s/%s is gone", pool, lin.Cursor)
	default:
		plan, err = x.cursorPlan(lin.Cursor, originBytes)
		if errors.Is(err, cow.ErrInvalidated) {
			out.FullReason = fmt.Sprintf("the cursor %s/%s was invalidated (its COW filled up): changes since it are unknown", pool, lin.Cursor)
			err = nil
		}
		if err != nil {
			return plan, Stats{}, err
		}
	}
	if out.FullReason != "" {
		out.Full = true
		if plan, err = FullPlan(originBytes); err != nil {
			return plan, Stats{}, err
		}
		if lin.Cursor != "" {
			x.obs.Notice("full copy: " + out.FullReason)
		}
	}
	if plan, err = plan.AlignTo(blockBytes); err != nil {
		return plan, Stats{}, err
	}

	out.Phases.Plan = x.since()
	x.pool.Close()
	x.pool = nil
	x.obs.CopyStart(dataset, plan.Bytes())
	stats, err := x.copyIntoZvol(ctx, next, plan, CopyOptions{
		BlockBytes: blockBytes, KnownZero: knownZero && out.Full,
		Progress: func(done, total int64) {
			x.obs.CopyProgress(done, total)
			if 2*done >= total {
				x.failpoint(FailpointMidCopy)
			}
		}})
	x.obs.CopyEnd(err == nil)
	if err != nil {
		return plan, stats, fmt.Errorf("ingest %s/%s into %s: %w", pool, next, dataset, err)
	}
	// The snapshot must still be valid now that the copy is synced: an
	// overflow during the copy makes the kernel fail reads, but a read
	// that raced the invalidation may not have failed.
	out.Phases.Copy = x.since()
	if err := x.env.CheckFrozen(next, token); err != nil {
		return plan, stats, err
	}
	return plan, stats, nil
}

// copyIntoZvol copies plan from the frozen snapshot snap into the zvol's
// block device and syncs it.
func (x *run) copyIntoZvol(ctx context.Context, snap string, plan Plan, opts CopyOptions) (Stats, error) {
	src, err := x.env.OpenSnapshot(snap)
	if err != nil {
		return Stats{}, err
	}
	defer src.Close()
	if src.Size() < plan.SizeBytes {
		return Stats{}, fmt.Errorf("snapshot device is %d bytes, origin %d", src.Size(), plan.SizeBytes)
	}
	z, err := x.env.OpenZvol(ctx, x.req.Dataset)
	if err != nil {
		return Stats{}, err
	}
	stats, err := Copy(ctx, src, z, plan, opts)
	if err == nil {
		err = z.Sync()
	}
	return stats, errors.Join(err, z.Close())
}

// abandon undoes an ingest that failed before its commit point: removes
// its frozen snapshot, rolls the zvol back to the last committed ingest
// (or destroys a zvol this ingest created) and clears Pending. It runs
// even after ctx was cancelled. On error Pending stays recorded and the
// next ingest finishes the job.
func (x *run) abandon(lin Lineage) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := lin.Pending
	if x.pool.Has(p.Cursor) {
		if err := x.pool.RemoveSnapshot(ctx, p.Cursor); err != nil {
			return fmt.Errorf("remove %s/%s: %w", x.req.Pool, p.Cursor, err)
		}
	}
	switch {
	case lin.GUID != 0:
		if err := x.r.Rollback(ctx, lin.Snapshot); err != nil {
			return err
		}
	case p.CreatedZvol:
		if err := x.r.Destroy(ctx, lin.Dataset); err != nil && !errors.Is(err, zfs.ErrDatasetNotFound) {
			return err
		}
	}
	lin.Pending = nil
	return x.env.SaveLineage(ctx, lin)
}
