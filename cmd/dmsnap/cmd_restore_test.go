package main

import (
	"strings"
	"testing"
)

// TestRestoreUsage: malformed arguments are usage errors (exit 2) found
// before anything is touched.
func TestRestoreUsage(t *testing.T) {
	e := newCLIEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", "tank/vol@s"}, "restore needs ZPOOL/DATASET@SNAP [POOL/]VOLUME"},
		{[]string{"restore", "tank/vol#dmsnap-1", "p/base"}, "is a bookmark: it holds no data"},
		{[]string{"restore", "tank/vol", "p/base"}, "not a zvol snapshot name"},
		{[]string{"restore", "tank@s", "p/base"}, "not a zvol snapshot name"},
		{[]string{"restore", "tank/vol@s", "p/ba d"}, "invalid name"},
		{[]string{"restore", "--verify", "--no-verify", "tank/vol@s", "p/base"}, "exclude each other"},
	} {
		code, _, errs := e.run(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 mentioning %q", tc.args, code, errs, tc.want)
		}
	}
}
