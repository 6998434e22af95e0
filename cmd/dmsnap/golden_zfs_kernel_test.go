//go:build linux

package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateGoldenZFS = flag.Bool("update-golden-zfs", false, "rewrite testdata/golden-zfs/*.txt from the ZFS-tier golden tests (inside the VM only)")

// goldenVariableZFS matches the fields of ingest, replicate and zfs ls
// output that differ from run to run: times in snapshot names and
// creation columns, GUIDs, transaction groups, durations and rates.
var goldenVariableZFS = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`dmsnap-\d{8}T\d{6}Z-`), "dmsnap-<TIME>-"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "<CREATION>"},
	{regexp.MustCompile(`"(guid|[a-z_]+_guid|createtxg|seconds|check|freeze|plan|copy|commit|creation|bytes_per_second|rate)": ("[^"]*"|[0-9.e+-]+)`), `"$1": <VAR>`},
	{regexp.MustCompile(`\b\d{12,}\b`), "<GUID>"},
	{regexp.MustCompile(`\b\d+(\.\d+)?s\b`), "<SECONDS>"},
}

// goldenColumns are the columns of human tables whose values differ from
// run to run (their width moves the other columns).
var goldenColumns = map[string]bool{"GUID": true, "CREATETXG": true, "CREATION": true}

// normaliseGoldenZFS replaces the per-run names (pool, zpool, temporary
// directory) and the variable fields. In a table (a header line of
// upper-case words), the cells of goldenColumns become <VAR> and the
// padding between cells two spaces: the widths of variable cells move
// the columns.
func normaliseGoldenZFS(s string, names map[string]string) string {
	for from, to := range names {
		s = strings.ReplaceAll(s, from, to)
	}
	for _, v := range goldenVariableZFS {
		s = v.re.ReplaceAllString(s, v.with)
	}
	lines := strings.SplitAfter(s, "\n")
	if len(lines) == 0 || !regexp.MustCompile(`^[A-Z]+(  +[A-Z]+)+\s*$`).MatchString(lines[0]) {
		return s
	}
	cells := regexp.MustCompile(`  +`)
	header := cells.Split(strings.TrimSpace(lines[0]), -1)
	var b strings.Builder
	for i, line := range lines {
		if i == 0 || strings.HasPrefix(line, "dmsnap:") || strings.TrimSpace(line) == "" {
			b.WriteString(cells.ReplaceAllString(line, "  "))
			continue
		}
		cs := cells.Split(strings.TrimRight(line, " \n"), -1)
		for j := range cs {
			if j < len(header) && goldenColumns[header[j]] {
				cs[j] = "<VAR>"
			}
		}
		b.WriteString(strings.Join(cs, "  ") + "\n")
	}
	return b.String()
}

// messages keeps the lines of stderr that are not JSON progress.
func messages(stderr string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(stderr, "\n") {
		if line != "" && !strings.HasPrefix(line, "{") && !strings.Contains(line, "\r") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// checkGolden compares got with testdata/golden-zfs/name.txt, or writes
// it with -update-golden-zfs (inside the VM only).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden-zfs", name+".txt")
	if *updateGoldenZFS {
		if os.Getenv("DMSNAP_IN_VM") != "1" {
			t.Fatal("-update-golden-zfs only inside the test VM")
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with -update-golden-zfs in the VM)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// TestGoldenZFSOutput pins the human and JSON output of the ZFS commands
// byte for byte (after normalising times, GUIDs, txgs and durations):
//   - ingest, human: the first (full) ingest of a 32 MiB origin;
//   - ingest --json --full: a forced full copy;
//   - 6 fixed 4 KiB writes and a zeroed 16 KiB block, ingest, human: an
//     incremental;
//   - the same writes again, ingest --json: an incremental;
//   - zfs ls, human and --json;
//   - replicate --dry-run to ZPOOL/copy, human and --json: the full send
//     plan, nothing received.
func TestGoldenZFSOutput(t *testing.T) {
	f := newIngestFixture(t)
	names := map[string]string{f.e.dir: "<DIR>", f.zpool: "<ZPOOL>", f.pool: "<POOL>"}
	run := func(name string, args ...string) {
		t.Helper()
		stdout, stderr := f.e.runOK(args...)
		t.Logf("%s raw stdout:\n%s", name, stdout)
		checkGolden(t, name, normaliseGoldenZFS(stdout+messages(stderr), names))
	}
	write := func() {
		t.Helper()
		for i := range int64(6) {
			if err := writeAt(t, f.origin, i*(5<<20)+3*4096, randBytes(4096)); err != nil {
				t.Fatal(err)
			}
		}
		if err := writeAt(t, f.origin, 17<<20, make([]byte, 16<<10)); err != nil {
			t.Fatal(err)
		}
	}
	ingest := []string{"ingest", f.pool + "/base", f.ds, "--cow", "8M"}
	run("ingest-full", ingest...)
	run("ingest-full-json", append([]string{"--json"}, append(ingest, "--full")...)...)
	write()
	run("ingest-incremental", ingest...)
	write()
	run("ingest-incremental-json", append([]string{"--json"}, ingest...)...)
	run("zfs-ls", "zfs", "ls", f.ds)
	run("zfs-ls-json", "--json", "zfs", "ls", f.ds)
	run("replicate-dry-run", "replicate", f.ds, f.zpool+"/copy", "--dry-run")
	run("replicate-dry-run-json", "--json", "replicate", f.ds, f.zpool+"/copy", "--dry-run")
}
