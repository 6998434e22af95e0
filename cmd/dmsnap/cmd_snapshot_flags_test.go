package main

import (
	"strings"
	"testing"
)

// TestCreateFlagsFirst: a mistake in create's flags is reported as such
// (exit 2) before any pool is looked up — here there is none at all.
func TestCreateFlagsFirst(t *testing.T) {
	e := newCLIEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "base", "snap"}, "--cow is required"},
		{[]string{"create", "base", "snap", "--cow", "100X"}, `--cow: size "100X": unknown unit "X"`},
		{[]string{"create", "base", "snap", "--cow", "20%ORIGN"}, "a percentage must be of ORIGIN or FREE"},
		{[]string{"create", "base", "snap", "--cow", "150%ORIGIN"}, "want a percentage from 0 to 100"},
		{[]string{"create", "base", "snap", "--cow", "100M", "--chunksize", "3K"}, "chunk"},
		{[]string{"create", "base", "snap", "--cow", "100M", "--discard-passdown-origin"}, "--discard-passdown-origin needs --discard-zeroes-cow"},
	} {
		code, _, errs := e.run(tt.args...)
		if code != exitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d %q; want exit 2 with %q", tt.args, code, errs, tt.want)
		}
	}
	// With valid flags, the missing pool is what is reported.
	if code, _, errs := e.run("create", "base", "snap", "--cow", "20%FREE"); code == 0 || !strings.Contains(errs, "no default pool") {
		t.Errorf("valid flags, no pool: exit %d %q", code, errs)
	}
}
