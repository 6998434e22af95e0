package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/pool"
	"github.com/urfave/cli/v2"
)

// snapCreateOptions are the arguments of `dmsnap create`.
type snapCreateOptions struct {
	Origin                string // [POOL/]BASE
	Name                  string // SNAP
	COW                   string // SIZE or N%ORIGIN / N%FREE
	Store                 dm.StoreType
	ChunkSize             string
	DiscardZeroesCOW      bool
	DiscardPassdownOrigin bool
	ReadOnly              bool
}

// Kernel versions of snapshot target features (K:drivers/md/dm-snap.c).
var (
	snapTargetDiscard  = dm.Version{Major: 1, Minor: 16}
	snapTargetOverflow = dm.Version{Major: 1, Minor: 15}
)

func newCreateCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "take a snapshot of a volume: dmsnap create base snap --cow 100M --persistent",
		ArgsUsage: "[POOL/]BASE SNAP",
		Description: "Builds LVM2's layout: the first snapshot turns <pool>-<base> into a snapshot-origin over\n" +
			"a new <pool>-<base>-real (the old linear table) and adds <pool>-<snap>-cow (linear over\n" +
			"the COW extents, taken from the pool) and <pool>-<snap> (snapshot <real> <cow> P|N|PO\n" +
			"<chunk> [features]). The origin keeps its name, device number and UUID; it is suspended\n" +
			"only for the table swap (--verbose prints the window). Store: --persistent (P, the\n" +
			"default), --transient (N, lost at deactivation), --overflow (PO: a snapshot filled by\n" +
			"its own writes reports Overflow instead of becoming invalid). --cow takes a size (100M)\n" +
			"or a percentage of the origin (20%ORIGIN) or of the pool's free space (50%FREE). The COW\n" +
			"must hold at least 3 chunks (header, metadata area, data).\n\n" + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cow", Aliases: []string{"L"}, Usage: "COW size: 100M, 20%ORIGIN, 50%FREE"},
			&cli.BoolFlag{Name: "persistent", Aliases: []string{"P"}, Usage: "persistent store P (default)", DisableDefaultText: true},
			&cli.BoolFlag{Name: "transient", Aliases: []string{"N"}, Usage: "transient store N (in memory; not restored after deactivation)"},
			&cli.BoolFlag{Name: "overflow", Usage: "persistent store PO (Overflow instead of Invalid when filled through the snapshot)"},
			&cli.StringFlag{Name: "chunksize", Aliases: []string{"c"}, Value: "4K", Usage: "chunk size, a power of two from 4K to 512K"},
			&cli.BoolFlag{Name: "discard-zeroes-cow", Usage: "a discard to the snapshot frees its exception (Linux 5.3+)"},
			&cli.BoolFlag{Name: "discard-passdown-origin", Usage: "pass discards to the snapshot down to the origin (needs --discard-zeroes-cow)"},
			&cli.BoolFlag{Name: "readonly", Usage: "make the snapshot device read-only"},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 2 {
				return usageErrorf("create needs [POOL/]BASE SNAP, got %d arguments", len(args))
			}
			store := dm.Persistent
			n := 0
			for flag, st := range map[string]dm.StoreType{"persistent": dm.Persistent, "transient": dm.Transient, "overflow": dm.PersistentOverflow} {
				if c.Bool(flag) {
					store = st
					n++
				}
			}
			if n > 1 {
				return usageErrorf("--persistent, --transient and --overflow exclude each other")
			}
			return runCreate(c.Context, gopts, snapCreateOptions{
				Origin: args[0], Name: args[1], COW: c.String("cow"), Store: store, ChunkSize: c.String("chunksize"),
				DiscardZeroesCOW: c.Bool("discard-zeroes-cow"), DiscardPassdownOrigin: c.Bool("discard-passdown-origin"),
				ReadOnly: c.Bool("readonly"),
			})
		}),
	}
}

// snapSession is a pool opened for a snapshot change: locked, loaded
// (read-write under an exclusive lock), device-mapper open and, under an
// exclusive lock, PVs attached.
type snapSession struct{ *pool.Session }

func openSnapSession(gopts *globalOptions, pool string, mode lock.Mode) (*snapSession, error) {
	l, err := lockPool(gopts, pool, mode)
	if err != nil {
		return nil, err
	}
	return openSnapSessionLocked(gopts, pool, l, mode)
}

// openSnapSessionLocked is openSnapSession with the pool's lock l already
// taken; it takes ownership of l (closed with the session, or at once on
// error).
func openSnapSessionLocked(gopts *globalOptions, name string, l *lock.Lock, mode lock.Mode) (*snapSession, error) {
	s, err := gopts.host().SessionLocked(name, l, pool.SessionOptions{
		Mode: mode, Kernel: true, AttachPVs: mode == lock.Exclusive, Warn: gopts.warn,
	})
	if err != nil {
		return nil, err
	}
	return &snapSession{s}, nil
}

func (s *snapSession) env(gopts *globalOptions) lvm.SnapshotEnv {
	s.Logf = gopts.stepLog()
	return s.SnapshotEnv()
}

// stepLog is the log of snapshot steps for --verbose, nil without it.
func (g *globalOptions) stepLog() func(format string, args ...any) {
	if !g.Verbose || g.Quiet {
		return nil
	}
	return func(format string, args ...any) {
		fmt.Fprintf(g.stderr, "dmsnap: "+format+"\n", args...)
	}
}

// snapPath splits the snapshot argument: NAME, or POOL/NAME in pool.
func snapPath(gopts *globalOptions, arg, pool string) (string, string, error) {
	p, name, err := lvm.SplitPath(arg)
	if err != nil {
		return "", "", usageError{err}
	}
	if p == "" {
		if pool != "" {
			return pool, name, nil
		}
		return splitVolumePath(gopts, arg)
	}
	if pool != "" && p != pool {
		return "", "", usageErrorf("a snapshot lives in its origin's pool %s, not %s", pool, p)
	}
	return p, name, nil
}

// parseChunk parses --chunksize; the error is a usage error.
func parseChunk(s string) (dm.Sector, error) {
	n, err := lvm.ParseSize(s)
	if err != nil {
		return 0, usageErrorf("--chunksize: %w", err)
	}
	if dm.CheckChunkSectors(n) != nil {
		return 0, usageErrorf("--chunksize %s: must be a power of two from 4K to 512K", s)
	}
	return n, nil
}

// parseCOWSize parses --cow: a size, N%ORIGIN or N%FREE.
// checkCOWSyntax checks --cow without a pool: a size, or a percentage of
// ORIGIN or FREE.
func checkCOWSyntax(s string) error {
	if s == "" {
		return usageErrorf("--cow is required (a size such as 100M, or 20%%ORIGIN)")
	}
	num, base, ok := strings.Cut(s, "%")
	if !ok {
		_, err := parseCOWSize(s, nil, nil)
		return err
	}
	if pct, ok := new(big.Rat).SetString(num); !ok || pct.Sign() <= 0 || pct.Cmp(big.NewRat(100, 1)) > 0 {
		return usageErrorf("--cow %s: want a percentage from 0 to 100, e.g. 20%%ORIGIN", s)
	}
	if b := strings.ToUpper(base); b != "ORIGIN" && b != "FREE" {
		return usageErrorf("--cow %s: a percentage must be of ORIGIN or FREE", s)
	}
	return nil
}

func parseCOWSize(s string, p *lvm.Pool, origin *lvm.Volume) (dm.Sector, error) {
	if s == "" {
		return 0, usageErrorf("--cow is required (a size such as 100M, or 20%%ORIGIN)")
	}
	if num, base, ok := strings.Cut(s, "%"); ok {
		pct, ok := new(big.Rat).SetString(num)
		if !ok || pct.Sign() <= 0 || pct.Cmp(big.NewRat(100, 1)) > 0 {
			return 0, usageErrorf("--cow %s: want a percentage from 0 to 100, e.g. 20%%ORIGIN", s)
		}
		var of dm.Sector
		switch strings.ToUpper(base) {
		case "ORIGIN":
			of = p.Sectors(origin.Extents())
		case "FREE":
			of = p.Sectors(p.FreeExtents())
		default:
			return 0, usageErrorf("--cow %s: a percentage must be of ORIGIN or FREE", s)
		}
		v := new(big.Rat).Mul(pct, new(big.Rat).SetInt64(int64(of)))
		v.Quo(v, big.NewRat(100, 1))
		n := new(big.Int).Quo(v.Num(), v.Denom())
		if n.Sign() == 0 {
			return 0, usageErrorf("--cow %s is 0 sectors", s)
		}
		return dm.Sector(n.Uint64()), nil
	}
	n, err := lvm.ParseSize(s)
	if err != nil {
		return 0, usageErrorf("--cow: %w", err)
	}
	return n, nil
}

// checkSnapshotFeatures refuses features the kernel's snapshot target is
// too old for, naming the version needed.
func checkSnapshotFeatures(have dm.Version, opts snapCreateOptions) error {
	if (opts.DiscardZeroesCOW || opts.DiscardPassdownOrigin) && !have.AtLeast(snapTargetDiscard) {
		return fmt.Errorf("discard features need the snapshot target %s (Linux 5.3 or newer); this kernel has %s: %w",
			snapTargetDiscard, have, dm.ErrNotSupported)
	}
	if opts.Store == dm.PersistentOverflow && !have.AtLeast(snapTargetOverflow) {
		return fmt.Errorf("--overflow (PO) needs the snapshot target %s; this kernel has %s: %w", snapTargetOverflow, have, dm.ErrNotSupported)
	}
	return nil
}

// snapshotTargetVersion asks the kernel for the snapshot target's version.
func snapshotTargetVersion(k *dm.Client) (dm.Version, error) {
	tv, err := k.TargetVersion(dm.TypeSnapshot)
	if err == nil {
		return tv.Version, nil
	}
	if !errors.Is(err, dm.ErrNotSupported) {
		return dm.Version{}, err
	}
	all, lerr := k.TargetVersions()
	if lerr != nil {
		return dm.Version{}, lerr
	}
	for _, t := range all {
		if t.Name == dm.TypeSnapshot {
			return t.Version, nil
		}
	}
	return dm.Version{}, fmt.Errorf("the kernel has no snapshot target (load dm-snapshot): %w", dm.ErrNotSupported)
}

type jsonSnapCreate struct {
	Pool             string  `json:"pool"`
	Name             string  `json:"name"`
	Origin           string  `json:"origin"`
	COWBytes         uint64  `json:"cow_bytes"`
	Store            string  `json:"store"`
	ChunkBytes       uint64  `json:"chunk_bytes"`
	Active           bool    `json:"active"`
	Device           string  `json:"device"`
	SuspendedSeconds float64 `json:"origin_suspended_seconds"`
}

func runCreate(ctx context.Context, gopts *globalOptions, opts snapCreateOptions) error {
	// Flags first: a mistake in them is reported before any pool is
	// looked up or locked.
	chunk, err := parseChunk(opts.ChunkSize)
	if err != nil {
		return err
	}
	if opts.DiscardPassdownOrigin && !opts.DiscardZeroesCOW {
		return usageErrorf("--discard-passdown-origin needs --discard-zeroes-cow (the kernel refuses it alone)")
	}
	if err := checkCOWSyntax(opts.COW); err != nil {
		return err
	}
	pool, base, err := splitVolumePath(gopts, opts.Origin)
	if err != nil {
		return err
	}
	_, name, err := snapPath(gopts, opts.Name, pool)
	if err != nil {
		return err
	}
	s, err := openSnapSession(gopts, pool, lock.Exclusive)
	if err != nil {
		return err
	}
	defer s.Close()
	p := s.Opened.Store.Pool
	origin := p.Volume(base)
	if origin == nil {
		return fmt.Errorf("origin %s/%s: %w", pool, base, lvm.ErrNotFound)
	}
	if origin.Kind == lvm.KindSnapshotCOW {
		return usageErrorf("%s/%s is a snapshot; classic dm snapshots do not stack: snapshot its origin instead", pool, base)
	}
	size, err := parseCOWSize(opts.COW, p, origin)
	if err != nil {
		return err
	}
	if min := lvm.MinCOWSize(chunk); size < min {
		return usageErrorf("--cow %s is smaller than the minimum %s for chunk size %s (%d chunks: header, metadata area, data)",
			opts.COW, lvm.FormatSize(min), lvm.FormatSize(chunk), lvm.MinSnapshotChunks)
	}
	if opts.DiscardZeroesCOW || opts.Store == dm.PersistentOverflow {
		v, err := snapshotTargetVersion(s.Kernel)
		if err != nil {
			return err
		}
		if err := checkSnapshotFeatures(v, opts); err != nil {
			return err
		}
	}
	n, rounded := lvm.ExtentsFor(size, p.ExtentSize)
	if rounded && !gopts.Quiet {
		fmt.Fprintf(gopts.stderr, "dmsnap: COW size %s rounded up to %s (%d extents of %s)\n", opts.COW, sizeOf(p, n), n, lvm.FormatSize(p.ExtentSize))
	}
	spec := lvm.SnapshotSpec{
		Name: name, Origin: base, COWExtents: n, Store: opts.Store, ChunkSize: chunk,
		DiscardZeroesCOW: opts.DiscardZeroesCOW, DiscardPassdownOrigin: opts.DiscardPassdownOrigin, ReadOnly: opts.ReadOnly,
	}
	res, err := lvm.CreateSnapshot(ctx, s.Opened.Store, s.env(gopts), spec)
	if err != nil {
		return err
	}
	dev := dm.DevicePath(lvm.DMName(pool, name, lvm.LayerNone))
	if res.Active {
		if info, err := s.Kernel.Info(lvm.DMName(pool, name, lvm.LayerNone)); err == nil {
			if node, err := dm.EnsureNode(ctx, info); err == nil {
				dev = node
			}
		}
	}
	if gopts.Verbose && !gopts.Quiet && res.Active {
		fmt.Fprintf(gopts.stderr, "dmsnap: origin %s/%s was suspended for %s\n", pool, base, res.Suspended.Round(time.Microsecond))
	}
	out := jsonSnapCreate{Pool: pool, Name: name, Origin: base, COWBytes: p.Sectors(n).Bytes(), Store: string(opts.Store),
		ChunkBytes: chunk.Bytes(), Active: res.Active, Device: dev, SuspendedSeconds: res.Suspended.Seconds()}
	if gopts.JSON {
		return writeJSON(gopts.stdout, out)
	}
	fmt.Fprintf(gopts.stdout, "created snapshot %s/%s of %s/%s: COW %s, store %s, chunk %s", pool, name, pool, base,
		sizeOf(p, n), opts.Store, lvm.FormatSize(chunk))
	if res.Active {
		fmt.Fprintf(gopts.stdout, ", device %s\n", dev)
	} else {
		fmt.Fprintf(gopts.stdout, " (origin inactive: devices come with dmsnap activate %s)\n", pool)
	}
	return nil
}

// settleSnapshots finishes or rolls back interrupted snapshot operations
// and drops lost transient snapshots before activation, committing the
// result. It returns what it did.
func settleSnapshots(ctx context.Context, k *dm.Client, o *openedPool, devs map[lvm.UUID]dm.DevNum) ([]string, error) {
	p := o.Store.Pool
	next, warns, err := lvm.RecoverSnapshots(ctx, k, p, lvm.SnapshotEnv{Kernel: k, Devs: devs})
	if err != nil {
		return nil, err
	}
	out := stringsOf(warns)
	if next != p {
		if len(o.Store.Missing) > 0 {
			return append(out, "snapshot metadata not updated: PVs are missing"), nil
		}
		if err := o.Store.Commit(next); err != nil {
			return out, err
		}
	}
	return out, nil
}
