package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/dmsnap/dmsnap/monitor"
	"github.com/urfave/cli/v2"
)

// Where dmsnap keeps its state file, and the environment variables that
// override it and the default pool.
const (
	defaultConfigDir = "/etc/dmsnap"
	configDirEnv     = "DMSNAP_CONFIG_DIR"
	lockDirEnv       = "DMSNAP_LOCK_DIR"
	defaultPoolEnv   = "DMSNAP_POOL"
	stateFileName    = "pools.json"
	stateVersion     = 1
)

// state is the content of <config dir>/pools.json: hints, never the truth.
// The pool metadata on the PVs is authoritative; the state file only
// remembers which image files to attach after a reboot (a loop device does
// not survive one) and which pool commands use when none is named.
type state struct {
	Version     int                  `json:"version"`
	DefaultPool string               `json:"default_pool,omitempty"`
	Pools       map[string]statePool `json:"pools"`
	// Ingest is the lineage of `dmsnap ingest` per zvol dataset. It is
	// optional (files without it load) and lives here, not in the pool
	// metadata, whose strict decoder rejects unknown fields (docs/zfs.md).
	Ingest map[string]ingest.Lineage `json:"ingest,omitempty"`
	// Transfers are the last successful ingest and replication of each
	// origin (key: transferKey), which `dmsnap monitor` exports.
	Transfers map[string]stateTransfer `json:"transfers,omitempty"`
	// unknown holds the keys of a newer dmsnap, kept on rewrite
	// (state_keys.go).
	unknown map[string]json.RawMessage
}

// stateTransfer is one successful ZFS transfer, for the monitor's
// dmsnap_last_transfer_* metrics. Pool and Origin name the dmsnap volume
// whose data moved; a replicated dataset that no ingest fills has Pool ""
// and Origin the dataset.
type stateTransfer struct {
	Op     metrics.Transfer `json:"op"`
	Pool   string           `json:"pool"`
	Origin string           `json:"origin"`
	At     time.Time        `json:"at"`
	Bytes  uint64           `json:"bytes"`
}

func transferKey(t stateTransfer) string { return string(t.Op) + " " + t.Pool + "/" + t.Origin }

// recordTransfer notes a successful transfer in the state file. Failing
// to note it costs only a stale metric, so callers warn and go on.
func recordTransfer(ctx context.Context, gopts *globalOptions, t stateTransfer) {
	err := updateState(ctx, gopts, func(st *state) error {
		if st.Transfers == nil {
			st.Transfers = map[string]stateTransfer{}
		}
		st.Transfers[transferKey(t)] = t
		return nil
	})
	if err != nil {
		gopts.warn(fmt.Sprintf("the %s of %s/%s is done but not noted for dmsnap monitor: %v", t.Op, t.Pool, t.Origin, err))
	}
}

// statePool is what the state file remembers of one pool.
type statePool struct {
	UUID   lvm.UUID `json:"uuid"`
	Images []string `json:"images,omitempty"`
	// Autoextend is the pool's auto-extend policy for `dmsnap monitor`
	// (absent: the monitor's flags); see docs/decisions.md.
	Autoextend *monitor.Policy `json:"autoextend,omitempty"`
	// Removing: a pool remove of this pool has wiped, or is wiping, its
	// PVs; once none is found the entry is forgotten (settleRemoved).
	Removing bool `json:"removing,omitempty"`
	unknown  map[string]json.RawMessage
}

func (g *globalOptions) configDir() string {
	if g.ConfigDir != "" {
		return g.ConfigDir
	}
	if d := os.Getenv(configDirEnv); d != "" {
		return d
	}
	return defaultConfigDir
}

func (g *globalOptions) lockDir() string {
	if g.LockDir != "" {
		return g.LockDir
	}
	if d := os.Getenv(lockDirEnv); d != "" {
		return d
	}
	return lock.DefaultDir
}

func (g *globalOptions) statePath() string { return filepath.Join(g.configDir(), stateFileName) }

// loadState reads the state file; a missing file is an empty state.
func loadState(g *globalOptions) (*state, error) {
	st := &state{Version: stateVersion, Pools: map[string]statePool{}}
	// The state file names the images discovery opens: only root (or
	// this user) may be able to replace it.
	if err := lock.CheckDir(g.configDir()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state: %w", err)
	}
	b, err := os.ReadFile(g.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", g.statePath(), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: version %d: %w", g.statePath(), st.Version, lvm.ErrUnknownVersion)
	}
	if st.Pools == nil {
		st.Pools = map[string]statePool{}
	}
	return st, nil
}

// updateState applies fn to the state file under its own exclusive lock
// and replaces the file atomically (write, sync, rename, sync directory).
func updateState(ctx context.Context, g *globalOptions, fn func(*state) error) error {
	dir := g.configDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	l, err := lock.Acquire(ctx, filepath.Join(dir, stateFileName+".lock"), lock.Exclusive)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer l.Close()
	st, err := loadState(g)
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	for name, p := range st.Pools {
		sort.Strings(p.Images)
		st.Pools[name] = p
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, stateFileName+".tmp*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), g.statePath())
	}
	if err != nil {
		return errors.Join(fmt.Errorf("write state: %w", err), os.Remove(tmp.Name()))
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// rememberPool records a pool's image files (added to those known).
func rememberPool(ctx context.Context, g *globalOptions, name string, uuid lvm.UUID, images []string, makeDefault bool) error {
	return updateState(ctx, g, func(st *state) error {
		p := st.Pools[name]
		if p.UUID != uuid {
			p = statePool{UUID: uuid}
		}
		for _, img := range images {
			if !contains(p.Images, img) {
				p.Images = append(p.Images, img)
			}
		}
		st.Pools[name] = p
		if makeDefault {
			st.DefaultPool = name
		}
		return nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// defaultPool returns the pool to use when a command names none:
// $DMSNAP_POOL, else the state file's default. Commands of later issues
// (`dmsnap create base snap`) use it too.
func defaultPool(g *globalOptions) (string, error) {
	if p := os.Getenv(defaultPoolEnv); p != "" {
		if err := lvm.ValidateName("pool", p); err != nil {
			return "", usageErrorf("%s: %w", defaultPoolEnv, err)
		}
		return p, nil
	}
	st, err := loadState(g)
	if err != nil {
		return "", err
	}
	if st.DefaultPool == "" {
		return "", usageErrorf("no pool given and no default pool set (name one as POOL/NAME, set %s, or run `dmsnap config set default-pool NAME`)", defaultPoolEnv)
	}
	return st.DefaultPool, nil
}

// configOptions are the arguments of `dmsnap config`.
type configOptions struct {
	Key, Value string
	Unset      bool
}

func newConfigCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "show or change dmsnap's state file (default pool, remembered image files)",
		Description: "The state file (<config dir>/pools.json, default " + defaultConfigDir + ", env " + configDirEnv + ",\n" +
			"flag --config-dir) lists the image files of file-backed pools, so that `dmsnap activate`\n" +
			"finds them after a reboot, and the default pool. The pool metadata on the PVs stays\n" +
			"the source of truth.\n\n" + exitStatusHelp,
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "print the state file",
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) > 0 {
						return usageErrorf("config show takes no arguments")
					}
					return runConfigShow(gopts)
				}),
			},
			{
				Name:      "set",
				Usage:     "set a key: default-pool NAME",
				ArgsUsage: "KEY VALUE",
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 2 {
						return usageErrorf("config set needs KEY VALUE, got %d arguments", len(args))
					}
					return runConfigSet(c.Context, gopts, configOptions{Key: args[0], Value: args[1]})
				}),
			},
			{
				Name:      "unset",
				Usage:     "clear a key: default-pool",
				ArgsUsage: "KEY",
				Action: withArgs(func(c *cli.Context, args []string) error {
					if len(args) != 1 {
						return usageErrorf("config unset needs KEY, got %d arguments", len(args))
					}
					return runConfigSet(c.Context, gopts, configOptions{Key: args[0], Unset: true})
				}),
			},
		},
	}
}

func runConfigShow(gopts *globalOptions) error {
	st, err := loadState(gopts)
	if err != nil {
		return err
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, st)
	}
	fmt.Fprintf(gopts.stdout, "state file:   %s\n", gopts.statePath())
	fmt.Fprintf(gopts.stdout, "default-pool: %s\n", dashIfEmpty(st.DefaultPool))
	names := make([]string, 0, len(st.Pools))
	for n := range st.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := st.Pools[n]
		fmt.Fprintf(gopts.stdout, "pool %s (%s)\n", n, p.UUID)
		for _, img := range p.Images {
			fmt.Fprintf(gopts.stdout, "  image %s\n", img)
		}
	}
	return nil
}

func runConfigSet(ctx context.Context, gopts *globalOptions, opts configOptions) error {
	if opts.Key != "default-pool" {
		return usageErrorf("unknown config key %q (known: default-pool)", opts.Key)
	}
	if !opts.Unset {
		if err := lvm.ValidateName("pool", opts.Value); err != nil {
			return usageError{err}
		}
	}
	err := updateState(ctx, gopts, func(st *state) error {
		st.DefaultPool = opts.Value
		return nil
	})
	if err != nil {
		return err
	}
	if !gopts.Quiet {
		if opts.Unset {
			fmt.Fprintln(gopts.stderr, "default pool cleared")
		} else {
			fmt.Fprintf(gopts.stderr, "default pool is now %s\n", opts.Value)
		}
	}
	return nil
}
