package main

import (
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

func TestParseArgsStopsAtProgram(t *testing.T) {
	args := []string{"--kernel", "backports", "--timeout", "300s", "-env", "A=1", "--env=B=2",
		"--modules", "dm-thin-pool,crc32c_generic", "--modules", "/x/zfs.ko",
		"/tmp/go-build1/b001/dm.test", "-test.v", "--timeout", "1s", "-test.run=X"}
	o, err := parseArgs(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.kernel != "backports" || o.timeout != 300*time.Second || o.memMiB != 1024 || o.smp != 1 || o.kvm != "auto" {
		t.Errorf("options = %+v", o)
	}
	if o.program != "/tmp/go-build1/b001/dm.test" {
		t.Errorf("program = %q", o.program)
	}
	if want := []string{"-test.v", "--timeout", "1s", "-test.run=X"}; !reflect.DeepEqual(o.args, want) {
		t.Errorf("args = %q, want %q", o.args, want)
	}
	if want := []string{"A=1", "B=2"}; !reflect.DeepEqual(o.env, want) {
		t.Errorf("env = %q", o.env)
	}
	if want := []string{"dm-thin-pool", "crc32c_generic", "/x/zfs.ko"}; !reflect.DeepEqual(o.modules, want) {
		t.Errorf("modules = %q", o.modules)
	}
}

func TestParseArgsDefaultsAndErrors(t *testing.T) {
	env := map[string]string{kernelEnv: "backports"}
	o, err := parseArgs([]string{"--timeout", "90", "--", "-prog"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.kernel != "backports" || o.timeout != 90*time.Second || o.program != "-prog" {
		t.Errorf("options = %+v", o)
	}
	o, err = parseArgs([]string{"--setup"}, func(string) string { return "" }, io.Discard)
	if err != nil || !o.setup || o.program != "" {
		t.Errorf("--setup: %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{},
		{"--kernel", "sid", "true"},
		{"--kvm", "maybe", "true"},
		{"--timeout", "-5s", "true"},
		{"--timeout", "soon", "true"},
		{"--mem", "16", "true"},
		{"--smp", "0", "true"},
		{"--env", "NOVALUE", "true"},
		{"--env", "=v", "true"},
		{"--setup", "true"},
		{"--no-such-flag", "true"},
	} {
		if _, err := parseArgs(bad, func(string) string { return "" }, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseArgs(%q) err = %v, want errUsage", bad, err)
		}
	}
	if _, err := parseArgs([]string{"true"}, func(string) string { return "sid" }, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("bad %s accepted: %v", kernelEnv, err)
	}
}
