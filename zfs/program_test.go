package zfs

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCommitSnapshotsArgv(t *testing.T) {
	key := "zfs program tank - tank/a@s1 tank/a#s1 2 dmsnap:origin vg0/db dmsnap:seq 7 tank/b@s1  0"
	f := newFake(t, map[string]reply{key: {stdout: "return: 2\n"}})
	r := &Runner{Exec: f}
	err := r.CommitSnapshots(context.Background(),
		SnapshotSet{Snapshot: "tank/a@s1", Bookmark: "tank/a#s1", Props: map[string]string{"dmsnap:seq": "7", "dmsnap:origin": "vg0/db"}},
		SnapshotSet{Snapshot: "tank/b@s1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.stdins) != 1 || f.stdins[0] != string(commitProgram) {
		t.Errorf("the program is not the channel program on stdin")
	}
}

func TestCommitSnapshotsRefusesBeforeRunning(t *testing.T) {
	tests := []struct {
		sets []SnapshotSet
		want string
	}{
		{nil, "no snapshots"},
		{[]SnapshotSet{{Snapshot: "tank/a"}}, `snapshot name "tank/a"`},
		{[]SnapshotSet{{Snapshot: "-o@x"}}, `dataset name "-o"`},
		{[]SnapshotSet{{Snapshot: "tank/a@s"}, {Snapshot: "other/b@s"}}, "different pools"},
		{[]SnapshotSet{{Snapshot: "tank/a@s", Bookmark: "tank/b#s"}}, "of another dataset"},
		{[]SnapshotSet{{Snapshot: "tank/a@s", Bookmark: "tank/a@s"}}, `bookmark name "tank/a@s"`},
		{[]SnapshotSet{{Snapshot: "tank/a@s", Props: map[string]string{"origin": "x"}}}, `user property "origin"`},
		{[]SnapshotSet{{Snapshot: "tank/a@s", Props: map[string]string{"dmsnap:x": "a\tb"}}}, "tab, newline"},
		{[]SnapshotSet{{Snapshot: "tank/a@s", Props: map[string]string{"dmsnap:x": strings.Repeat("v", 8192)}}}, "over 8191"},
	}
	for _, tt := range tests {
		f := newFake(t, nil)
		err := (&Runner{Exec: f}).CommitSnapshots(context.Background(), tt.sets...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.sets, err, tt.want)
		}
		if len(f.calls) != 0 {
			t.Errorf("%+v: ran %v before refusing", tt.sets, f.calls)
		}
	}
}

func TestCommitSnapshotsTypedErrors(t *testing.T) {
	stderr := "Channel program execution failed:\n[string \"channel program\"]:27: snapshot tank/b@s1: errno 17\nstack traceback:\n"
	key := "zfs program tank - tank/b@s1  0"
	f := newFake(t, map[string]reply{key: {stderr: stderr, err: errExit1}})
	err := (&Runner{Exec: f}).CommitSnapshots(context.Background(), SnapshotSet{Snapshot: "tank/b@s1"})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "snapshot tank/b@s1 already exists (nothing was created)") {
		t.Errorf("got %v", err)
	}
}
