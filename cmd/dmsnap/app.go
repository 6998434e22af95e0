package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// globalOptions are the flags every command sees. They are copied out of the
// cli.Context once, so commands never read flags themselves.
type globalOptions struct {
	JSON    bool
	Quiet   bool
	Verbose bool
	// ConfigDir holds the state file (pools.json); LockDir the pool
	// locks; DevDir is searched for PVs. Empty means the default.
	ConfigDir string
	LockDir   string
	DevDir    string

	stdout io.Writer // results
	stderr io.Writer // progress and diagnostics
}

// run executes dmsnap with args and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	gopts := &globalOptions{stdout: stdout, stderr: stderr}
	app := newApp(gopts)
	err := app.RunContext(ctx, permuteArgs(app, args))
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", errInterrupted, err)
	}
	code := exitCode(err)
	if err != nil {
		printError(gopts, err, code)
	}
	return code
}

func newApp(gopts *globalOptions) *cli.App {
	app := &cli.App{
		Name:  "dmsnap",
		Usage: "device-mapper snapshots of LVM-style volumes, bridged into ZFS",
		Description: "dmsnap drives the kernel's device-mapper directly (no dmsetup) to build\n" +
			"snapshot-origin, snapshot and snapshot-merge devices.\n\n" +
			exitStatusHelp,
		Writer:    gopts.stdout,
		ErrWriter: gopts.stderr,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print results (and errors) as JSON with a stable schema"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print no progress or diagnostics"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "explain each step on stderr"},
			&cli.StringFlag{Name: "config-dir", Usage: "directory of the state file pools.json (default $" + configDirEnv + ", else " + defaultConfigDir + ")"},
			&cli.StringFlag{Name: "lock-dir", Usage: "directory of the pool lock files (default $" + lockDirEnv + ", else /run/dmsnap)"},
			&cli.BoolFlag{Name: "version", Usage: "print the version (as the version command) and exit"},
			&cli.StringFlag{Name: "dev-dir", Usage: "directory searched for PV block devices", Value: "/dev", Hidden: true},
		},
		Before: func(c *cli.Context) error {
			gopts.JSON = c.Bool("json")
			gopts.Quiet = c.Bool("quiet")
			gopts.Verbose = c.Bool("verbose")
			gopts.ConfigDir = c.String("config-dir")
			gopts.LockDir = c.String("lock-dir")
			gopts.DevDir = c.String("dev-dir")
			return nil
		},
		Commands: []*cli.Command{
			newDMCommand(gopts),
			newPoolCommand(gopts),
			newLVCommand(gopts),
			newActivateCommand(gopts),
			newDeactivateCommand(gopts),
			newConfigCommand(gopts),
			newCowCommand(gopts),
			newDiffCommand(gopts),
			newCreateCommand(gopts),
			newLsCommand(gopts),
			newStatusCommand(gopts),
			newRemoveCommand(gopts),
			newExtendCommand(gopts),
			newRenameCommand(gopts),
			newMergeCommand(gopts),
			newMonitorCommand(gopts),
			newIngestCommand(gopts),
			newRestoreCommand(gopts),
			newZFSCommand(gopts), newReplicateCommand(gopts),
			newVersionCommand(gopts),
		},
		// urfave/cli would otherwise call os.Exit from inside Run for
		// ExitCoder errors; exit statuses are decided in exitCode only.
		ExitErrHandler:         func(*cli.Context, error) {},
		OnUsageError:           onUsageError,
		HideVersion:            true,
		UseShortOptionHandling: true,
		Suggest:                true,
	}
	groupAction := unknownCommand("dmsnap")
	app.Action = func(c *cli.Context) error {
		if c.Bool("version") && !c.Args().Present() {
			return runVersion(gopts, openRealDM)
		}
		return groupAction(c)
	}
	setUsageHandlers(app.Commands)
	for _, c := range app.Commands {
		c.Category = commandCategory[c.Name]
	}
	return app
}

// commandCategory groups the commands in `dmsnap --help`; urfave/cli
// lists the groups in alphabetical order.
var commandCategory = map[string]string{
	"pool": "Pools", "activate": "Pools", "deactivate": "Pools", "config": "Pools",
	"lv":     "Volumes",
	"create": "Snapshots", "ls": "Snapshots", "status": "Snapshots", "remove": "Snapshots", "extend": "Snapshots", "rename": "Snapshots",
	"merge": "Merge",
	"cow":   "COW stores", "diff": "COW stores",
	"ingest": "ZFS", "restore": "ZFS", "zfs": "ZFS", "replicate": "ZFS",
	"monitor": "Monitoring", "dm": "Monitoring", "version": "Monitoring",
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError{flagError(c, err)}
}

// setUsageHandlers makes every subcommand report flag errors as usage errors
// (exit status 2).
// A command group run without a known subcommand is a usage error too.
func setUsageHandlers(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = unknownCommand("dmsnap " + c.Name)
		}
		setUsageHandlers(c.Subcommands)
	}
}

// unknownCommand is the action of a command group: it names the unknown
// subcommand, or shows the group's help when none was given, and exits 2.
func unknownCommand(path string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			name := c.Args().First()
			return usageErrorf("unknown command %q%s; see '%s --help'", name, suggestCommand(c, name), path)
		}
		_ = cli.ShowSubcommandHelp(c)
		return usageErrorf("%s needs a command", path)
	}
}
