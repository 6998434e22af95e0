package zfs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCheckRemoteArg(t *testing.T) {
	for _, ok := range []string{"zfs", "receive", "-s", "-F", "backup/vol", "tank/vol#dmsnap-last-sent",
		"tank/vol@dmsnap-20261122T101500Z-000042", "name,guid,createtxg,creation,type", "1-e8a7c0a9b-c8-789c636064", "a=b+c:d.e_f"} {
		if err := CheckRemoteArg(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "#comment", "a b", "a;b", "a|b", "$(x)", "`x`", "a'b", `a"b`, "a\\b", "*", "a?", "a[1]",
		"{a,b}", "~root", "a&", "a>b", "a<b", "a%b", "a!b", "a\nb", "a\tb", "(x)"} {
		if err := CheckRemoteArg(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: err %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestRunViaPrefixesArgv(t *testing.T) {
	f := newFake(t, map[string]reply{
		"ssh -o BatchMode=yes backup1 zfs receive -s -u backup/vol": {},
		"ssh -o BatchMode=yes backup1 /sbin/zpool list -H":          {stdout: "backup\n"},
	})
	obs := &observed{}
	r := &Runner{Exec: f, Observer: obs, ZPool: "/sbin/zpool", Via: []string{"ssh", "-o", "BatchMode=yes", "backup1"}}
	ctx := context.Background()
	if err := r.Receive(ctx, "backup/vol", false, strings.NewReader("STREAM")); err != nil {
		t.Fatal(err)
	}
	if f.stdins[0] != "STREAM" {
		t.Errorf("stdin %q", f.stdins[0])
	}
	if err := r.Run(ctx, BinZPool, []string{"list", "-H"}, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	// The observer labels stay those of the zfs command, not of ssh.
	if want := []string{"zfs receive", "zpool list"}; !slices.Equal(obs.calls, want) {
		t.Errorf("observer %q, want %q", obs.calls, want)
	}
	// An argument the remote shell would reinterpret never runs.
	err := r.Run(ctx, BinZFS, []string{"destroy", "backup/vol@x;reboot"}, "backup/vol", nil, nil)
	if !errors.Is(err, ErrInvalidName) {
		t.Errorf("err %v, want ErrInvalidName", err)
	}
	if len(f.calls) != 2 {
		t.Errorf("ran %d commands, want 2: %q", len(f.calls), f.calls)
	}
}

func TestRunViaClassifiesMissingPrograms(t *testing.T) {
	ctx := context.Background()
	// A remote shell that cannot find zfs exits 127, and ssh passes that
	// status on: the real executor through sh(1) stands in for ssh.
	r := &Runner{Via: []string{"sh", "-c", `echo "sh: 1: $0: not found" >&2; exit 127`}}
	_, err := r.Version(ctx)
	if !errors.Is(err, ErrZFSNotInstalled) {
		t.Errorf("remote zfs missing: %v, want ErrZFSNotInstalled", err)
	}
	// Another failure of the remote side keeps its own classification.
	r = &Runner{Via: []string{"sh", "-c", `echo "cannot open 'x/y': dataset does not exist" >&2; exit 1`}}
	if _, err := r.Get(ctx, "x/y", "guid"); !errors.Is(err, ErrDatasetNotFound) {
		t.Errorf("remote missing dataset: %v", err)
	}
	// A missing wrapper (no ssh here) is not "zfs not installed".
	r = &Runner{Via: []string{"/nonexistent/ssh", "host"}}
	_, err = r.Version(ctx)
	if err == nil || errors.Is(err, ErrZFSNotInstalled) || !strings.Contains(err.Error(), "/nonexistent/ssh") {
		t.Errorf("missing wrapper: %v", err)
	}
}
