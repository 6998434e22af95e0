package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// fakeDM serves fixed tables and statuses, as captured from a 6.1 kernel
// (dm/testdata): it tests formatting only, never kernel behaviour.
type fakeDM struct {
	tables, statuses map[string][]dm.TargetLine
	infos            map[string]dm.Info
}

func line(t *testing.T, s string) dm.TargetLine {
	t.Helper()
	l, err := dm.ParseTargetLine(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newFakeDM(t *testing.T) *fakeDM {
	f := &fakeDM{tables: map[string][]dm.TargetLine{}, statuses: map[string][]dm.TargetLine{}, infos: map[string]dm.Info{}}
	add := func(name, uuid string, minor uint32, table, status string) {
		f.tables[name] = []dm.TargetLine{line(t, table)}
		f.statuses[name] = []dm.TargetLine{line(t, status)}
		f.infos[name] = dm.Info{Name: name, UUID: uuid, Dev: dm.DevNum{Major: 254, Minor: minor}, ActivePresent: true, TargetCount: 1}
	}
	add("vg0-base", "LVM-abc", 1, "0 131072 snapshot-origin 254:0", "0 131072 snapshot-origin")
	add("vg0-snap", "LVM-def", 3, "0 131072 snapshot 254:0 254:2 P 8", "0 131072 snapshot 16464/65536 80")
	add("vg0-old", "", 4, "0 131072 snapshot 254:0 254:2 P 8", "0 131072 snapshot Invalid")
	add("vg0-merging", "", 5, "0 131072 snapshot-merge 254:0 254:2 P 8", "0 131072 snapshot-merge 2072/65536 16")
	return f
}

func (f *fakeDM) List() ([]dm.ListEntry, error) {
	var out []dm.ListEntry
	for n, i := range f.infos {
		out = append(out, dm.ListEntry{Name: n, Dev: i.Dev, UUID: i.UUID})
	}
	return out, nil
}
func (f *fakeDM) Info(name string) (dm.Info, error) {
	i, ok := f.infos[name]
	if !ok {
		return dm.Info{}, &dm.OpError{Op: "status", Device: name, Err: dm.ErrNotFound}
	}
	return i, nil
}
func (f *fakeDM) Table(name string, _ dm.TableOptions) ([]dm.TargetLine, dm.Info, error) {
	i, err := f.Info(name)
	return f.tables[name], i, err
}
func (f *fakeDM) Status(name string) ([]dm.TargetLine, dm.Info, error) {
	i, err := f.Info(name)
	return f.statuses[name], i, err
}
func (f *fakeDM) TargetVersions() ([]dm.TargetVersion, error) {
	return []dm.TargetVersion{{Name: "snapshot", Version: dm.Version{Major: 1, Minor: 16}}}, nil
}
func (f *fakeDM) Version() dm.Version { return dm.Version{Major: 4, Minor: 47} }
func (f *fakeDM) Close() error        { return nil }

// runWith runs the app with the dm commands wired to open.
func runWith(t *testing.T, open dmOpener, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	gopts := &globalOptions{stdout: &out, stderr: &errb}
	app := newApp(gopts)
	for i, c := range app.Commands {
		if c.Name == "dm" {
			app.Commands[i] = newDMCommandWith(gopts, open)
		}
	}
	setUsageHandlers(app.Commands)
	err := app.RunContext(context.Background(), append([]string{"dmsnap"}, args...))
	code = exitCode(err)
	if err != nil {
		printError(gopts, err, code)
	}
	return code, out.String(), errb.String()
}

func fakeOpener(f *fakeDM) dmOpener { return func() (deviceMapper, error) { return f, nil } }

func TestDMStatusSnapshotHuman(t *testing.T) {
	code, out, errs := runWith(t, fakeOpener(newFakeDM(t)), "dm", "status", "vg0-snap")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{
		"table:     0 131072 snapshot 254:0 254:2 P 8\n",
		"status:    16464/65536 80\n",
		// 16464 sectors = 8.04 MiB; LVM's Snap% for 16464/65536 is 25.12.
		"snapshot:  active, 8.0 MiB of 32.0 MiB allocated (40.0 KiB metadata), used 25.12%\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDMStatusMergeJSON(t *testing.T) {
	code, out, _ := runWith(t, fakeOpener(newFakeDM(t)), "--json", "dm", "status", "vg0-merging")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var d jsonDevice
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(d.Targets) != 1 || d.Targets[0].Snapshot == nil {
		t.Fatalf("targets %+v", d.Targets)
	}
	s := d.Targets[0].Snapshot
	if s.State != "active" || s.AllocatedSectors != 2072 || s.MetadataSectors != 16 || s.MergeRemainingSectors != 2056 {
		t.Errorf("snapshot %+v, want active 2072 alloc, 16 metadata, 2056 remaining", s)
	}
}

func TestDMListStates(t *testing.T) {
	code, out, _ := runWith(t, fakeOpener(newFakeDM(t)), "dm", "ls")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want header + 4 devices, got:\n%s", out)
	}
	// Sorted by name; the invalidated snapshot shows as such.
	if !strings.HasPrefix(lines[1], "vg0-base ") || !strings.Contains(lines[3], "invalid") || !strings.Contains(lines[3], "vg0-old") {
		t.Errorf("unexpected listing:\n%s", out)
	}
}

func TestExitCodes(t *testing.T) {
	open := fakeOpener(newFakeDM(t))
	noDM := func() (deviceMapper, error) {
		return nil, &dm.OpError{Op: "open", Device: "/dev/mapper/control", Err: dm.ErrNoDeviceMapper}
	}
	tests := []struct {
		name   string
		open   dmOpener
		args   []string
		code   int
		stderr string
	}{
		{"missing arg", open, []string{"dm", "status"}, exitUsage, "needs exactly one device name"},
		{"path not name", open, []string{"dm", "status", "/dev/mapper/x"}, exitUsage, `invalid device name "/dev/mapper/x"`},
		{"bad flag", open, []string{"dm", "ls", "--bogus"}, exitUsage, "bogus"},
		{"unknown command", open, []string{"nope"}, exitUsage, `unknown command "nope"`},
		{"unknown subcommand", open, []string{"dm", "nope"}, exitUsage, `unknown command "nope"; see 'dmsnap dm --help'`},
		{"group without subcommand", open, []string{"dm"}, exitUsage, "dmsnap dm needs a command"},
		{"unknown device", open, []string{"dm", "status", "nope"}, exitError, `no device-mapper device named "nope"`},
		{"no device-mapper", noDM, []string{"dm", "ls"}, exitError, "device-mapper is not available on this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runWith(t, tt.open, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d stderr %q; want exit %d containing %q", code, stderr, tt.code, tt.stderr)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); tt.code == exitError && n > 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
}

func TestJSONErrorSchema(t *testing.T) {
	code, _, stderr := runWith(t, fakeOpener(newFakeDM(t)), "--json", "dm", "status", "nope")
	if code != exitError {
		t.Fatalf("exit %d", code)
	}
	var e jsonError
	if err := json.Unmarshal([]byte(stderr), &e); err != nil {
		t.Fatalf("stderr is not JSON: %v: %q", err, stderr)
	}
	if e.MessageType != "exit_error" || e.Code != 1 || !strings.Contains(e.Message, "nope") {
		t.Errorf("got %+v", e)
	}
}

func TestInterruptedExitCode(t *testing.T) {
	// A command that fails after a signal cancelled the root context exits
	// 130, whatever the error was.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"dmsnap", "dm", "ls", "--bogus"}, &out, &errb); code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
	if code := run(context.Background(), []string{"dmsnap", "dm", "ls", "--bogus"}, &out, &errb); code != exitUsage {
		t.Errorf("exit %d without a signal, want %d", code, exitUsage)
	}
}

func TestDMListReport(t *testing.T) {
	open := fakeOpener(newFakeDM(t))
	code, out, errOut := runWith(t, open, "dm", "ls", "-S", "state=invalid", "-o", "name,size", "--units", "s", "--noheadings", "--separator", ":")
	if code != 0 || out != "vg0-old:131072s\n" {
		t.Errorf("exit %d, out %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runWith(t, open, "--json", "dm", "ls", "-O", "-name", "-S", "name=~^vg0-")
	var env struct {
		OutputVersion struct {
			Format string `json:"format"`
			Major  int    `json:"vers_major"`
		} `json:"output_version"`
		Report []jsonDevice `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &env); code != 0 || err != nil {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if env.OutputVersion.Format != "dmsnap dm ls" || env.OutputVersion.Major != 1 || len(env.Report) < 2 ||
		env.Report[0].Name < env.Report[1].Name || len(env.Report[0].Targets) == 0 {
		t.Errorf("envelope %+v", env)
	}
	code, out, errOut = runWith(t, open, "dm", "ls", "-o", "name,bogus")
	if code != exitUsage || out != "" || !strings.Contains(errOut, `-o: unknown column "bogus"; columns: name, dev`) {
		t.Errorf("bad column: exit %d, out %q, stderr %q", code, out, errOut)
	}
}
