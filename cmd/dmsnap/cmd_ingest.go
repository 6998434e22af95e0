package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/blockdev"
	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/dmsnap/dmsnap/zfs"
)

// ingestOptions are the arguments of `dmsnap ingest`.
type ingestOptions struct {
	Origin       string // [POOL/]BASE
	Dataset      string // ZPOOL/DATASET
	COW          string
	VolBlockSize string
	Full         bool
}

// Failpoints of ingest (internal/failpoint).
const (
	fpIngestMidCopy     = ingest.FailpointMidCopy
	fpIngestAfterCopy   = ingest.FailpointAfterCopy
	fpIngestAfterCommit = ingest.FailpointAfterCommit
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

func runIngest(ctx context.Context, gopts *globalOptions, opts ingestOptions) error {
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
	obs := &ingestObserver{gopts: gopts}
	res, err := ingest.Run(ctx, &ingestEnv{gopts: gopts, pool: pool}, ingest.Request{
		Pool: pool, Origin: base, Dataset: opts.Dataset, COW: opts.COW, VolBlockBytes: blockBytes, Full: opts.Full,
		ZFS: &zfs.Runner{}, Observer: obs, Failpoint: ingestFailpoint})
	if err != nil {
		return err
	}
	recordTransfer(ctx, gopts, stateTransfer{Op: metrics.Ingest, Pool: pool, Origin: base, At: time.Now().UTC(), Bytes: uint64(res.PlanBytes)})
	out := jsonIngest{Dataset: opts.Dataset, Snapshot: res.Snapshot, GUID: res.GUID, CreateTXG: res.CreateTXG, Cursor: res.Cursor,
		Full: res.Full, FullReason: res.FullReason, Recovered: res.Recovered,
		ChangedChunks: res.ChangedChunks, ChunkBytes: res.ChunkBytes, PlanBytes: res.PlanBytes,
		BytesWritten: res.Stats.BytesWritten, BytesZeroed: res.Stats.BytesZeroed, BytesSkipped: res.Stats.BytesSkipped,
		Seconds: res.Seconds, Phases: ingestPhases{Check: res.Phases.Check, Freeze: res.Phases.Freeze, Plan: res.Phases.Plan,
			Copy: res.Phases.Copy, Commit: res.Phases.Commit}}
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

// ingestFailpoint fires the ingest's failpoints (internal/failpoint); the
// mid-copy one also pauses.
func ingestFailpoint(name string) {
	failpoint.Hit(name)
	if name == fpIngestMidCopy {
		failpoint.Pause(name)
	}
}

// ingestObserver prints an ingest: notices and warnings on stderr unless
// --quiet, the copy's progress through transferProgress.
type ingestObserver struct {
	gopts *globalOptions
	bp    *transferProgress
}

func (o *ingestObserver) Notice(msg string) {
	if !o.gopts.Quiet {
		fmt.Fprintf(o.gopts.stderr, "dmsnap: %s\n", msg)
	}
}

func (o *ingestObserver) Warn(msg string) { o.gopts.warn(msg) }

func (o *ingestObserver) CopyStart(dataset string, totalBytes int64) {
	o.bp = newTransferProgress(o.gopts, isTerminal(o.gopts.stderr), dataset,
		jsonTransferProgress{MessageType: "ingest_progress", Dataset: dataset, EstimatedBytes: uint64(totalBytes)})
}

func (o *ingestObserver) CopyProgress(done, _ int64) { o.bp.Set(done) }

func (o *ingestObserver) CopyEnd(ok bool) { o.bp.finish(ok) }

// ingestEnv is ingest.Env over today's pool sessions, state file and
// devices.
type ingestEnv struct {
	gopts *globalOptions
	pool  string
}

func (e *ingestEnv) LockDataset(dataset string) (io.Closer, error) {
	return lockDataset(e.gopts, dataset, lock.Exclusive)
}

func (e *ingestEnv) LockPool(ctx context.Context, wait time.Duration) (ingest.Pool, error) {
	if wait == 0 {
		s, err := openSnapSession(e.gopts, e.pool, lock.Exclusive)
		if err != nil {
			return nil, err
		}
		return &ingestPool{gopts: e.gopts, s: s}, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	l, err := lock.Acquire(ctx, lock.Path(e.gopts.lockDir(), e.pool), lock.Exclusive)
	if err != nil {
		return nil, fmt.Errorf("lock pool %s again after the copy: %w", e.pool, err)
	}
	s, err := openSnapSessionLocked(e.gopts, e.pool, l, lock.Exclusive)
	if err != nil {
		return nil, err
	}
	return &ingestPool{gopts: e.gopts, s: s}, nil
}

func (e *ingestEnv) OpenCOW(name string) (ingest.Device, error) {
	return openIngestDevice(dm.DevicePath(lvm.DMName(e.pool, name, lvm.LayerCOW)))
}

func (e *ingestEnv) OpenSnapshot(name string) (ingest.Device, error) {
	return openIngestDevice(dm.DevicePath(lvm.DMName(e.pool, name, lvm.LayerNone)))
}

func (e *ingestEnv) CheckFrozen(name, wantUUID string) error {
	k, err := dm.Open()
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer k.Close()
	lines, info, err := k.Status(lvm.DMName(e.pool, name, lvm.LayerNone))
	if err != nil {
		return fmt.Errorf("ingest: status of %s/%s: %w", e.pool, name, err)
	}
	if info.UUID != wantUUID {
		// Removed (and another made under its name) while unlocked.
		return fmt.Errorf("ingest: the frozen snapshot %s/%s was replaced during the copy (device uuid %q, want %q): refusing to commit it", e.pool, name, info.UUID, wantUUID)
	}
	if len(lines) != 1 {
		return fmt.Errorf("ingest: %s/%s has %d status lines, want 1", e.pool, name, len(lines))
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return fmt.Errorf("ingest: status of %s/%s: %w", e.pool, name, err)
	}
	if st.State != dm.SnapshotActive {
		return fmt.Errorf("ingest: the frozen snapshot %s/%s became %q during the copy (COW too small for the writes meanwhile; use a larger --cow): refusing to commit it", e.pool, name, lines[0].Params)
	}
	return nil
}

func (e *ingestEnv) OpenZvol(ctx context.Context, dataset string) (ingest.Zvol, error) {
	dev, err := (&zfs.Runner{}).ZvolDevice(ctx, dataset, 30*time.Second)
	if err != nil {
		return nil, err
	}
	// The zvol turns Zero's hole punching into a free of the range.
	return blockdev.OpenWriter(dev)
}

func (e *ingestEnv) Lineage(dataset string) (ingest.Lineage, bool, error) {
	st, err := loadState(e.gopts)
	if err != nil {
		return ingest.Lineage{}, false, err
	}
	l, ok := st.Ingest[dataset]
	return l, ok, nil
}

func (e *ingestEnv) SaveLineage(ctx context.Context, l ingest.Lineage) error {
	return updateState(ctx, e.gopts, func(st *state) error {
		if st.Ingest == nil {
			st.Ingest = map[string]ingest.Lineage{}
		}
		st.Ingest[l.Dataset] = l
		return nil
	})
}

func (e *ingestEnv) LineageHome() string { return e.gopts.statePath() }

// ingestPool is ingest.Pool over a snapSession.
type ingestPool struct {
	gopts *globalOptions
	s     *snapSession
}

func (p *ingestPool) OriginBytes(base string) (int64, error) {
	s, pool := p.s, p.s.Name
	origin := s.Opened.Store.Pool.Volume(base)
	if origin == nil {
		return 0, fmt.Errorf("origin %s/%s: %w", pool, base, lvm.ErrNotFound)
	}
	if origin.Kind == lvm.KindSnapshotCOW {
		return 0, usageErrorf("%s/%s is a snapshot; ingest its origin", pool, base)
	}
	if err := refuseRestoring(s.Opened.Store.Pool, base); err != nil {
		return 0, err
	}
	if _, err := s.Kernel.Info(lvm.DMName(pool, base, lvm.LayerNone)); err != nil {
		if errors.Is(err, dm.ErrNotFound) {
			return 0, fmt.Errorf("origin %s/%s is not active (dmsnap activate %s)", pool, base, pool)
		}
		return 0, fmt.Errorf("ingest: %w", err)
	}
	return int64(s.Opened.Store.Pool.Sectors(origin.Extents()).Bytes()), nil
}

func (p *ingestPool) Has(name string) bool { return p.s.Opened.Store.Pool.Volume(name) != nil }

func (p *ingestPool) COWExtents(base, cowSize string, chunkBytes int64) (uint64, error) {
	pl := p.s.Opened.Store.Pool
	size, err := parseCOWSize(cowSize, pl, pl.Volume(base))
	if err != nil {
		return 0, err
	}
	if min := lvm.MinCOWSize(dm.Sector(chunkBytes / 512)); size < min {
		size = min
	}
	n, _ := lvm.ExtentsFor(size, pl.ExtentSize)
	return uint64(n), nil
}

func (p *ingestPool) CreateFrozen(ctx context.Context, name, base string, cowExtents uint64, chunkBytes int64) (string, error) {
	s := p.s
	if _, err := lvm.CreateSnapshot(ctx, s.Opened.Store, s.env(p.gopts), lvm.SnapshotSpec{
		Name: name, Origin: base, COWExtents: lvm.ExtentCount(cowExtents), Store: dm.Persistent,
		ChunkSize: dm.Sector(chunkBytes / 512), ReadOnly: true}); err != nil {
		return "", fmt.Errorf("ingest: %w", err)
	}
	frozen := s.Opened.Store.Pool.Volume(name)
	return lvm.DMUUID(s.Opened.Store.Pool.UUID, frozen.UUID, lvm.LayerNone), nil
}

func (p *ingestPool) RemoveSnapshot(ctx context.Context, name string) error {
	_, err := lvm.RemoveSnapshotDevices(ctx, p.s.Opened.Store, p.s.env(p.gopts), name, false)
	return err
}

func (p *ingestPool) Close() { p.s.Close() }

// ingestDevice is a block device read with O_DIRECT only (the page cache
// could be stale).
type ingestDevice struct{ src *cowSource }

func openIngestDevice(path string) (ingest.Device, error) {
	src, err := openCowSourceDirect(path)
	if err != nil {
		return nil, err
	}
	return ingestDevice{src}, nil
}

func (d ingestDevice) ReadAt(b []byte, off int64) (int, error) { return d.src.ReadAt(b, off) }
func (d ingestDevice) Size() int64                             { return d.src.Size() }
func (d ingestDevice) Close() error                            { return d.src.Close() }
