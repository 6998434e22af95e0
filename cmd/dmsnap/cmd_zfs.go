package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/replicate"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/urfave/cli/v2"
)

// zfsEnv is what `zfs ls`, `zfs prune` and `replicate` get from outside,
// so tests can run them against a fake zfs.
type zfsEnv struct {
	// local runs zfs(8) on this host.
	local *zfs.Runner
	// remote returns the runner for an ssh destination (--to-host).
	remote func(dest string) *zfs.Runner
	// isTTY reports whether progress may draw a bar on stderr.
	isTTY bool
}

func defaultZFSEnv(gopts *globalOptions) zfsEnv {
	return zfsEnv{
		local: &zfs.Runner{},
		remote: func(dest string) *zfs.Runner {
			return &zfs.Runner{Via: sshVia(dest)}
		},
		isTTY: isTerminal(gopts.stderr),
	}
}

// sshVia is the argv prefix that runs a command on an ssh destination.
// BatchMode makes ssh fail at once where it would prompt for a password or
// passphrase: replicate under cron has no one to answer and would hang.
func sshVia(dest string) []string { return []string{"ssh", "-o", "BatchMode=yes", dest} }

// explainZFS is zfs.Explain.
func explainZFS(side string, err error) error { return zfs.Explain(side, err) }

// checkDatasetArg checks a DATASET argument (a dataset, not a snapshot or
// bookmark).
func checkDatasetArg(what, ds string) error {
	if err := zfs.CheckDatasetName(ds); err != nil {
		return usageErrorf("%s: %w (want POOL/DATASET; no @snapshot or #bookmark)", what, err)
	}
	return nil
}

// lockDataset takes dmsnap's lock of a ZFS dataset: replicate and prune
// take it exclusively, so prune never runs while a replication moves the
// #dmsnap-last-sent bookmark. The lock file is "zfs%POOL%DATASET.lock"
// next to the pool locks ('%' cannot occur in a dmsnap pool name).
func lockDataset(g *globalOptions, dataset string, mode lock.Mode) (*lock.Lock, error) {
	l, err := lock.TryAcquire(lock.Path(g.lockDir(), "zfs%"+strings.ReplaceAll(dataset, "/", "%")), mode)
	if errors.Is(err, lock.ErrLocked) {
		return nil, fmt.Errorf("dataset %s is in use by another dmsnap process (ingest, replicate or zfs prune): %w", dataset, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lock dataset %s: %w", dataset, err)
	}
	return l, nil
}

// replicationBase is a guid prune must keep, with why.
type replicationBase = replicate.Base

// sentProp is the replication record property of a target.
func sentProp(target string) string { return replicate.RecordProperty(target) }

// replicationBases returns the replication bases of dataset (replicate.Bases).
func replicationBases(ctx context.Context, r *zfs.Runner, dataset string, pts []zfs.Point) ([]replicationBase, error) {
	return replicate.Bases(ctx, r, dataset, pts)
}

// jsonZFSPoint is one snapshot or bookmark in `zfs ls --json` and `zfs
// prune --json`. GUIDs are strings: they use all 64 bits, more than a
// JSON number keeps in most parsers.
type jsonZFSPoint struct {
	Type      string `json:"type"` // snapshot, bookmark
	Name      string `json:"name"`
	GUID      uint64 `json:"guid,string"`
	CreateTXG uint64 `json:"createtxg"`
	// Creation is for people only (one-second resolution); order by
	// createtxg.
	Creation string `json:"creation"`
	Dmsnap   bool   `json:"dmsnap"`    // named by dmsnap (zfs.IsOurs)
	LastSent bool   `json:"last_sent"` // the #dmsnap-last-sent bookmark
	Base     bool   `json:"replication_base"`
}

func pointJSON(p zfs.Point, bases map[uint64]bool) jsonZFSPoint {
	return jsonZFSPoint{
		Type: p.Kind.String(), Name: p.Name, GUID: p.GUID, CreateTXG: p.CreateTXG,
		Creation: p.Creation.UTC().Format(time.RFC3339), Dmsnap: zfs.IsOurs(p),
		LastSent: p.Kind == zfs.Bookmark && p.Short() == zfs.LastSentBookmark, Base: bases[p.GUID],
	}
}

func (j jsonZFSPoint) flags() string {
	var f []string
	if j.Dmsnap {
		f = append(f, "dmsnap")
	}
	if j.LastSent {
		f = append(f, "last-sent")
	}
	if j.Base {
		f = append(f, "base")
	}
	if len(f) == 0 {
		return "-"
	}
	return strings.Join(f, ",")
}

const zfsDescription = `Snapshots and bookmarks of a ZFS dataset, and their retention. Points are ordered by
createtxg and identified by guid, never by name or creation time (docs/zfs.md).`

func newZFSCommand(gopts *globalOptions) *cli.Command {
	return newZFSCommandWith(gopts, func() zfsEnv { return defaultZFSEnv(gopts) })
}

func newZFSCommandWith(gopts *globalOptions, env func() zfsEnv) *cli.Command {
	return &cli.Command{
		Name:        "zfs",
		Usage:       "list and prune the snapshots and bookmarks of a ZFS dataset",
		Description: zfsDescription,
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "snapshots and bookmarks in createtxg order, with guids",
				ArgsUsage: "DATASET",
				Description: "Columns: TYPE, NAME, GUID, CREATETXG, CREATION (for people: one-second resolution) and\n" +
					"FLAGS: dmsnap (a name dmsnap makes), last-sent (the #dmsnap-last-sent bookmark), base (a\n" +
					"replication base: the last-sent guid or one recorded for a target; zfs prune keeps it and\n" +
					"everything newer). Sorted by createtxg; a snapshot comes before its bookmarks. Read-only.\n\n" +
					exitStatusHelp,
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("zfs ls needs one DATASET, got %d arguments", len(args))
					}
					return runZFSList(c.Context, gopts, env(), args[0])
				}),
			},
			{
				Name:      "prune",
				Usage:     "destroy old dmsnap snapshots and bookmarks, never a replication base or anything newer",
				ArgsUsage: "DATASET --keep N [--keep-bookmarks M] [--dry-run]",
				Description: "Keeps the newest N dmsnap snapshots (N >= 1: the newest one is ingest's rollback point)\n" +
					"and, with --keep-bookmarks, the newest M dmsnap bookmarks (without it no bookmark is\n" +
					"pruned). Never destroys: a replication base (the guid of #dmsnap-last-sent and every guid\n" +
					"replicate recorded for a target in a dmsnap:sent-* property), anything newer than the\n" +
					"oldest base, #dmsnap-last-sent itself, or a point whose name dmsnap did not make.\n" +
					"--dry-run prints what would go and changes nothing.\n\n" + exitStatusHelp,
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "keep", Usage: "newest dmsnap snapshots to keep, at least 1", DefaultText: "required"},
					&cli.IntFlag{Name: "keep-bookmarks", Usage: "newest dmsnap bookmarks to keep", DefaultText: "all"},
					&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be destroyed"},
				},
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("zfs prune needs one DATASET, got %d arguments", len(args))
					}
					if !c.IsSet("keep") {
						return usageErrorf("zfs prune: --keep N is required (N >= 1)")
					}
					opts := zfsPruneOptions{Dataset: args[0], Keep: c.Int("keep"), KeepBookmarks: -1, DryRun: c.Bool("dry-run")}
					if c.IsSet("keep-bookmarks") {
						opts.KeepBookmarks = c.Int("keep-bookmarks")
						if opts.KeepBookmarks < 0 {
							return usageErrorf("--keep-bookmarks %d: must be 0 or more", opts.KeepBookmarks)
						}
					}
					return runZFSPrune(c.Context, gopts, env(), opts)
				}),
			},
		},
	}
}

// jsonZFSList is the result of `zfs ls --json`.
type jsonZFSList struct {
	Dataset string            `json:"dataset"`
	Points  []jsonZFSPoint    `json:"points"`
	Bases   []replicationBase `json:"replication_bases"`
}

func runZFSList(ctx context.Context, gopts *globalOptions, env zfsEnv, dataset string) error {
	if err := checkDatasetArg("zfs ls", dataset); err != nil {
		return err
	}
	r := env.local
	pts, err := r.Points(ctx, dataset)
	if err != nil {
		return explainZFS("", err)
	}
	bases, err := replicationBases(ctx, r, dataset, pts)
	if err != nil && !errors.Is(err, zfs.ErrDatasetNotFound) {
		return explainZFS("", err)
	}
	if err != nil {
		gopts.warn(err.Error())
	}
	isBase := map[uint64]bool{}
	for _, b := range bases {
		isBase[b.GUID] = true
	}
	res := jsonZFSList{Dataset: dataset, Points: []jsonZFSPoint{}, Bases: bases}
	if res.Bases == nil {
		res.Bases = []replicationBase{}
	}
	for _, p := range pts {
		res.Points = append(res.Points, pointJSON(p, isBase))
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, res)
	}
	tw := tabwriter.NewWriter(gopts.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tNAME\tGUID\tCREATETXG\tCREATION\tFLAGS")
	for _, j := range res.Points {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", j.Type, j.Name, j.GUID, j.CreateTXG, j.Creation, j.flags())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, b := range bases {
		fmt.Fprintf(gopts.stdout, "replication base: guid %d (createtxg %d), %s\n", b.GUID, b.CreateTXG, b.Source)
	}
	return nil
}

// Failpoints of zfs prune (internal/failpoint).
const (
	fpZFSPruneAfterPlan    = "zfs.prune.after-plan"    // lock held, bases read, points to destroy chosen, none destroyed
	fpZFSPruneAfterDestroy = "zfs.prune.after-destroy" // a snapshot or bookmark destroyed (fires per point, oldest first)
)

// zfsPruneOptions are the arguments of `dmsnap zfs prune`.
type zfsPruneOptions struct {
	Dataset       string
	Keep          int
	KeepBookmarks int // -1: prune no bookmark
	DryRun        bool
}

// jsonZFSPrune is the result of `zfs prune --json`.
type jsonZFSPrune struct {
	Dataset       string            `json:"dataset"`
	DryRun        bool              `json:"dry_run"`
	Keep          int               `json:"keep"`
	KeepBookmarks *int              `json:"keep_bookmarks"` // null: bookmarks not pruned
	Protected     []replicationBase `json:"protected"`
	Destroy       []jsonZFSPoint    `json:"destroy"` // destroyed, or would be with dry_run
	Failed        []jsonPruneFail   `json:"failed"`
}

type jsonPruneFail struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

func runZFSPrune(ctx context.Context, gopts *globalOptions, env zfsEnv, opts zfsPruneOptions) error {
	if err := checkDatasetArg("zfs prune", opts.Dataset); err != nil {
		return err
	}
	if opts.Keep < 1 {
		return usageErrorf("--keep %d: must be at least 1 (the newest dmsnap snapshot is ingest's rollback point and the next replication's base)", opts.Keep)
	}
	r := env.local
	if !opts.DryRun {
		l, err := lockDataset(gopts, opts.Dataset, lock.Exclusive)
		if err != nil {
			return err
		}
		defer l.Close()
	}
	pts, err := r.Points(ctx, opts.Dataset)
	if err != nil {
		return explainZFS("", err)
	}
	bases, err := replicationBases(ctx, r, opts.Dataset, pts)
	if err != nil {
		return explainZFS("", err)
	}
	policy := replicate.Retention{KeepSnapshots: opts.Keep, KeepBookmarks: opts.KeepBookmarks}
	if opts.KeepBookmarks < 0 {
		policy.KeepBookmarks = len(pts) // every bookmark
	}
	isBase := map[uint64]bool{}
	for _, b := range bases {
		policy.Protect = append(policy.Protect, b.GUID)
		isBase[b.GUID] = true
	}
	doomed, err := replicate.Prune(pts, policy)
	if err != nil {
		return err
	}
	res := jsonZFSPrune{Dataset: opts.Dataset, DryRun: opts.DryRun, Keep: opts.Keep, Protected: bases,
		Destroy: []jsonZFSPoint{}, Failed: []jsonPruneFail{}}
	if res.Protected == nil {
		res.Protected = []replicationBase{}
	}
	if opts.KeepBookmarks >= 0 {
		res.KeepBookmarks = &opts.KeepBookmarks
	}
	out := gopts.stdout
	if !gopts.JSON {
		for _, b := range bases {
			fmt.Fprintf(out, "keeping replication base guid %d (createtxg %d, %s) and everything newer\n", b.GUID, b.CreateTXG, b.Source)
		}
	}
	// Crash safety: each destroy is one ZFS transaction, the doomed
	// points go oldest first (createtxg order, as zfs.Prune returns
	// them), and none is a replication base or newer than the oldest
	// base. A kill at any point leaves the dataset as this prune with
	// only its oldest k points destroyed: every base's snapshot and
	// bookmarks and the replication records intact, the dataset lock
	// released with the process. Run again with the same flags, prune plans
	// exactly the points left (the kept windows are the newest points,
	// which it never destroyed) and destroys them.
	if !opts.DryRun {
		failpoint.Hit(fpZFSPruneAfterPlan)
	}
	var errs []error
	for _, p := range doomed {
		if !opts.DryRun {
			if err := r.Destroy(ctx, p.Name); err != nil {
				res.Failed = append(res.Failed, jsonPruneFail{Name: p.Name, Error: err.Error()})
				errs = append(errs, err)
				if !gopts.JSON {
					fmt.Fprintf(out, "failed to destroy %s: %v\n", p.Name, err)
				}
				continue
			}
			failpoint.Hit(fpZFSPruneAfterDestroy)
		}
		res.Destroy = append(res.Destroy, pointJSON(p, isBase))
		if !gopts.JSON {
			verb := "destroyed"
			if opts.DryRun {
				verb = "would destroy"
			}
			fmt.Fprintf(out, "%s %s %s (guid %d, createtxg %d)\n", verb, p.Kind, p.Name, p.GUID, p.CreateTXG)
		}
	}
	if !gopts.JSON && len(doomed) == 0 {
		fmt.Fprintf(out, "nothing to prune in %s\n", opts.Dataset)
	}
	if gopts.JSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	}
	switch {
	case len(errs) == 0:
		return nil
	case len(res.Destroy) > 0:
		return partialError{fmt.Errorf("prune %s: destroyed %d, %d failed: %w", opts.Dataset, len(res.Destroy), len(errs), errors.Join(errs...))}
	default:
		return fmt.Errorf("prune %s: %w", opts.Dataset, errors.Join(errs...))
	}
}
