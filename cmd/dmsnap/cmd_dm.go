package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/report"
	"github.com/urfave/cli/v2"
)

// deviceMapper is what the dm commands need from dm.Client; tests of the
// formatting substitute a fake.
type deviceMapper interface {
	List() ([]dm.ListEntry, error)
	Info(name string) (dm.Info, error)
	Table(name string, opts dm.TableOptions) ([]dm.TargetLine, dm.Info, error)
	Status(name string) ([]dm.TargetLine, dm.Info, error)
	TargetVersions() ([]dm.TargetVersion, error)
	Version() dm.Version
	Close() error
}

// openDM opens the device-mapper control node. It is a variable only so
// that CLI tests can run without a kernel.
type dmOpener func() (deviceMapper, error)

func openRealDM() (deviceMapper, error) {
	c, err := dm.Open()
	if err != nil {
		return nil, err
	}
	return c, nil
}

func newDMCommand(gopts *globalOptions) *cli.Command {
	return newDMCommandWith(gopts, openRealDM)
}

func newDMCommandWith(gopts *globalOptions, open dmOpener) *cli.Command {
	return &cli.Command{
		Name:  "dm",
		Usage: "inspect any device-mapper device (dmsnap's, LVM's or others') through the kernel's ioctls",
		Subcommands: []*cli.Command{
			{
				Name:        "ls",
				Usage:       "list device-mapper devices with their targets",
				Description: "Columns (-o): " + columnNames(dmColumns) + ". Read-only.\n\n" + exitStatusHelp,
				Flags:       reportFlags(),
				Action: func(c *cli.Context) error {
					if c.Args().Present() {
						return usageErrorf("dm ls takes no arguments, got %q", c.Args().First())
					}
					return runDMList(c.Context, open, gopts, reportOptions(c))
				},
			},
			{
				Name:        "status",
				Usage:       "show a device's state, table and typed status (snapshot fill, merge progress)",
				ArgsUsage:   "NAME",
				Description: "Read-only.\n\n" + exitStatusHelp,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("dm status needs exactly one device name, got %d arguments", c.NArg())
					}
					return runDMStatus(c.Context, open, gopts, c.Args().First())
				},
			},
			{
				Name:        "targets",
				Usage:       "list the kernel's device-mapper interface and target versions",
				Description: "Read-only.\n\n" + exitStatusHelp,
				Action: func(c *cli.Context) error {
					return runDMTargets(c.Context, open, gopts)
				},
			},
		},
	}
}

// jsonTarget is one table line with its typed status, in `dm status --json`.
type jsonTarget struct {
	Start    dm.Sector     `json:"start"`
	Length   dm.Sector     `json:"length"`
	Type     string        `json:"type"`
	Table    string        `json:"table"`
	Status   string        `json:"status"`
	Snapshot *jsonSnapshot `json:"snapshot,omitempty"`
}

// jsonSnapshot is the typed status of a snapshot or snapshot-merge target.
// Sector counts are present only in state "active".
type jsonSnapshot struct {
	State                 string    `json:"state"`
	AllocatedSectors      dm.Sector `json:"allocated_sectors"`
	TotalSectors          dm.Sector `json:"total_sectors"`
	MetadataSectors       dm.Sector `json:"metadata_sectors"`
	UsedPercent           float64   `json:"used_percent"`
	MergeRemainingSectors dm.Sector `json:"merge_remaining_sectors"`
}

type jsonDevice struct {
	Name      string       `json:"name"`
	UUID      string       `json:"uuid"`
	Dev       string       `json:"dev"`
	OpenCount int32        `json:"open_count"`
	EventNr   uint32       `json:"event_nr"`
	Suspended bool         `json:"suspended"`
	ReadOnly  bool         `json:"read_only"`
	Inactive  bool         `json:"inactive_table_present"`
	Targets   []jsonTarget `json:"targets"`
}

// dmColumns are dm ls's columns; JSON encodes each device whole.
var dmColumns = []report.Column{
	{Name: "name", Header: "NAME", Default: true},
	{Name: "dev", Header: "DEV", Default: true},
	{Name: "open", Header: "OPEN", Kind: report.Count, Default: true},
	{Name: "state", Header: "STATE", Default: true},
	{Name: "size", Header: "SIZE", Kind: report.Size, Default: true},
	{Name: "targets", Header: "TARGETS", Default: true},
	{Name: "uuid", Header: "UUID", Default: true},
	{Name: "event_nr", Header: "EVENT", Kind: report.Count},
	{Name: "read_only", Header: "RO"},
	{Name: "inactive", Header: "INACTIVE"},
}

func runDMList(_ context.Context, open dmOpener, gopts *globalOptions, ro report.Options) error {
	r := report.New(dmColumns...)
	if err := r.Check(ro); err != nil {
		return usageError{err}
	}
	c, err := open()
	if err != nil {
		return err
	}
	defer c.Close()
	entries, err := c.List()
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	devs := make([]jsonDevice, 0, len(entries))
	for _, e := range entries {
		d, err := describeDevice(c, e.Name)
		if errors.Is(err, dm.ErrNotFound) {
			continue // removed while we listed
		}
		if err != nil {
			return err
		}
		devs = append(devs, d)
	}
	for _, d := range devs {
		var types []string
		var size dm.Sector
		for _, t := range d.Targets {
			types = append(types, t.Type)
			size += t.Length
		}
		r.AddObject(d, d.Name, d.Dev, int64(d.OpenCount), deviceState(d), size.Bytes(),
			strings.Join(types, ","), dashIfEmpty(d.UUID), int64(d.EventNr), yesNo(&d.ReadOnly), yesNo(&d.Inactive))
	}
	return writeReport(gopts, r, ro, "dmsnap dm ls")
}

func deviceState(d jsonDevice) string {
	switch {
	case d.Suspended:
		return "suspended"
	case len(d.Targets) == 0:
		return "no-table"
	}
	for _, t := range d.Targets {
		if t.Snapshot != nil && t.Snapshot.State != "active" {
			return strings.ToLower(t.Snapshot.State)
		}
	}
	return "active"
}

// describeDevice reads a device's info, live table and status.
func describeDevice(c deviceMapper, name string) (jsonDevice, error) {
	table, info, err := c.Table(name, dm.TableOptions{})
	if err != nil {
		return jsonDevice{}, err
	}
	status, _, err := c.Status(name)
	if err != nil {
		return jsonDevice{}, err
	}
	if len(status) != len(table) {
		return jsonDevice{}, fmt.Errorf("dm status %s: table has %d targets but status has %d (reloaded meanwhile?)", name, len(table), len(status))
	}
	d := jsonDevice{
		Name: info.Name, UUID: info.UUID, Dev: info.Dev.String(), OpenCount: info.OpenCount,
		EventNr: info.EventNr, Suspended: info.Suspended, ReadOnly: info.ReadOnly,
		Inactive: info.InactivePresent, Targets: []jsonTarget{},
	}
	for i, t := range table {
		jt := jsonTarget{Start: t.Start, Length: t.Length, Type: t.Type, Table: t.Params, Status: status[i].Params}
		st, err := dm.ParseStatus(status[i])
		if err != nil {
			return jsonDevice{}, fmt.Errorf("dm status %s: %w", name, err)
		}
		if s, ok := st.(dm.SnapshotStatus); ok {
			jt.Snapshot = &jsonSnapshot{
				State:            strings.ToLower(s.State.String()),
				AllocatedSectors: s.Allocated, TotalSectors: s.Total, MetadataSectors: s.Metadata,
				UsedPercent: s.Percent(),
			}
			if s.State == dm.SnapshotActive {
				jt.Snapshot.MergeRemainingSectors = s.MergeRemaining()
			}
		}
		d.Targets = append(d.Targets, jt)
	}
	return d, nil
}

func runDMStatus(_ context.Context, open dmOpener, gopts *globalOptions, name string) error {
	if name == "" || strings.Contains(name, "/") {
		return usageErrorf("invalid device name %q: give the device-mapper name, as `dmsnap dm ls` prints it", name)
	}
	c, err := open()
	if err != nil {
		return err
	}
	defer c.Close()
	d, err := describeDevice(c, name)
	if errors.Is(err, dm.ErrNotFound) {
		return fmt.Errorf("no device-mapper device named %q", name)
	}
	if err != nil {
		return err
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, d)
	}
	printDevice(gopts.stdout, d)
	return nil
}

func printDevice(w io.Writer, d jsonDevice) {
	fmt.Fprintf(w, "name:      %s\n", d.Name)
	fmt.Fprintf(w, "uuid:      %s\n", dashIfEmpty(d.UUID))
	fmt.Fprintf(w, "dev:       %s (/dev/dm-%s)\n", d.Dev, d.Dev[strings.IndexByte(d.Dev, ':')+1:])
	fmt.Fprintf(w, "state:     %s\n", deviceState(d))
	fmt.Fprintf(w, "open:      %d\n", d.OpenCount)
	fmt.Fprintf(w, "event_nr:  %d\n", d.EventNr)
	if d.ReadOnly {
		fmt.Fprintf(w, "read-only: yes\n")
	}
	if d.Inactive {
		fmt.Fprintf(w, "inactive table: loaded (not yet resumed)\n")
	}
	for _, t := range d.Targets {
		fmt.Fprintf(w, "table:     %d %d %s %s\n", t.Start, t.Length, t.Type, t.Table)
		if t.Status != "" {
			fmt.Fprintf(w, "status:    %s\n", t.Status)
		}
		if s := t.Snapshot; s != nil {
			fmt.Fprintf(w, "snapshot:  %s", s.State)
			if s.State == "active" {
				fmt.Fprintf(w, ", %s of %s allocated (%s metadata), used %.2f%%",
					humanBytes(s.AllocatedSectors.Bytes()), humanBytes(s.TotalSectors.Bytes()),
					humanBytes(s.MetadataSectors.Bytes()), s.UsedPercent)
				if t.Type == dm.TypeSnapshotMerge {
					if s.MergeRemainingSectors == 0 {
						fmt.Fprintf(w, ", merge complete")
					} else {
						fmt.Fprintf(w, ", %s left to merge", humanBytes(s.MergeRemainingSectors.Bytes()))
					}
				}
			}
			fmt.Fprintln(w)
		}
	}
}

func runDMTargets(_ context.Context, open dmOpener, gopts *globalOptions) error {
	c, err := open()
	if err != nil {
		return err
	}
	defer c.Close()
	targets, err := c.TargetVersions()
	if err != nil {
		return err
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Name < targets[j].Name })
	v := c.Version()
	if gopts.JSON {
		type jt struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		}
		out := struct {
			Interface string `json:"interface"`
			Targets   []jt   `json:"targets"`
		}{Interface: v.String(), Targets: []jt{}}
		for _, t := range targets {
			out.Targets = append(out.Targets, jt{t.Name, t.Version.String()})
		}
		return writeJSON(gopts.stdout, out)
	}
	fmt.Fprintf(gopts.stdout, "interface %s\n", v)
	tw := tabwriter.NewWriter(gopts.stdout, 0, 4, 2, ' ', 0)
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\n", t.Name, t.Version)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes formats n with binary units, as lvs does (4.00m style is
// avoided in favour of "4.0 MiB").
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
