package zfs

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunPassesArgvVerbatim(t *testing.T) {
	f := newFake(t, map[string]reply{
		"/sbin/zfs send -i tank/vol#b 1 tank/vol@s2": {stdout: "STREAM"},
		"zpool status -x": {stdout: "all pools are healthy\n"},
	})
	obs := &observed{}
	r := &Runner{ZFS: "/sbin/zfs", Exec: f, Observer: obs}
	var out bytes.Buffer
	if err := r.Run(context.Background(), BinZFS, []string{"send", "-i", "tank/vol#b 1", "tank/vol@s2"}, "tank/vol@s2", nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "STREAM" {
		t.Errorf("stdout %q", out.String())
	}
	if err := r.Run(context.Background(), BinZPool, []string{"status", "-x"}, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"zfs send", "zpool status"}; !slices.Equal(obs.calls, want) {
		t.Errorf("observer saw %q, want %q", obs.calls, want)
	}
	if err := r.Run(context.Background(), "sh", []string{"-c", "true"}, "", nil, nil); err == nil {
		t.Error("Run accepted a binary other than zfs/zpool")
	}
}

func TestRunObserverVerbIsBounded(t *testing.T) {
	f := newFake(t, map[string]reply{"zfs frobnicate-12345 x": {}})
	obs := &observed{}
	r := &Runner{Exec: f, Observer: obs}
	if err := r.Run(context.Background(), BinZFS, []string{"frobnicate-12345", "x"}, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if obs.calls[0] != "zfs other" {
		t.Errorf("verb label %q, want %q", obs.calls[0], "zfs other")
	}
}

func TestRunErrorQuotesCommandAndStderr(t *testing.T) {
	stderr := readTestdata(t, "zfs-2.3.2-stderr-list-missing.txt")
	f := newFake(t, map[string]reply{"zfs get -Hp -o property,value guid tank/nope": {stderr: stderr, err: errExit1}})
	obs := &observed{}
	r := &Runner{Exec: f, Observer: obs}
	_, err := r.Get(context.Background(), "tank/nope", "guid")
	if !errors.Is(err, ErrDatasetNotFound) || !errors.Is(err, errExit1) {
		t.Fatalf("err %v: want ErrDatasetNotFound and the exit error", err)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Dataset != "tank/nope" || ce.Stderr != stderr {
		t.Fatalf("CommandError %+v", ce)
	}
	want := `zfs get tank/nope: dataset does not exist (stderr: "cannot open 'tank/nope': dataset does not exist")`
	if err.Error() != want {
		t.Errorf("Error()\n got %s\nwant %s", err, want)
	}
	if !errors.Is(obs.errs[0], ErrDatasetNotFound) {
		t.Errorf("observer got err %v", obs.errs[0])
	}
}

func TestRunNotInstalled(t *testing.T) {
	for _, path := range []string{"/nonexistent/dir/zfs", "dmsnap-no-such-zfs-binary"} {
		r := &Runner{ZFS: path}
		_, err := r.Version(context.Background())
		if !errors.Is(err, ErrZFSNotInstalled) {
			t.Errorf("%s: err %v, want ErrZFSNotInstalled", path, err)
		}
		if errors.Is(err, ErrNoModule) {
			t.Errorf("%s: not-installed also claims no module", path)
		}
	}
}

func TestExecExecutorPlumbing(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	r := &Runner{ZFS: cat}
	var out bytes.Buffer
	if err := r.Run(context.Background(), BinZFS, nil, "", strings.NewReader("stream bytes #not a comment"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "stream bytes #not a comment" {
		t.Errorf("stdout %q", out.String())
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	r = &Runner{ZFS: sh}
	err = r.Run(context.Background(), BinZFS, []string{"-c", "echo 'cannot destroy '\\''tank/v@s'\\'': dataset is busy' >&2; exit 1"}, "tank/v@s", nil, nil)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err %v, want ErrBusy", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit error not reachable: %v", err)
	}
}

func TestExecExecutorCancel(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := &Runner{ZFS: sleep}
	start := time.Now()
	err = r.Run(ctx, BinZFS, []string{"30"}, "", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %v", d)
	}
}
