package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMonitorBadInput: every bad flag fails at start with a clear message
// and a non-zero exit, before a device or port is touched.
func TestMonitorBadInput(t *testing.T) {
	e := newCLIEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := e.path("file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	badState := e.path("badstate")
	if err := os.Mkdir(badState, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(badState, stateFileName),
		[]byte(`{"version":1,"pools":{"p":{"uuid":"x","autoextend":{"autoextend_threshold":20,"autoextend_percent":20}}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"monitor", "--autoextend-threshold", "40"}, 2, "want 50 to 100 (100 turns auto-extend off)"},
		{[]string{"monitor", "--autoextend-threshold", "101"}, 2, "want 50 to 100"},
		{[]string{"monitor", "--autoextend-percent", "0"}, 2, "want 1 to 1000"},
		{[]string{"monitor", "--interval", "1ms"}, 2, "want 50ms to 10m0s"},
		{[]string{"monitor", "extra"}, 2, "takes no arguments"},
		{[]string{"monitor", "--textfile", e.path("missing")}, 1, "no such file or directory"},
		{[]string{"monitor", "--textfile", file}, 1, "not a directory"},
		{[]string{"monitor", "--listen", busy.Addr().String()}, 1, "address already in use"},
		{[]string{"monitor", "--listen", "nonsense"}, 1, "listen on nonsense"},
		{[]string{"--config-dir", badState, "monitor"}, 1, "pool p: autoextend threshold 20%: want 50 to 100"},
	} {
		code, _, errs := e.run(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d (want %d): %s (want %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}
}
