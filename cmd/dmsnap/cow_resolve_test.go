package main

import (
	"strings"
	"testing"
)

// TestCowArgResolution covers the host-side half of [POOL/]SNAP
// resolution: paths are never looked up as snapshots, and names that do
// not denote an active persistent snapshot give one clear error.
func TestCowArgResolution(t *testing.T) {
	e := newCLIEnv(t)
	img := e.image("a.img", 64<<20)
	e.mustRun("pool", "create", "p1", img)
	e.mustRun("lv", "create", "p1/base", "--size", "8M", "--no-activate")

	for _, arg := range []string{"/dev/null", "./x", img} {
		if !isPathArg(arg) {
			t.Errorf("%q is not taken as a path", arg)
		}
	}
	if isPathArg("p1/snap") || isPathArg("snap") {
		t.Error("a snapshot name is taken as a path")
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"diff", "p1/base"}, "p1/base is a volume, not a snapshot"},
		{[]string{"cow", "inspect", "p1/nope"}, `"p1/nope" is neither a file nor a snapshot of pool p1`},
		{[]string{"cow", "verify", "nopool/x"}, "no pool named nopool"},
	}
	for _, tt := range tests {
		code, _, errs := e.run(tt.args...)
		if code != exitError || !strings.Contains(errs, tt.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d %q; want exit 1 with one line containing %q", tt.args, code, errs, tt.want)
		}
	}
}
