package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/internal/sys"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/urfave/cli/v2"
)

// ingestOptions are the arguments of `dmsnap ingest`.
type ingestOptions struct {
	Origin       string // [POOL/]BASE
	Dataset      string // ZPOOL/DATASET
	COW          string
	VolBlockSize string
	Full         bool
}

// Failpoints of ingest (lvm.Failpoint, armed through lvm.FailpointEnv).
const (
	fpIngestMidCopy     = "ingest.mid-copy"     // half the plan written, not synced
	fpIngestAfterCopy   = "ingest.after-copy"   // zvol written and synced, no ZFS snapshot
	fpIngestAfterCommit = "ingest.after-commit" // ZFS snapshot made, lineage not recorded
)

func newIngestCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "ingest",
		Usage:     "copy a frozen snapshot of a volume into a ZFS zvol: full once, then changed chunks only",
		ArgsUsage: "[POOL/]BASE ZPOOL/DATASET",
		Description: "Takes a read-only persistent snapshot <base>-ingest-<seq> of BASE (chunk size = the zvol's\n" +
			"volblocksize), creates the zvol (sparse, the origin's size) on the first run and copies the\n" +
			"whole frozen snapshot; later runs copy only the chunks listed in the previous ingest\n" +
			"snapshot's COW (the cursor), reading them from the new snapshot. Zero blocks become holes.\n" +
			"Then `zfs snapshot DATASET@dmsnap-<time>-<seq>` and a bookmark commit the ingest, and only\n" +
			"then is the old cursor removed. An interrupted ingest is rolled back (zfs rollback to the\n" +
			"last dmsnap snapshot) by the next one. An invalidated cursor means a full copy.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cow", Value: "20%ORIGIN", Usage: "COW size of the ingest snapshot: 100M, 20%ORIGIN, 50%FREE"},
			&cli.StringFlag{Name: "volblocksize", Value: "16K", Usage: "volblocksize of a new zvol (a power of two from 4K to 128K)"},
			&cli.BoolFlag{Name: "full", Usage: "copy the whole snapshot even if the cursor is valid; also starts again from the zvol's newest dmsnap snapshot if dmsnap's record of it was lost"},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 2 {
				return usageErrorf("ingest needs [POOL/]BASE ZPOOL/DATASET, got %d arguments", len(args))
			}
			return runIngest(c.Context, gopts, ingestOptions{Origin: args[0], Dataset: args[1],
				COW: c.String("cow"), VolBlockSize: c.String("volblocksize"), Full: c.Bool("full")})
		}),
	}
}

// jsonIngest is the result of `dmsnap ingest --json`.
type jsonIngest struct {
	Dataset       string  `json:"dataset"`
	Snapshot      string  `json:"snapshot"`
	GUID          uint64  `json:"guid"`
	CreateTXG     uint64  `json:"createtxg"`
	Cursor        string  `json:"cursor"`
	Full          bool    `json:"full"`
	FullReason    string  `json:"full_reason,omitempty"`
	Recovered     string  `json:"recovered,omitempty"`
	ChangedChunks uint64  `json:"changed_chunks"`
	ChunkBytes    int64   `json:"chunk_bytes"`
	PlanBytes     int64   `json:"plan_bytes"`
	BytesWritten  int64   `json:"bytes_written"`
	BytesZeroed   int64   `json:"bytes_zeroed"`
	BytesSkipped  int64   `json:"bytes_skipped"`
	Seconds       float64 `json:"seconds"`
	// Phases splits Seconds.
	Phases ingestPhases `json:"phases"`
}

// ingestPhases are the seconds each step of an ingest took.
type ingestPhases struct {
	Check  float64 `json:"check"`  // arguments, zfs version, zvol, recovery
	Freeze float64 `json:"freeze"` // the new read-only snapshot
	Plan   float64 `json:"plan"`   // reading the cursor's COW
	Copy   float64 `json:"copy"`   // copy and fsync
	Commit float64 `json:"commit"` // zfs snapshot, bookmark, lineage, old cursor removed
}

// since returns the seconds since *mark and moves it to now.
func since(mark *time.Time) float64 {
	now := time.Now()
	d := now.Sub(*mark).Seconds()
	*mark = now
	return round3(d)
}

// parseVolBlockSize checks --volblocksize.
func parseVolBlockSize(s string) (int64, error) {
	n, err := lvm.ParseSize(s)
	if err != nil {
		return 0, usageErrorf("--volblocksize: %w", err)
	}
	b := int64(n.Bytes())
	if b < 4096 || b > 128<<10 || b&(b-1) != 0 {
		return 0, usageErrorf("--volblocksize %s: must be a power of two from 4K to 128K", s)
	}
	return b, nil
}

func saveLineage(ctx context.Context, gopts *globalOptions, l ingest.Lineage) error {
	return updateState(ctx, gopts, func(st *state) error {
		if st.Ingest == nil {
			st.Ingest = map[string]ingest.Lineage{}
		}
		st.Ingest[l.Dataset] = l
		return nil
	})
}

func runIngest(ctx context.Context, gopts *globalOptions, opts ingestOptions) error {
	start := time.Now()
	blockBytes, err := parseVolBlockSize(opts.VolBlockSize)
	if err != nil {
		return err
	}
	if err := checkCOWSyntax(opts.COW); err != nil {
		return err
	}
	if err := zfs.CheckDatasetName(opts.Dataset); err != nil || !strings.Contains(opts.Dataset, "/") {
		return usageErrorf("dataset %q: want ZPOOL/DATASET", opts.Dataset)
	}
	pool, base, err := splitVolumePath(gopts, opts.Origin)
	if err != nil {
		return err
	}
	// The dataset's lock keeps replicate and zfs prune off the zvol while
	// it is rolled back, written and snapshotted.
	dl, err := lockDataset(gopts, opts.Dataset, lock.Exclusive)
	if err != nil {
		return err
	}
	defer dl.Close()
	r := &zfs.Runner{}
	vs, err := r.Version(ctx)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if g := zfs.CheckVersions(vs); g.Warning != "" {
		gopts.warn(g.Warning)
	}
	st, err := loadState(gopts)
	if err != nil {
		return err
	}
	lin, known := st.Ingest[opts.Dataset]
	if !known {
		lin = ingest.Lineage{Dataset: opts.Dataset, Pool: pool, Origin: base}
	} else if lin.Pool != pool || lin.Origin != base {
		return fmt.Errorf("%s holds ingests of %s/%s, not %s/%s: %w", opts.Dataset, lin.Pool, lin.Origin, pool, base, ingest.ErrLineage)
	}

	// The pool's lock is held for the steps that change the pool or the
	// kernel (recovery, the new frozen snapshot, retiring the old cursor),
	// not for the copy: that runs under the dataset's lock and the
	// lineage's pending record, so that the monitor's autoextend, ls and
	// status work on the pool meanwhile (ingestCopy releases it).
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	origin := s.Opened.Store.Pool.Volume(base)
	if origin == nil {
		return fmt.Errorf("origin %s/%s: %w", pool, base, lvm.ErrNotFound)
	}
	if origin.Kind == lvm.KindSnapshotCOW {
		return usageErrorf("%s/%s is a snapshot; ingest its origin", pool, base)
	}
	originBytes := int64(s.Opened.Store.Pool.Sectors(origin.Extents()).Bytes())
	if _, err := s.Kernel.Info(lvm.DMName(pool, base, lvm.LayerNone)); err != nil {
		if errors.Is(err, dm.ErrNotFound) {
			return fmt.Errorf("origin %s/%s is not active (dmsnap activate %s)", pool, base, pool)
		}
		return fmt.Errorf("ingest: %w", err)
	}

	// The zvol: create it on the first run, else check it is ours and
	// large enough.
	created := false
	vol, props, err := r.VolumeWith(ctx, opts.Dataset, ingest.OwnerProperty, "written")
	switch {
	case errors.Is(err, zfs.ErrDatasetNotFound):
		if lin.GUID != 0 {
			return fmt.Errorf("%s is gone but dmsnap committed ingests into it (last %s): %w", opts.Dataset, lin.Snapshot, ingest.ErrLineage)
		}
		if err := r.CreateVolume(ctx, opts.Dataset, uint64(originBytes), uint64(blockBytes), true, ingest.OwnerProperty+"="+pool+"/"+base); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		created = true
		if vol, err = r.Volume(ctx, opts.Dataset); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	case err != nil:
		return fmt.Errorf("ingest: %w", err)
	default:
		switch owner := props[ingest.OwnerProperty]; owner {
		case "":
			return fmt.Errorf("zvol %s exists and was not made by dmsnap ingest (no %s property); refusing to overwrite it: %w", opts.Dataset, ingest.OwnerProperty, ingest.ErrNotOurs)
		case pool + "/" + base:
		default:
			return fmt.Errorf("zvol %s holds ingests of %s, not %s/%s: %w", opts.Dataset, owner, pool, base, ingest.ErrNotOurs)
		}
		if int64(vol.SizeBytes) < originBytes {
			return fmt.Errorf("zvol %s is %d bytes, smaller than the origin %s/%s (%d bytes)", opts.Dataset, vol.SizeBytes, pool, base, originBytes)
		}
	}
	blockBytes = int64(vol.VolBlockSizeBytes)

	// Recovery: the ZFS snapshot is the commit point.
	out := jsonIngest{Dataset: opts.Dataset}
	knownZero := created
	if !created {
		pts, err := r.Points(ctx, opts.Dataset)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		written, err := strconv.ParseUint(props["written"], 10, 64)
		if err != nil {
			return fmt.Errorf("ingest: zfs get written %s = %q: %w", opts.Dataset, props["written"], zfs.ErrSyntax)
		}
		relinked := ""
		if !known && opts.Full {
			// The lineage was lost (state file); the zvol is ours by its
			// property. --full may start again from its newest snapshot.
			if rl, ok := ingest.Relink(lin, pts); ok {
				lin, relinked = rl, "relinked "+opts.Dataset+" to its newest dmsnap snapshot "+rl.Snapshot+" (the lineage in "+gopts.statePath()+" was lost)"
				// That ingest's cursor, if still there, is retired after
				// this commit like any other (the copy is full anyway).
				if c := ingest.CursorName(base, rl.Seq); s.Opened.Store.Pool.Volume(c) != nil {
					lin.Cursor = c
				}
			}
		}
		act, err := ingest.Decide(lin, pts, written)
		if errors.Is(err, ingest.ErrLineage) && !known && !opts.Full {
			err = fmt.Errorf("%w; if %s lost its record, ingest --full starts again from the zvol's newest dmsnap snapshot", err, gopts.statePath())
		}
		if err != nil {
			return err
		}
		if relinked != "" {
			out.Recovered = relinked
			if !gopts.Quiet {
				fmt.Fprintf(gopts.stderr, "dmsnap: %s\n", relinked)
			}
		}
		switch act {
		case ingest.Adopt:
			for _, p := range pts {
				if p.Name == lin.Pending.Snapshot {
					old := lin.Cursor
					lin = lin.Committed(p)
					if err := saveLineage(ctx, gopts, lin); err != nil {
						return err
					}
					if err := r.Bookmark(ctx, p.Name, zfs.BookmarkFor(p.Name)); err != nil && !errors.Is(err, zfs.ErrExists) {
						return fmt.Errorf("ingest: %w", err)
					}
					retireCursor(ctx, gopts, s, pool, old, lin.Cursor)
					out.Recovered = "adopted " + p.Name + ", committed by an interrupted ingest"
				}
			}
		case ingest.Rollback:
			if err := r.Rollback(ctx, lin.Snapshot); err != nil {
				return fmt.Errorf("ingest: %w", err)
			}
			out.Recovered = fmt.Sprintf("rolled %s back to %s (%d bytes written after it)", opts.Dataset, lin.Snapshot, written)
		case ingest.Dirty:
			out.Recovered = "an interrupted first ingest left " + opts.Dataset + " partly written: full copy"
		}
		if out.Recovered != "" && !gopts.Quiet {
			fmt.Fprintf(gopts.stderr, "dmsnap: %s\n", out.Recovered)
		}
	}
	var skip uint64
	if lin.Pending != nil {
		// An ingest died before committing: its snapshot is not a cursor.
		if s.Opened.Store.Pool.Volume(lin.Pending.Cursor) != nil {
			if _, err := lvm.RemoveSnapshotDevices(ctx, s.Opened.Store, s.env(gopts), lin.Pending.Cursor, false); err != nil {
				return fmt.Errorf("remove the snapshot %s/%s of an interrupted ingest: %w", pool, lin.Pending.Cursor, err)
			}
		}
		knownZero = knownZero && lin.Pending.CreatedZvol
		skip = lin.Pending.Seq
		lin.Pending = nil
	}

	// The new frozen snapshot; a sequence number is never reused.
	seq := max(lin.Seq, skip) + 1
	next := ingest.CursorName(base, seq)
	chunk := dm.Sector(max(blockBytes, 4096) / 512)
	size, err := parseCOWSize(opts.COW, s.Opened.Store.Pool, origin)
	if err != nil {
		return err
	}
	if min := lvm.MinCOWSize(chunk); size < min {
		size = min
	}
	n, _ := lvm.ExtentsFor(size, s.Opened.Store.Pool.ExtentSize)
	mark := start
	out.Phases.Check = since(&mark)
	lin.Pending = &ingest.Pending{Seq: seq, Cursor: next, CreatedZvol: created,
		Snapshot: zfs.SnapshotFullName(opts.Dataset, zfs.SnapshotName(time.Now(), seq)), Started: time.Now().UTC()}
	if err := saveLineage(ctx, gopts, lin); err != nil {
		return err
	}
	plan, stats, err := ingestCopy(ctx, gopts, s, &out, &mark, ingestCopyArgs{
		pool: pool, base: base, dataset: opts.Dataset, lin: lin, next: next, cowExtents: n,
		chunk: chunk, blockBytes: blockBytes, originBytes: originBytes, full: opts.Full, knownZero: knownZero,
		unlock: func() { s.Close(); s = nil }})
	if err == nil {
		lvm.Failpoint(fpIngestAfterCopy)
		// The commit point.
		err = r.Snapshot(ctx, lin.Pending.Snapshot)
	}
	if err != nil {
		// Undo now rather than leave it to the next run: no change made.
		if s == nil {
			// The copy ran unlocked: the pool's lock again to undo.
			var lerr error
			if s, lerr = relockPool(context.Background(), gopts, pool); lerr != nil {
				return errors.Join(err, fmt.Errorf("the next ingest will undo this one: %w", lerr))
			}
		}
		if aerr := abandonIngest(gopts, s, r, lin); aerr != nil {
			return errors.Join(err, fmt.Errorf("the next ingest will finish undoing this one: %w", aerr))
		}
		return err
	}
	snap := lin.Pending.Snapshot
	lvm.Failpoint(fpIngestAfterCommit)
	if err := r.Bookmark(ctx, snap, zfs.BookmarkFor(snap)); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	pts, err := r.Points(ctx, opts.Dataset)
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
	if err := saveLineage(ctx, gopts, lin); err != nil {
		return err
	}
	if s == nil {
		// The old cursor's removal changes the pool: its lock again,
		// waiting for whoever took it during the copy.
		var rerr error
		if s, rerr = relockPool(ctx, gopts, pool); rerr != nil {
			gopts.warn(fmt.Sprintf("the old ingest cursor %s/%s was not removed (dmsnap remove %s/%s): %v", pool, old, pool, old, rerr))
		}
	}
	if s != nil {
		retireCursor(ctx, gopts, s, pool, old, lin.Cursor)
	}
	recordTransfer(ctx, gopts, stateTransfer{Op: metrics.Ingest, Pool: pool, Origin: base, At: time.Now().UTC(), Bytes: uint64(plan.Bytes())})

	out.Snapshot, out.GUID, out.CreateTXG, out.Cursor = lin.Snapshot, lin.GUID, lin.CreateTXG, pool+"/"+lin.Cursor
	out.ChangedChunks, out.ChunkBytes, out.PlanBytes = plan.ChangedChunks, plan.ChunkBytes, plan.Bytes()
	out.BytesWritten, out.BytesZeroed, out.BytesSkipped = stats.BytesWritten, stats.BytesZeroed, stats.BytesSkipped
	out.Phases.Commit = since(&mark)
	out.Seconds = round3(time.Since(start).Seconds())
	if gopts.JSON {
		return writeJSON(gopts.stdout, out)
	}
	kind := fmt.Sprintf("incremental (%d changed chunks of %d bytes)", out.ChangedChunks, out.ChunkBytes)
	if out.Full {
		kind = "full (" + out.FullReason + ")"
	}
	fmt.Fprintf(gopts.stdout, "ingested %s/%s into %s: %s, %d bytes written, %d zeroed, %d skipped as holes; cursor %s\n",
		pool, base, out.Snapshot, kind, out.BytesWritten, out.BytesZeroed, out.BytesSkipped, out.Cursor)
	return nil
}

// relockWait bounds how long an ingest waits for the pool's lock after
// its copy: other commands hold it for seconds at most.
const relockWait = 2 * time.Minute

// relockPool takes the pool's exclusive lock again after the copy,
// waiting up to relockWait, and opens a fresh session (the pool may have
// changed meanwhile).
func relockPool(ctx context.Context, gopts *globalOptions, pool string) (*snapSession, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relockWait)
	defer cancel()
	l, err := lock.Acquire(ctx, lock.Path(gopts.lockDir(), pool), lock.Exclusive)
	if err != nil {
		return nil, fmt.Errorf("lock pool %s again after the copy: %w", pool, err)
	}
	return openSnapSessionLocked(gopts, pool, l, lock.Exclusive)
}

// retireCursor removes the previous cursor once the new ZFS snapshot is
// recorded. A failure only costs COW space: it is a warning.
func retireCursor(ctx context.Context, gopts *globalOptions, s *snapSession, pool, old, current string) {
	if old == "" || old == current || s.Opened.Store.Pool.Volume(old) == nil {
		return
	}
	if _, err := lvm.RemoveSnapshotDevices(ctx, s.Opened.Store, s.env(gopts), old, false); err != nil {
		gopts.warn(fmt.Sprintf("the old ingest cursor %s/%s was not removed (dmsnap remove %s/%s): %v", pool, old, pool, old, err))
	}
}

// cursorPlan reads the cursor's COW (O_DIRECT only, the page cache could
// be stale) and plans the copy of the chunks it lists.
func cursorPlan(pool, cursor string, originBytes int64) (ingest.Plan, error) {
	src, err := openCowSourceDirect(dm.DevicePath(lvm.DMName(pool, cursor, lvm.LayerCOW)))
	if err != nil {
		return ingest.Plan{}, fmt.Errorf("cursor %s/%s: %w", pool, cursor, err)
	}
	defer src.Close()
	store, err := cow.Decoder{}.Open(src.r, src.size)
	if err != nil {
		return ingest.Plan{}, fmt.Errorf("cursor %s/%s: %w", pool, cursor, err)
	}
	return ingest.IncrementalPlan(store.ChangedExtents(), store.ChunkSectors(), originBytes)
}

// copyIntoZvol copies plan from the frozen snapshot pool/snap into the
// zvol's block device and syncs it.
func copyIntoZvol(ctx context.Context, pool, snap, dataset string, plan ingest.Plan, opts ingest.CopyOptions) (ingest.Stats, error) {
	src, err := openCowSourceDirect(dm.DevicePath(lvm.DMName(pool, snap, lvm.LayerNone)))
	if err != nil {
		return ingest.Stats{}, err
	}
	defer src.Close()
	if src.size < plan.SizeBytes {
		return ingest.Stats{}, fmt.Errorf("snapshot device is %d bytes, origin %d", src.size, plan.SizeBytes)
	}
	dev, err := ingest.ZvolDevice(ctx, dataset, 30*time.Second)
	if err != nil {
		return ingest.Stats{}, err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|sys.OpenFlagsCloexec, 0)
	if err != nil {
		return ingest.Stats{}, err
	}
	t := &zvolTarget{f: f}
	stats, err := ingest.Copy(ctx, src.r, t, plan, opts)
	if err == nil {
		err = f.Sync()
	}
	return stats, errors.Join(err, f.Close())
}

// zvolTarget writes a zvol's block device. Zero punches a hole
// (fallocate PUNCH_HOLE|KEEP_SIZE, which a zvol turns into a free of the
// range); where the device refuses that it writes zeros, which ZFS with
// compression on (the zvol default) stores as holes as well.
// zvolTarget's methods are called by several of ingest.Copy's writers at
// once: pwrite and fallocate on one fd are safe, mu guards the rest.
type zvolTarget struct {
	f       *os.File
	mu      sync.Mutex
	noPunch bool
	punched int64 // bytes deallocated by punchHole
	zeros   []byte
}

func (z *zvolTarget) WriteAt(b []byte, off int64) (int, error) { return z.f.WriteAt(b, off) }

func (z *zvolTarget) Zero(off, n int64) error {
	z.mu.Lock()
	noPunch := z.noPunch
	z.mu.Unlock()
	if !noPunch {
		ok, err := sys.PunchHole(z.f, off, n)
		if err != nil {
			return err
		}
		z.mu.Lock()
		defer z.mu.Unlock()
		if ok {
			z.punched += n
			return nil
		}
		z.noPunch = true
	} else {
		z.mu.Lock()
		defer z.mu.Unlock()
	}
	// Without hole punching, zeros are written under mu: rare (a device
	// without discard), and it keeps the shared buffer simple.
	if z.zeros == nil {
		z.zeros = make([]byte, 1<<20)
	}
	for n > 0 {
		m := min(n, int64(len(z.zeros)))
		if _, err := z.f.WriteAt(z.zeros[:m], off); err != nil {
			return err
		}
		off, n = off+m, n-m
	}
	return nil
}

// ingestCopyArgs are the inputs of [ingestCopy].
type ingestCopyArgs struct {
	pool, base, dataset string
	lin                 ingest.Lineage // with Pending set
	next                string         // the new frozen snapshot
	cowExtents          lvm.ExtentCount
	chunk               dm.Sector
	blockBytes          int64
	originBytes         int64
	full                bool
	knownZero           bool // the zvol is new and never written
	// unlock releases the pool's lock (and the session) once the frozen
	// snapshot is made and the plan read, before the copy.
	unlock func()
}

// ingestCopy takes the new frozen snapshot, plans the copy (full, or the
// chunks the cursor's COW lists: read after the new snapshot froze, so
// they cover every write before it) and copies it into the zvol. It
// fails if the snapshot was invalidated while being copied: what was
// read from it is garbage.
func ingestCopy(ctx context.Context, gopts *globalOptions, s *snapSession, out *jsonIngest, mark *time.Time, a ingestCopyArgs) (ingest.Plan, ingest.Stats, error) {
	if _, err := lvm.CreateSnapshot(ctx, s.Opened.Store, s.env(gopts), lvm.SnapshotSpec{
		Name: a.next, Origin: a.base, COWExtents: a.cowExtents, Store: dm.Persistent, ChunkSize: a.chunk, ReadOnly: true}); err != nil {
		return ingest.Plan{}, ingest.Stats{}, fmt.Errorf("ingest: %w", err)
	}
	frozen := s.Opened.Store.Pool.Volume(a.next)
	wantUUID := lvm.DMUUID(s.Opened.Store.Pool.UUID, frozen.UUID, lvm.LayerNone)
	out.Phases.Freeze = since(mark)
	lin := a.lin
	var plan ingest.Plan
	var err error
	switch {
	case a.full:
		out.FullReason = "--full"
	case lin.Cursor == "":
		out.FullReason = "first ingest"
	case s.Opened.Store.Pool.Volume(lin.Cursor) == nil:
		out.FullReason = fmt.Sprintf("the cursor %s/%s is gone", a.pool, lin.Cursor)
	default:
		plan, err = cursorPlan(a.pool, lin.Cursor, a.originBytes)
		if errors.Is(err, cow.ErrInvalidated) {
			out.FullReason = fmt.Sprintf("the cursor %s/%s was invalidated (its COW filled up): changes since it are unknown", a.pool, lin.Cursor)
			err = nil
		}
		if err != nil {
			return plan, ingest.Stats{}, err
		}
	}
	if out.FullReason != "" {
		out.Full = true
		if plan, err = ingest.FullPlan(a.originBytes); err != nil {
			return plan, ingest.Stats{}, err
		}
		if !gopts.Quiet && lin.Cursor != "" {
			fmt.Fprintf(gopts.stderr, "dmsnap: full copy: %s\n", out.FullReason)
		}
	}
	if plan, err = plan.AlignTo(a.blockBytes); err != nil {
		return plan, ingest.Stats{}, err
	}

	out.Phases.Plan = since(mark)
	if a.unlock != nil {
		a.unlock()
	}
	bp := newTransferProgress(gopts, isTerminal(gopts.stderr), a.dataset,
		jsonTransferProgress{MessageType: "ingest_progress", Dataset: a.dataset, EstimatedBytes: uint64(plan.Bytes())})
	stats, err := copyIntoZvol(ctx, a.pool, a.next, a.dataset, plan, ingest.CopyOptions{
		BlockBytes: a.blockBytes, KnownZero: a.knownZero && out.Full,
		Progress: func(done, total int64) {
			bp.Set(done)
			if 2*done >= total {
				lvm.Failpoint(fpIngestMidCopy)
				lvm.Pausepoint(fpIngestMidCopy)
			}
		}})
	bp.finish(err == nil)
	if err != nil {
		return plan, stats, fmt.Errorf("ingest %s/%s into %s: %w", a.pool, a.next, a.dataset, err)
	}
	// The snapshot must still be valid now that the copy is synced: an
	// overflow during the copy makes the kernel fail reads, but a read
	// that raced the invalidation may not have failed.
	out.Phases.Copy = since(mark)
	k, err := dm.Open()
	if err != nil {
		return plan, stats, fmt.Errorf("ingest: %w", err)
	}
	defer k.Close()
	lines, info, err := k.Status(lvm.DMName(a.pool, a.next, lvm.LayerNone))
	if err != nil {
		return plan, stats, fmt.Errorf("ingest: status of %s/%s: %w", a.pool, a.next, err)
	}
	if info.UUID != wantUUID {
		// Removed (and another made under its name) while unlocked.
		return plan, stats, fmt.Errorf("ingest: the frozen snapshot %s/%s was replaced during the copy (device uuid %q, want %q): refusing to commit it", a.pool, a.next, info.UUID, wantUUID)
	}
	if len(lines) != 1 {
		return plan, stats, fmt.Errorf("ingest: %s/%s has %d status lines, want 1", a.pool, a.next, len(lines))
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return plan, stats, fmt.Errorf("ingest: status of %s/%s: %w", a.pool, a.next, err)
	}
	if st.State != dm.SnapshotActive {
		return plan, stats, fmt.Errorf("ingest: the frozen snapshot %s/%s became %q during the copy (COW too small for the writes meanwhile; use a larger --cow): refusing to commit it", a.pool, a.next, lines[0].Params)
	}
	return plan, stats, nil
}

// abandonIngest undoes an ingest that failed before its commit point:
// removes its frozen snapshot, rolls the zvol back to the last committed
// ingest (or destroys a zvol this ingest created) and clears Pending. It
// runs even after ctx was cancelled. On error Pending stays recorded and
// the next ingest finishes the job.
func abandonIngest(gopts *globalOptions, s *snapSession, r *zfs.Runner, lin ingest.Lineage) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := lin.Pending
	if s.Opened.Store.Pool.Volume(p.Cursor) != nil {
		if _, err := lvm.RemoveSnapshotDevices(ctx, s.Opened.Store, s.env(gopts), p.Cursor, false); err != nil {
			return fmt.Errorf("remove %s/%s: %w", s.Name, p.Cursor, err)
		}
	}
	switch {
	case lin.GUID != 0:
		if err := r.Rollback(ctx, lin.Snapshot); err != nil {
			return err
		}
	case p.CreatedZvol:
		if err := r.Destroy(ctx, lin.Dataset); err != nil && !errors.Is(err, zfs.ErrDatasetNotFound) {
			return err
		}
	}
	lin.Pending = nil
	return saveLineage(ctx, gopts, lin)
}
