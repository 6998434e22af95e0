package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// versionInfo is what `dmsnap version` reports: the build (from the Go
// build info) and, when /dev/mapper/control can be opened, the kernel's
// device-mapper interface and snapshot target versions.
type versionInfo struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Revision  string `json:"vcs_revision,omitempty"`
	Time      string `json:"vcs_time,omitempty"`
	Modified  bool   `json:"vcs_modified"`
	// DM is the ioctl interface version; empty when device-mapper is
	// unavailable, DMError then says why.
	DM      string            `json:"dm_version,omitempty"`
	DMError string            `json:"dm_error,omitempty"`
	Targets map[string]string `json:"dm_targets,omitempty"`
}

// snapshotTargets are the targets whose versions decide which features
// dmsnap uses.
var snapshotTargets = []string{"snapshot", "snapshot-origin", "snapshot-merge", "linear"}

// buildVersion fills the build part of versionInfo from bi (nil when the
// binary carries no build info).
func buildVersion(bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Module: "github.com/dmsnap/dmsnap", Version: "(devel)", GoVersion: runtime.Version()}
	if bi == nil {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// addKernelVersions adds the dm versions; a missing control node is
// reported in DMError, never as a failure.
func addKernelVersions(v *versionInfo, open dmOpener) {
	c, err := open()
	if err != nil {
		v.DMError = err.Error()
		return
	}
	defer c.Close()
	v.DM = c.Version().String()
	tvs, err := c.TargetVersions()
	if err != nil {
		v.DMError = err.Error()
		return
	}
	for _, tv := range tvs {
		for _, want := range snapshotTargets {
			if tv.Name == want {
				if v.Targets == nil {
					v.Targets = map[string]string{}
				}
				v.Targets[tv.Name] = tv.Version.String()
			}
		}
	}
}

func newVersionCommand(gopts *globalOptions) *cli.Command {
	return newVersionCommandWith(gopts, openRealDM)
}

func newVersionCommandWith(gopts *globalOptions, open dmOpener) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print dmsnap's build version and the kernel's device-mapper versions",
		Description: "Prints the module version, the VCS revision, time and modified flag of the build,\n" +
			"and, when /dev/mapper/control can be opened, the device-mapper ioctl version and the\n" +
			"versions of the loaded snapshot targets (a target module not loaded yet is absent).\n" +
			"Without device-mapper the build part is still printed and the exit status is 0.\n" +
			"`dmsnap --version` is the same. Read-only.\n\n" + exitStatusHelp,
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) > 0 {
				return usageErrorf("version takes no arguments, got %q", args[0])
			}
			return runVersion(gopts, open)
		}),
	}
}

func runVersion(gopts *globalOptions, open dmOpener) error {
	bi, _ := debug.ReadBuildInfo()
	v := buildVersion(bi)
	addKernelVersions(&v, open)
	if gopts.JSON {
		return writeJSON(gopts.stdout, v)
	}
	w := gopts.stdout
	fmt.Fprintf(w, "dmsnap %s (%s, %s)\n", v.Version, v.Module, v.GoVersion)
	if v.Revision != "" {
		mod := ""
		if v.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(w, "revision: %s %s%s\n", v.Revision, v.Time, mod)
	}
	if v.DM == "" {
		fmt.Fprintf(w, "device-mapper: unavailable (%s)\n", v.DMError)
		return nil
	}
	fmt.Fprintf(w, "device-mapper: %s\n", v.DM)
	for _, t := range snapshotTargets {
		if tv, ok := v.Targets[t]; ok {
			fmt.Fprintf(w, "target %s: %s\n", t, tv)
		} else {
			fmt.Fprintf(w, "target %s: not loaded\n", t)
		}
	}
	if v.DMError != "" {
		fmt.Fprintf(w, "device-mapper targets: %s\n", v.DMError)
	}
	return nil
}
