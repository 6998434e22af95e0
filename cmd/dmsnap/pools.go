package main

import (
	"context"
	"fmt"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/pool"
	"github.com/urfave/cli/v2"
)

// The pool types and functions live in package pool; these names keep
// the commands' call sites short.
type (
	pvSource    = pool.Source
	foundPool   = pool.Found
	discovery   = pool.Discovery
	openedPool  = pool.Opened
	attachedPVs = pool.AttachedPVs
)

// host is the pool.Host of these options: their device and lock
// directories and the image files the state file remembers.
func (g *globalOptions) host() *pool.Host {
	return &pool.Host{DevDir: g.DevDir, LockDir: g.lockDir(), ImageHints: func() (map[string][]string, error) {
		st, err := loadState(g)
		if err != nil {
			return nil, err
		}
		hints := map[string][]string{}
		for name, p := range st.Pools {
			hints[name] = p.Images
		}
		return hints, nil
	}}
}

func classify(path string) (pvSource, error) { return pool.Classify(path) }
func discover(g *globalOptions, extra []string) (*discovery, error) {
	return g.host().Discover(extra)
}
func lockPool(g *globalOptions, name string, mode lock.Mode) (*lock.Lock, error) {
	return g.host().Lock(name, mode)
}
func errNoPool(d *discovery, name string) error { return pool.ErrNoPool(d, name) }
func openPool(g *globalOptions, name string, writable bool, extra []string) (*openedPool, error) {
	return g.host().Open(name, writable, extra)
}
func openPoolRemoving(g *globalOptions, name string, writable bool, extra []string) (*openedPool, error) {
	return g.host().OpenRemoving(name, writable, extra)
}
func loadFound(fp *foundPool, writable bool) (*openedPool, error) {
	return pool.LoadFound(fp, writable)
}
func devNumOf(path string) (dm.DevNum, error)                    { return pool.DevNumOf(path) }
func attachPVs(o *openedPool, dryRun bool) (*attachedPVs, error) { return pool.AttachPVs(o, dryRun) }
func volumeDevices(k lvm.Kernel, p, volume lvm.UUID) ([]lvm.KernelDevice, error) {
	return pool.VolumeDevices(k, p, volume)
}
func removeDevices(k lvm.Kernel, devs []lvm.KernelDevice) error { return pool.RemoveDevices(k, devs) }

// warn prints warnings on stderr unless --quiet.
func (g *globalOptions) warn(msgs ...string) {
	if g.Quiet {
		return
	}
	for _, m := range msgs {
		fmt.Fprintf(g.stderr, "dmsnap: warning: %s\n", m)
	}
}

func activateVolumes(ctx context.Context, k *dm.Client, p *lvm.Pool, devs map[lvm.UUID]dm.DevNum, volumes map[string]bool, opts lvm.ActivateOptions) ([]lvm.Action, []lvm.Warning, map[string]string, error) {
	return pool.ActivateVolumes(ctx, k, p, devs, volumes, opts)
}

// splitVolumePath splits POOL/NAME, or NAME in the default pool, into
// validated parts; mistakes are usage errors.
func splitVolumePath(g *globalOptions, arg string) (pool, volume string, err error) {
	pool, volume, err = lvm.SplitPath(arg)
	if err != nil {
		return "", "", usageError{err}
	}
	if pool == "" {
		if err := refusePoolName(g, volume); err != nil {
			return "", "", err
		}
		if pool, err = defaultPool(g); err != nil {
			return "", "", err
		}
	}
	return pool, volume, nil
}

// refusePoolName refuses a bare NAME that is a pool's name. lvcreate's
// habit, `lv create vg0 --size 1G`, names the pool where dmsnap wants a
// volume, and would otherwise make or remove vg0/vg0 in the default pool.
func refusePoolName(g *globalOptions, name string) error {
	st, err := loadState(g)
	if err != nil {
		return err
	}
	_, known := st.Pools[name]
	if !known {
		d, err := discover(g, nil)
		if err != nil {
			return err
		}
		known = poolNamed(d, name)
	}
	if known {
		return usageErrorf("%s is a pool, not a volume: write POOL/NAME (%s/NAME)", name, name)
	}
	return nil
}

// poolNamed reports whether some pool d found is called name (one or
// several: an ambiguous name is a pool's name too).
func poolNamed(d *discovery, name string) bool {
	for _, p := range d.Pools {
		if p.Name == name {
			return true
		}
	}
	return false
}

// sizeOf formats an extent count of p.
func sizeOf(p *lvm.Pool, n lvm.ExtentCount) string { return lvm.FormatSize(p.Sectors(n)) }

// withArgs adapts an action taking its arguments as a slice. Flags after
// the arguments were already moved in front of them by permuteArgs.
func withArgs(fn func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error { return fn(c, c.Args().Slice()) }
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func tail(args []string) []string {
	if len(args) < 2 {
		return nil
	}
	return args[1:]
}
