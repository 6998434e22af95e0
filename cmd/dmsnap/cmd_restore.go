package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/blockdev"
	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/pool"
	"github.com/dmsnap/dmsnap/restore"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/urfave/cli/v2"
)

// restoreOptions are the arguments of `dmsnap restore`.
type restoreOptions struct {
	Snapshot string // ZPOOL/DATASET@SNAP
	Target   string // [POOL/]VOLUME
	Full     bool
	Verify   restore.Verify
	DryRun   bool
}

func newRestoreCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "copy a zvol snapshot back onto a volume: into a new one, over an existing one, or only what differs onto the ingest origin",
		ArgsUsage: "ZPOOL/DATASET@SNAP [POOL/]VOLUME",
		Description: "A VOLUME that does not exist is created with the zvol's volsize and written in full.\n" +
			"An existing VOLUME must have the zvol's size and be closed (not mounted, no process holding\n" +
			"it or its snapshots); before it is written, a snapshot <volume>-pre-restore-<UTC time> is\n" +
			"taken (COW sized for the planned bytes): `dmsnap merge POOL/<that snapshot>` undoes the\n" +
			"restore, `dmsnap remove POOL/<that snapshot>` keeps it. When VOLUME is the zvol's ingest\n" +
			"origin, only what can differ is copied: the origin's writes since the last ingest (the\n" +
			"cursor's COW) and the blocks ZFS changed between SNAP and the last ingest (zfs send -i);\n" +
			"the lineage must prove it (otherwise the restore is refused with the reason, and --full\n" +
			"copies everything). SNAP is read through a temporary read-only clone\n" +
			"<dataset>-dmsnap-restore. The copy writes through the volume's device, so the next ingest\n" +
			"stays incremental and correct.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "full", Usage: "copy the whole snapshot even onto the ingest origin"},
			&cli.BoolFlag{Name: "verify", Usage: "compare the restored ranges (sha256) and a sample of the rest with SNAP (default for differential restores)"},
			&cli.BoolFlag{Name: "no-verify", Usage: "do not compare the volume with SNAP after the copy"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan (full or differential, bytes, why); no lock, no change"},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 2 {
				return usageErrorf("restore needs ZPOOL/DATASET@SNAP [POOL/]VOLUME, got %d arguments", len(args))
			}
			opts := restoreOptions{Snapshot: args[0], Target: args[1], Full: c.Bool("full"), DryRun: c.Bool("dry-run")}
			switch {
			case c.Bool("verify") && c.Bool("no-verify"):
				return usageErrorf("--verify and --no-verify exclude each other")
			case c.Bool("verify"):
				opts.Verify = restore.VerifyOn
			case c.Bool("no-verify"):
				opts.Verify = restore.VerifyOff
			}
			return runRestore(c.Context, gopts, opts)
		}),
	}
}

// jsonRestore is the result of `dmsnap restore --json`.
type jsonRestore struct {
	Snapshot      string  `json:"snapshot"`
	GUID          uint64  `json:"guid"`
	Target        string  `json:"target"`
	DryRun        bool    `json:"dry_run"`
	Created       bool    `json:"created"`
	Differential  bool    `json:"differential"`
	Reason        string  `json:"reason"`
	PlanBytes     int64   `json:"plan_bytes"`
	SparseBytes   int64   `json:"sparse_bytes"`
	Ranges        int     `json:"ranges"`
	PreRestore    string  `json:"pre_restore,omitempty"`
	Resumed       string  `json:"resumed,omitempty"` // the SNAP of the interrupted restore this one finished
	Undo          string  `json:"undo,omitempty"`    // the command that rolls the restore back
	Keep          string  `json:"keep,omitempty"`    // the command that drops the pre-restore snapshot
	BytesRead     int64   `json:"bytes_read"`
	BytesWritten  int64   `json:"bytes_written"`
	BytesZeroed   int64   `json:"bytes_zeroed"`
	BytesSkipped  int64   `json:"bytes_skipped"`
	Verified      bool    `json:"verified"`
	VerifiedBytes int64   `json:"verified_bytes"`
	SampledBytes  int64   `json:"sampled_bytes"`
	Seconds       float64 `json:"seconds"`
}

func runRestore(ctx context.Context, gopts *globalOptions, opts restoreOptions) error {
	if _, err := restore.ParseSnapshot(opts.Snapshot); err != nil {
		return usageError{err}
	}
	poolName, volume, err := splitVolumePath(gopts, opts.Target)
	if err != nil {
		return err
	}
	r := &zfs.Runner{}
	obs := &restoreObserver{gopts: gopts}
	res, err := restore.Run(ctx, &restoreEnv{gopts: gopts, pool: poolName}, restore.Request{
		Snapshot: opts.Snapshot, Pool: poolName, Volume: volume, Full: opts.Full, Verify: opts.Verify, DryRun: opts.DryRun,
		Source:   &restore.ZFSSource{R: r, Open: openIngestDevice},
		Observer: obs, Failpoint: restoreFailpoint})
	if err != nil {
		return err
	}
	p := res.Plan
	out := jsonRestore{Snapshot: res.Snapshot, GUID: res.GUID, Target: res.Target, DryRun: res.DryRun, Created: res.Created,
		Differential: p.Differential, Reason: p.Reason, PlanBytes: p.Bytes(), SparseBytes: p.SparseBytes(), Ranges: len(p.Ranges),
		PreRestore: res.PreRestore, Resumed: res.Resumed, BytesRead: res.Stats.BytesRead, BytesWritten: res.Stats.BytesWritten,
		BytesZeroed: res.Stats.BytesZeroed, BytesSkipped: res.Stats.BytesSkipped,
		Verified: res.Verified, VerifiedBytes: res.VerifiedBytes, SampledBytes: res.SampledBytes, Seconds: res.Seconds}
	if res.PreRestore != "" {
		out.Undo, out.Keep = "dmsnap merge "+res.PreRestore, "dmsnap remove "+res.PreRestore
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, out)
	}
	w := gopts.stdout
	if res.DryRun {
		fmt.Fprintf(w, "would restore %s onto %s\n%s", res.Snapshot, res.Target, p.Describe())
		switch {
		case res.Created:
			fmt.Fprintf(w, "  %s would be created\n", res.Target)
		default:
			fmt.Fprintf(w, "  a pre-restore snapshot like %s would be taken first\n", res.PreRestore)
		}
		if res.Verified {
			fmt.Fprintln(w, "  the restored ranges and a sample of the rest would be verified against the snapshot")
		}
		return nil
	}
	kind := "full"
	if p.Differential {
		kind = "differential"
	}
	fmt.Fprintf(w, "restored %s onto %s: %s (%s), %d bytes read, %d written, %d zeroed, %d skipped as holes in %.3fs\n",
		res.Snapshot, res.Target, kind, p.Reason, out.BytesRead, out.BytesWritten, out.BytesZeroed, out.BytesSkipped, res.Seconds)
	if res.Verified {
		fmt.Fprintf(w, "verified: %d restored bytes and %d sampled bytes equal the snapshot's\n", res.VerifiedBytes, res.SampledBytes)
	}
	if res.PreRestore != "" {
		fmt.Fprintf(w, "undo with `%s` (rolls the volume back to before the restore); keep it with `%s`\n", out.Undo, out.Keep)
	}
	return nil
}

// Failpoints of restore (internal/failpoint).
const (
	fpRestoreAfterPreRestore = restore.FailpointAfterPreRestore
	fpRestoreMidCopy         = restore.FailpointMidCopy
	fpRestoreAfterCopy       = restore.FailpointAfterCopy
	fpRestoreAfterIntent     = restore.FailpointAfterIntent
	fpRestoreAfterVerify     = restore.FailpointAfterVerify
)

// restoreFailpoint fires the restore's failpoints; the mid-copy one also
// pauses.
func restoreFailpoint(name string) {
	failpoint.Hit(name)
	if name == fpRestoreMidCopy {
		failpoint.Pause(name)
	}
}

// restoreObserver prints a restore: notices and warnings on stderr
// unless --quiet, the copy's progress like ingest's.
type restoreObserver struct {
	gopts *globalOptions
	bp    *transferProgress
}

func (o *restoreObserver) Notice(msg string) {
	if !o.gopts.Quiet {
		fmt.Fprintf(o.gopts.stderr, "dmsnap: %s\n", msg)
	}
}

func (o *restoreObserver) Warn(msg string) { o.gopts.warn(msg) }

func (o *restoreObserver) CopyStart(target string, totalBytes int64) {
	o.bp = newTransferProgress(o.gopts, isTerminal(o.gopts.stderr), target,
		jsonTransferProgress{MessageType: "restore_progress", Dataset: target, EstimatedBytes: uint64(totalBytes)})
}

func (o *restoreObserver) CopyProgress(done, _ int64) { o.bp.Set(done) }

func (o *restoreObserver) CopyEnd(ok bool) { o.bp.finish(ok) }

// restoreEnv is restore.Env over pool sessions and the state file.
type restoreEnv struct {
	gopts *globalOptions
	pool  string
}

func (e *restoreEnv) LockDataset(dataset string) (io.Closer, error) {
	return lockDataset(e.gopts, dataset, lock.Exclusive)
}

// Lineage reads the lineage through ingest's Env, wherever that keeps it.
func (e *restoreEnv) Lineage(dataset string) (ingest.Lineage, bool, error) {
	return (&ingestEnv{gopts: e.gopts, pool: e.pool}).Lineage(dataset)
}

func (e *restoreEnv) OpenPool(_ context.Context, readOnly bool) (restore.Pool, error) {
	if readOnly {
		o, err := openPool(e.gopts, e.pool, false, nil)
		if err != nil {
			return nil, err
		}
		s := &pool.Session{Name: e.pool, Opened: o}
		if s.Kernel, err = dm.Open(); err != nil {
			return nil, errors.Join(err, s.Close())
		}
		return &restorePool{gopts: e.gopts, s: &snapSession{s}, readOnly: true}, nil
	}
	s, err := openSnapSession(e.gopts, e.pool, lock.Exclusive)
	if err != nil {
		return nil, err
	}
	return &restorePool{gopts: e.gopts, s: s}, nil
}

// restorePool is restore.Pool over a snapSession.
type restorePool struct {
	gopts    *globalOptions
	s        *snapSession
	readOnly bool
}

func (p *restorePool) Volume(name string) (int64, bool, error) {
	pl := p.s.Opened.Store.Pool
	v := pl.Volume(name)
	if v == nil {
		return 0, false, nil
	}
	if v.Kind == lvm.KindSnapshotCOW {
		return 0, false, usageErrorf("%s/%s is a snapshot: restore onto a volume", p.s.Name, name)
	}
	if _, err := p.s.Kernel.Info(lvm.DMName(p.s.Name, name, lvm.LayerNone)); err != nil {
		if errors.Is(err, dm.ErrNotFound) {
			return 0, false, fmt.Errorf("%s/%s is not active (dmsnap activate %s)", p.s.Name, name, p.s.Name)
		}
		return 0, false, err
	}
	return int64(pl.Sectors(v.Extents()).Bytes()), true, nil
}

func (p *restorePool) InUse(name string) (string, error) {
	pl := p.s.Opened.Store.Pool
	names := []string{name}
	if v := pl.Volume(name); v != nil {
		for _, sn := range pl.SnapshotsOf(v.UUID) {
			if c := pl.VolumeByUUID(sn.COW); c != nil {
				names = append(names, c.Name)
			}
		}
	}
	for _, n := range names {
		info, err := p.s.Kernel.Info(lvm.DMName(p.s.Name, n, lvm.LayerNone))
		if errors.Is(err, dm.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		if info.OpenCount > 0 {
			return fmt.Sprintf("%s/%s by %d", p.s.Name, n, info.OpenCount), nil
		}
	}
	return "", nil
}

func (p *restorePool) Has(name string) bool { return p.s.Opened.Store.Pool.Volume(name) != nil }

func (p *restorePool) CreateVolume(ctx context.Context, name string, sizeBytes int64) (int64, error) {
	s := p.s
	warns, err := lvm.SettleForAllocation(ctx, s.Opened.Store, s.env(p.gopts))
	p.gopts.warn(stringsOf(warns)...)
	if err != nil {
		return 0, err
	}
	pl := s.Opened.Store.Pool
	n, _ := lvm.ExtentsFor(dm.Sector((sizeBytes+511)/512), pl.ExtentSize)
	next, err := pl.AddVolume(name, n)
	if err != nil {
		return 0, err
	}
	if err := s.Opened.Store.Commit(next); err != nil {
		return 0, err
	}
	if _, _, _, err := s.Activate(ctx, map[string]bool{name: true}, lvm.ActivateOptions{Plan: lvm.PlanOptions{Partial: true}}); err != nil {
		return 0, fmt.Errorf("created %s/%s in the metadata, but activation failed (dmsnap activate %s): %w", s.Name, name, s.Name, err)
	}
	return int64(s.Opened.Store.Pool.Sectors(n).Bytes()), nil
}

func (p *restorePool) CreateSnapshot(ctx context.Context, name, origin string, cowBytes, chunkBytes int64) error {
	s := p.s
	pl := s.Opened.Store.Pool
	size := dm.Sector((cowBytes + 511) / 512)
	if m := lvm.MinCOWSize(dm.Sector(chunkBytes / 512)); size < m {
		size = m
	}
	n, _ := lvm.ExtentsFor(size, pl.ExtentSize)
	_, err := lvm.CreateSnapshot(ctx, s.Opened.Store, s.env(p.gopts), lvm.SnapshotSpec{
		Name: name, Origin: origin, COWExtents: n, Store: dm.Persistent, ChunkSize: dm.Sector(chunkBytes / 512)})
	return err
}

func (p *restorePool) OpenCOW(name string) (ingest.Device, error) {
	return openIngestDevice(dm.DevicePath(lvm.DMName(p.s.Name, name, lvm.LayerCOW)))
}

func (p *restorePool) OpenVolume(name string) (restore.Volume, error) {
	return blockdev.OpenWriter(dm.DevicePath(lvm.DMName(p.s.Name, name, lvm.LayerNone)))
}

func (p *restorePool) ReadVolume(name string) (ingest.Device, error) {
	return openIngestDevice(dm.DevicePath(lvm.DMName(p.s.Name, name, lvm.LayerNone)))
}

func (p *restorePool) Close() { p.s.Close() }
