package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// mistakesEnv is a host environment for wrong invocations: pools vg0 (the
// default, with the plain volume base) and vg1 on image files, an unused
// image b.img and a zeroed file zero.img. Nothing needs device-mapper.
func mistakesEnv(t *testing.T) *cliEnv {
	t.Helper()
	e := newCLIEnv(t)
	e.mustRun("pool", "create", "vg0", e.image("vg0.img", 64<<20), "--default", "--extent-size", "1M")
	e.mustRun("pool", "create", "vg1", e.image("vg1.img", 32<<20))
	e.mustRun("lv", "create", "vg0/base", "--size", "8M", "--no-activate")
	e.image("b.img", 64<<20)
	e.image("zero.img", 1<<20)
	return e
}

// TestWrongInvocations: each wrong command line exits 2 (usage) or 1
// (error) with one line naming the mistake, and changes nothing: every
// file of the environment (state file, PV images with their metadata) is
// byte for byte what it was. Rows marked with the issue #15 bug they
// reproduce failed before its fix.
func TestWrongInvocations(t *testing.T) {
	e := mistakesEnv(t)
	vg0, b, zero := e.path("vg0.img"), e.path("b.img"), e.path("zero.img")
	const u, x = exitUsage, exitError
	tests := []struct {
		args []string
		code int
		msg  string
		not  string // must not appear in stderr
	}{
		// #15: short value flags after a positional argument were ignored.
		{[]string{"ls", "vg0", "-o", "bogus"}, u, `-o: unknown column "bogus"`, ""},
		{[]string{"ls", "vg0", "-obogus"}, u, `unknown column "bogus"`, ""},
		{[]string{"ls", "vg0", "-o", "name,bogus"}, u, `unknown column "bogus"`, ""},
		{[]string{"lv", "extend", "vg0/base", "-L", "4M", "--no-activate"}, u, "shrinking is not supported", "--size is required"},
		{[]string{"lv", "extend", "vg0/base", "-L", "-4M", "--no-activate"}, u, "must not be negative", ""},
		{[]string{"lv", "extend", "vg0/base", "-L", "+1G", "--no-activate"}, x, "need 1024 extents (1 GiB), only", ""},
		{[]string{"lv", "create", "vg0/x", "-L", "0", "--no-activate"}, u, "must be greater than zero", "--size is required"},
		{[]string{"create", "base", "snap", "--cow", "20M", "-c", "1M"}, u, "--chunksize 1M: must be a power of two", ""},
		{[]string{"create", "base", "snap", "--cow", "20M", "-c1M"}, u, "--chunksize 1M: must be a power of two", ""},
		{[]string{"create", "base", "snap", "-c", "3K", "-L", "20M"}, u, "--chunksize 3K", ""},
		{[]string{"create", "base", "snap", "-L", "0"}, u, `--cow: size "0": must be greater than zero`, ""},
		{[]string{"create", "base", "snap", "-L", "20M", "-P", "-N"}, u, "exclude each other", ""},
		{[]string{"create", "base", "snap", "-PNL", "20M"}, u, "exclude each other", ""},
		{[]string{"extend", "vg0/base", "-L", "0"}, u, `--cow: size "0": must be greater than zero`, ""},
		// #15: global flags only worked before the command.
		{[]string{"ls", "nope", "--json"}, x, `{"message_type":"exit_error","code":1,"message":"no pool named nope`, ""},
		{[]string{"lv", "ls", "nope", "-q", "--json"}, x, `"message_type":"exit_error"`, ""},
		{[]string{"ls", "vg0", "--json", "--bogus"}, u, `{"message_type":"exit_error","code":2,"message":"unknown flag --bogus"}`, ""},
		{[]string{"pool", "show", "nope", "--json"}, x, `"code":1`, ""},
		// #15: cow inspect, cow verify and diff refused flags after SRC.
		{[]string{"cow", "inspect", zero, "--limit", "abc"}, u, `invalid value "abc" for flag --limit`, ""},
		{[]string{"cow", "inspect", zero, "--chunk-size", "3"}, u, "--chunk-size 3: must be a power of two", ""},
		{[]string{"cow", "verify", zero, "--chunk-size", "3"}, u, "--chunk-size 3: must be a power of two", ""},
		{[]string{"cow", "verify", zero, "--origin-size", "0"}, u, "must be greater than zero", ""},
		{[]string{"diff", zero, "--bitmap", e.path("bm.out")}, u, "--bitmap needs --origin-size", ""},
		{[]string{"diff", zero, "--origin-size", "lots"}, u, `--origin-size: size "lots"`, ""},
		{[]string{"diff", zero, "--chunk-size", "abc"}, u, `invalid value "abc" for flag --chunk-size`, ""},
		// #15: zfs ls -- -tank ignored "--".
		{[]string{"zfs", "ls", "--", "-tank"}, u, `dataset name "-tank": invalid zfs name`, "flag provided"},
		{[]string{"zfs", "prune", "--keep", "1", "--", "-tank"}, u, `dataset name "-tank"`, ""},
		{[]string{"pool", "create", "--", "-x", b}, u, `pool name "-x": must not start with '-'`, ""},
		{[]string{"lv", "create", "--size", "1M", "--", "vg0/-x"}, u, `must not start with '-'`, ""},
		// #15: a bare pool name where POOL/NAME is meant.
		{[]string{"lv", "create", "vg0", "--size", "10M", "--no-activate"}, u, "vg0 is a pool, not a volume: write POOL/NAME (vg0/NAME)", ""},
		{[]string{"lv", "create", "vg1", "-L", "10M", "--no-activate"}, u, "vg1 is a pool, not a volume", ""},
		{[]string{"lv", "remove", "vg0"}, u, "vg0 is a pool, not a volume", ""},
		{[]string{"lv", "extend", "vg0", "-L", "+4M", "--no-activate"}, u, "vg0 is a pool", ""},
		{[]string{"lv", "rename", "vg0", "x", "--no-activate"}, u, "vg0 is a pool", ""},
		{[]string{"create", "vg0", "snap", "--cow", "1M"}, u, "vg0 is a pool", ""},
		{[]string{"status", "vg1"}, u, "vg1 is a pool", ""},
		{[]string{"remove", "vg0"}, u, "vg0 is a pool", ""},
		{[]string{"extend", "vg0", "--cow", "+1M"}, u, "vg0 is a pool", ""},
		{[]string{"rename", "vg0", "x"}, u, "vg0 is a pool", ""},
		{[]string{"ingest", "vg0", "tank/x"}, u, "vg0 is a pool", ""},
		{[]string{"--json", "lv", "create", "vg0", "-L", "1M", "--no-activate"}, u, `"message":"vg0 is a pool`, ""},
		// #15: diff of something that is not a COW store said "no changes".
		{[]string{"diff", vg0}, x, "not a dm-snapshot persistent store: no snapshot magic; it holds a dmsnap PV of pool vg0", "no changes"},
		{[]string{"diff", zero}, x, "its first 4 KiB are zeros, and no snapshot uses it", "no changes"},
		{[]string{"diff", "--json", zero}, x, `"message_type":"exit_error","code":1`, ""},
		{[]string{"cow", "verify", vg0}, x, "holds a dmsnap PV of pool vg0", "ok"},
		{[]string{"cow", "inspect", vg0}, x, "holds a dmsnap PV of pool vg0", ""},
		// #15: error messages.
		{[]string{"ls", "--jsn"}, u, "unknown flag --jsn; did you mean --json?", "a name cannot start"},
		{[]string{"lv", "create", "vg0/x", "--sise", "1M"}, u, "unknown flag --sise; did you mean --size?", "a name cannot start"},
		{[]string{"lv", "create", "vg0/x", "-L", "1M", "--no-activat"}, u, "did you mean --no-activate?", ""},
		{[]string{"ls", "vg0", "--verbos"}, u, "did you mean --verbose?", ""},
		{[]string{"ls", "-Z"}, u, "unknown flag -Z", "-json"},
		{[]string{"--size", "1G", "ls", "vg0"}, u, "unknown flag --size", ""},
		{[]string{"lv", "--size", "0", "create", "vg0/x", "--no-activate"}, u, "must be greater than zero", ""},
		{[]string{"ls", "--dev-dr", "x"}, u, "unknown flag --dev-dr", "did you mean"}, // --dev-dir is hidden
		{[]string{"--bogus"}, u, "unknown flag --bogus", ""},
		{[]string{"lv", "creat"}, u, `unknown command "creat" (did you mean "create"?); see 'dmsnap lv --help'`, ""},
		{[]string{"cret", "base"}, u, `unknown command "cret" (did you mean "create"?)`, ""},
		{[]string{"pool", "lst"}, u, `(did you mean "ls"?)`, ""},
		{[]string{"dm", "nope"}, u, `unknown command "nope"; see 'dmsnap dm --help'`, "did you mean"},
		{[]string{"pool", "create", "vg0", b}, x, "pool vg0 already exists (uuid ", "): already exists"},
		{[]string{"lv", "create", "vg0/base", "-L", "1M", "--no-activate"}, x, "volume vg0/base: already exists", ""},
		{[]string{"lv", "create", "vg0/x", "--size", "0", "--no-activate"}, u, `--size: size "0": must be greater than zero`, "missing unit"},
		{[]string{"lv", "create", "vg0/x", "--size", "0.0", "--no-activate"}, u, "must be greater than zero", "missing unit"},
		{[]string{"lv", "create", "vg0/x", "-L", "10", "--no-activate"}, u, "missing unit", ""},
		{[]string{"lv", "create", "vg0/x", "-L", "1M", "--no-activate", "--size", "2M"}, u, "--size and -L are the same flag", ""},
		{[]string{"create", "base", "snap", "--cow"}, u, "flag needs an argument: --cow", ""},
		{[]string{"ls", "-o"}, u, "flag needs an argument: -o", ""},
		{[]string{"zfs", "prune", "tank/x", "--keep", "abc"}, u, `invalid value "abc" for flag --keep`, ""},
		{[]string{"create", "base", "snap", "--cow", "1M", "--persistent=maybe"}, u, "for --persistent", ""},
		// Other wrong invocations.
		{[]string{"ls", "vg0", "vg1"}, u, "ls takes at most one pool name", ""},
		{[]string{"ls", "nope"}, x, "no pool named nope", ""},
		{[]string{"lv", "extend", "vg0/base", "--no-activate"}, u, "--size is required", ""},
		{[]string{"lv", "extend", "vg0/base", "-L", "+4M", "extra", "--no-activate"}, u, "lv extend needs exactly one POOL/NAME, got 2", ""},
		{[]string{"lv", "extend", "vg0/nope", "-L", "+4M", "--no-activate"}, x, "not found", ""},
		{[]string{"create", "base", "snap"}, u, "--cow is required", ""},
		{[]string{"create", "base"}, u, "create needs [POOL/]BASE SNAP, got 1", ""},
		{[]string{"create", "base", "snap", "extra", "--cow", "1M"}, u, "got 3 arguments", ""},
		{[]string{"create", "base", "snap", "--cow", "1M", "--transient", "--overflow"}, u, "exclude each other", ""},
		{[]string{"create", "nope/base", "snap", "--cow", "1M"}, x, "no pool named nope", ""},
		{[]string{"create", "vg0/base", "vg1/snap", "--cow", "1M"}, u, "a snapshot lives in its origin's pool vg0, not vg1", ""},
		{[]string{"create", "base", "snap", "--cow", "1M", "--discard-passdown-origin"}, u, "needs --discard-zeroes-cow", ""},
		{[]string{"create", "base", "snap", "--cow", "50%BOGUS"}, u, "a percentage must be of ORIGIN or FREE", ""},
		{[]string{"diff"}, u, "diff needs exactly one DEVICE|FILE, got 0", ""},
		{[]string{"diff", "a", "b"}, u, "got 2 arguments", ""},
		{[]string{"diff", "vg0/base"}, x, "vg0/base is a volume, not a snapshot", ""},
		{[]string{"cow", "inspect"}, u, "cow inspect needs exactly one DEVICE|FILE, got 0", ""},
		{[]string{"cow", "verify", "a", "b"}, u, "got 2 arguments", ""},
		{[]string{"cow", "bogus"}, u, `unknown command "bogus"`, ""},
		{[]string{"cow"}, u, "dmsnap cow needs a command", ""},
		{[]string{"zfs", "ls"}, u, "zfs ls needs one DATASET, got 0", ""},
		{[]string{"zfs", "ls", "a", "b"}, u, "got 2 arguments", ""},
		{[]string{"zfs", "prune", "tank/x"}, u, "--keep N is required", ""},
		{[]string{"zfs", "prune", "tank/x", "--keep", "0"}, u, "--keep 0: must be at least 1", ""},
		{[]string{"zfs", "prune", "tank@x", "--keep", "1"}, u, `dataset name "tank@x"`, ""},
		{[]string{"replicate", "tank/x"}, u, "replicate needs DATASET TARGET, got 1", ""},
		{[]string{"replicate", "tank/x", "tank/y", "--to-host", "a b"}, u, `--to-host "a b"`, ""},
		{[]string{"monitor", "--interval", "1ms"}, u, "--interval 1ms: want 50ms to 10m0s", ""},
		{[]string{"monitor", "--autoextend-threshold", "10"}, u, "want 50 to 100", ""},
		{[]string{"monitor", "--autoextend-percent", "0"}, u, "want 1 to 1000", ""},
		{[]string{"monitor", "extra"}, u, "monitor takes no arguments", ""},
		{[]string{"merge"}, u, "merge needs a snapshot device", ""},
		{[]string{"merge", "a", "b"}, u, "merge takes at most one snapshot, got 2", ""},
		{[]string{"merge", "vg0/base", "--background", "--watch"}, u, "--background and --watch exclude each other", ""},
		{[]string{"merge", "vg0/base", "--finish"}, u, "--finish goes with --watch", ""},
		{[]string{"merge", "vg0/base", "--interval", "1ms"}, u, "interval 1ms out of range", ""},
		{[]string{"activate", "vg0", "vg1"}, u, "activate takes at most one pool name, got 2", ""},
		{[]string{"activate", "nope"}, x, "no pool named nope", ""},
		{[]string{"deactivate", "a", "b"}, u, "deactivate takes at most one pool name", ""},
		{[]string{"dm", "status"}, u, "dm status needs exactly one device name, got 0", ""},
		{[]string{"dm", "status", "a", "b"}, u, "got 2 arguments", ""},
		{[]string{"dm"}, u, "dmsnap dm needs a command", ""},
		{[]string{"config", "set", "default-pool"}, u, "config set needs KEY VALUE, got 1", ""},
		{[]string{"config", "set", "colour", "x"}, u, `unknown config key "colour"`, ""},
		{[]string{"config", "set", "default-pool", "a b"}, u, "must not contain white space", ""},
		{[]string{"config", "unset", "bogus"}, u, `unknown config key "bogus"`, ""},
		{[]string{"pool"}, u, "dmsnap pool needs a command", ""},
		{[]string{"pool", "show"}, u, "pool show needs exactly one pool name, got 0", ""},
		{[]string{"pool", "show", "nope"}, x, "no pool named nope", ""},
		{[]string{"pool", "show", "vg0", "vg1"}, u, "got 2 arguments", ""},
		{[]string{"pool", "extend", "vg0"}, u, "pool extend needs DEVICE|FILE arguments", ""},
		{[]string{"pool", "extend", "nope", b}, x, "no pool named nope", ""},
		{[]string{"pool", "remove"}, u, "pool remove needs exactly one pool name", ""},
		{[]string{"pool", "remove", "nope"}, x, "no pool named nope", ""},
		{[]string{"pool", "remove", "vg0"}, x, "has 1 volumes (base)", ""},
		{[]string{"pool", "import", e.path("nope.img")}, x, "no such file or directory", ""},
		{[]string{"pool", "import", b}, x, "no dmsnap label", ""},
		{[]string{"pool", "create"}, u, "pool create needs a pool name", ""},
		{[]string{"pool", "create", "vg3"}, u, "pool create needs DEVICE|FILE arguments", ""},
		{[]string{"pool", "create", "vg3", "--file", e.path("new.img")}, u, "--file needs --size", ""},
		{[]string{"pool", "create", "vg3", b, b}, u, "are the same device", ""},
		{[]string{"pool", "create", "vg3", b, "--extent-size", "3M"}, u, "--extent-size: extent size 3 MiB", ""},
		{[]string{"pool", "create", "vg3", vg0}, x, "dmsnap PV of pool vg0", ""},
		{[]string{"lv"}, u, "dmsnap lv needs a command", ""},
		{[]string{"lv", "ls", "nope"}, x, "no pool named nope", ""},
		{[]string{"lv", "ls", "vg0", "vg1"}, u, "lv ls takes at most one pool name", ""},
		{[]string{"lv", "create"}, u, "lv create needs exactly one POOL/NAME, got 0", ""},
		{[]string{"lv", "create", "vg0/x"}, u, "--size is required", ""},
		{[]string{"lv", "create", "vg0/x", "y", "-L", "1M", "--no-activate"}, u, "got 2 arguments", ""},
		{[]string{"lv", "create", "vg0/x", "-L", "1.5.5M", "--no-activate"}, u, `malformed number "1.5.5"`, ""},
		{[]string{"lv", "create", "nope/x", "-L", "1M", "--no-activate"}, x, "no pool named nope", ""},
		{[]string{"lv", "rename", "vg0/base"}, u, "lv rename needs POOL/OLD NEW, got 1", ""},
		{[]string{"lv", "rename", "vg0/base", "vg1/x", "--no-activate"}, u, "cannot move a volume to another pool", ""},
		{[]string{"lv", "rename", "vg0/base", "a b", "--no-activate"}, u, "must not contain white space", ""},
		{[]string{"lv", "remove"}, u, "lv remove needs exactly one POOL/NAME, got 0", ""},
		{[]string{"lv", "remove", "vg0/nope"}, x, "volume vg0/nope: not found", ""},
		{[]string{"status"}, u, "status needs one [POOL/]SNAP, got 0", ""},
		{[]string{"status", "vg0/base"}, x, "snapshot vg0/base: not found", ""},
		{[]string{"remove"}, u, "remove needs one [POOL/]SNAP, got 0", ""},
		{[]string{"extend", "vg0/base"}, u, "--cow is required", ""},
		{[]string{"rename", "vg0/base"}, u, "rename needs [POOL/]SNAP NEW, got 1", ""},
		{[]string{"ingest"}, u, "ingest needs [POOL/]BASE ZPOOL/DATASET, got 0", ""},
		{[]string{"ingest", "vg0/base", "tank/x", "--volblocksize", "3K"}, u, "--volblocksize 3K", ""},
		{[]string{"ingest", "vg0/base", "tank/x", "--cow", "0"}, u, "must be greater than zero", ""},
	}
	if len(tests) < 80 {
		t.Fatalf("only %d rows", len(tests))
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			before := snapshotFiles(t, e.dir)
			code, _, errs := e.run(tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.msg) || tt.not != "" && strings.Contains(errs, tt.not) {
				t.Errorf("exit %d stderr %q; want exit %d containing %q", code, errs, tt.code, tt.msg)
				if tt.not != "" {
					t.Errorf("(and not %q)", tt.not)
				}
			}
			if n := strings.Count(strings.TrimSpace(errs), "\n"); n > 0 {
				t.Errorf("error is not one line: %q", errs)
			}
			sameFiles(t, before, snapshotFiles(t, e.dir))
		})
	}
}

// TestFlagsAnywhere: flags after the arguments, and global flags after
// the command, do what they do in front (issue #15).
func TestFlagsAnywhere(t *testing.T) {
	e := mistakesEnv(t)
	for _, pair := range [][2][]string{
		{{"ls", "vg0", "-o", "name"}, {"ls", "-o", "name", "vg0"}},
		{{"ls", "vg0", "--json"}, {"--json", "ls", "vg0"}},
		{{"lv", "ls", "vg0", "--json"}, {"--json", "lv", "ls", "vg0"}},
		{{"pool", "show", "vg0", "--json"}, {"--json", "pool", "show", "vg0"}},
		{{"cow", "inspect", e.path("zero.img"), "--json", "--chunk-size", "8"}, {"cow", "inspect", "--json", "--chunk-size", "8", e.path("zero.img")}},
		{{"cow", "verify", e.path("zero.img"), "--chunk-size", "8"}, {"cow", "verify", "--chunk-size", "8", e.path("zero.img")}},
	} {
		after, before := e.mustRun(pair[0]...), e.mustRun(pair[1]...)
		if after != before {
			t.Errorf("%q printed\n%s\nbut %q printed\n%s", pair[0], after, pair[1], before)
		}
	}
	if out := e.mustRun("ls", "vg0", "-o", "name"); out != "NAME\n" {
		t.Errorf("ls vg0 -o name: %q, want only the NAME column", out)
	}
	var snaps []json.RawMessage
	if err := json.Unmarshal([]byte(e.mustRun("ls", "--json")), &snaps); err != nil {
		t.Errorf("ls --json: %v", err)
	}

	// -L after the argument extends, as --size before it does.
	e.mustRun("lv", "extend", "vg0/base", "-L", "+4M", "--no-activate")
	e.mustRun("lv", "extend", "--size", "+4M", "vg0/base", "--no-activate")
	e.mustRun("lv", "create", "vg0/y", "-L4M", "--no-activate", "-q")
	var vols []jsonVolume
	if err := json.Unmarshal([]byte(e.mustRun("lv", "ls", "vg0", "--json")), &vols); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]uint64{}
	for _, v := range vols {
		sizes[v.Name] = v.SizeBytes
	}
	if sizes["base"] != 16<<20 || sizes["y"] != 4<<20 || len(vols) != 2 {
		t.Errorf("lv ls: %+v; want base 16 MiB and y 4 MiB, nothing else (no vg0/vg0)", vols)
	}
	// A pool-named volume made before the fix is still reachable as
	// POOL/NAME.
	e.mustRun("lv", "create", "vg0/vg0", "-L", "1M", "--no-activate")
	e.mustRun("lv", "remove", "vg0/vg0")
}
