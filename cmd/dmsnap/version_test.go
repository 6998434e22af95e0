package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersionFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/dmsnap/dmsnap", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-02T00:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	v := buildVersion(bi)
	if v.Version != "v1.2.3" || v.Revision != "abc123" || v.Time != "2026-12-02T00:00:00Z" || !v.Modified || v.GoVersion != "go1.99" {
		t.Fatalf("buildVersion = %+v", v)
	}
	if v := buildVersion(nil); v.Version != "(devel)" || v.Revision != "" {
		t.Fatalf("buildVersion(nil) = %+v", v)
	}
}

func TestVersionWithKernel(t *testing.T) {
	var out bytes.Buffer
	gopts := &globalOptions{stdout: &out, JSON: true}
	f := newFakeDM(t)
	if err := runVersion(gopts, func() (deviceMapper, error) { return f, nil }); err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if v.DM != "4.47.0" || v.Targets["snapshot"] != "1.16.0" || v.DMError != "" {
		t.Fatalf("version = %+v", v)
	}
	out.Reset()
	gopts.JSON = false
	if err := runVersion(gopts, func() (deviceMapper, error) { return f, nil }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"device-mapper: 4.47.0", "target snapshot: 1.16.0", "target snapshot-merge: not loaded"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// Without /dev/mapper/control the build part is printed and it succeeds.
func TestVersionWithoutDeviceMapper(t *testing.T) {
	var out bytes.Buffer
	gopts := &globalOptions{stdout: &out}
	err := runVersion(gopts, func() (deviceMapper, error) { return nil, errors.New("no control node") })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "dmsnap ") || !strings.Contains(out.String(), "device-mapper: unavailable (no control node)") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestVersionFlagAndCommand(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"version", "--json"}} {
		var out, errb bytes.Buffer
		if code := run(t.Context(), append([]string{"dmsnap"}, args...), &out, &errb); code != 0 || !strings.Contains(out.String(), "dmsnap") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"dmsnap", "version", "extra"}, &out, &errb); code != 2 {
		t.Errorf("version extra: exit %d, want 2 (stderr %q)", code, errb.String())
	}
}
