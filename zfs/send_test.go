package zfs

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSendArgs(t *testing.T) {
	for _, tc := range []struct {
		s    Send
		want string
	}{
		{Send{To: snap3}, "send " + snap3},
		{Send{From: snap2, To: snap3, Incremental: true}, "send -i " + snap2 + " " + snap3},
		{Send{From: book2, To: snap3, Incremental: true}, "send -i " + book2 + " " + snap3},
		{Send{From: snap1, To: snap3, Incremental: true, Intermediates: true}, "send -I " + snap1 + " " + snap3},
		{Send{ResumeToken: "1-abc-10-789c"}, "send -t 1-abc-10-789c"},
	} {
		if got := strings.Join(SendArgs(tc.s), " "); got != tc.want {
			t.Errorf("SendArgs = %q, want %q", got, tc.want)
		}
		est := SendEstimateArgs(tc.s)
		if !slices.Equal(est[:2], []string{"send", "-nvP"}) || !slices.Equal(est[2:], SendArgs(tc.s)[1:]) {
			t.Errorf("SendEstimateArgs = %q", est)
		}
	}
	if got := strings.Join(ReceiveArgs("backup/vol", false), " "); got != "receive -s -u backup/vol" {
		t.Errorf("ReceiveArgs = %q", got)
	}
	if got := strings.Join(ReceiveArgs("backup/vol", true), " "); got != "receive -s -u -F backup/vol" {
		t.Errorf("ReceiveArgs force = %q", got)
	}
}

func TestParseSendEstimate(t *testing.T) {
	for file, want := range map[string]uint64{
		"zfs-2.3.2-send-nvP-incremental.txt":    5349376,
		"zfs-2.3.2-send-nvP-full.txt":           67661824,
		"zfs-2.3.2-send-nvP-package.txt":        5349376,
		"zfs-2.3.2-send-nvP-vm-full.txt":        1070704,
		"zfs-2.3.2-send-nvP-vm-incremental.txt": 1073264,
	} {
		got, err := ParseSendEstimate([]byte(readTestdata(t, file)))
		if err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", file, got, err, want)
		}
	}
	for _, bad := range []string{"", "full\ttank/vol@s\t100\n", "size\t\n", "size\t12K\n", "size\t-1\n", "size\t1\nsize\t2\n",
		"send from tank/vol@a to tank/vol@b estimated size is 18.4G\n"} {
		if _, err := ParseSendEstimate([]byte(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

func TestRunnerSendReceive(t *testing.T) {
	f := newFake(t, map[string]reply{
		"zfs send -nvP -i " + book2 + " " + snap3: {stdout: readTestdata(t, "zfs-2.3.2-send-nvP-incremental.txt")},
		"zfs send -i " + book2 + " " + snap3:      {stdout: "STREAM"},
		"zfs receive -s -u backup/vol":            {stderr: readTestdata(t, "zfs-2.3.2-stderr-receive-mismatch.txt"), err: errExit1},
		"zfs receive -s -u -F backup/vol":         {},
	})
	r := &Runner{Exec: f}
	ctx := context.Background()
	s := Send{From: book2, To: snap3, Incremental: true}
	if n, err := r.SendEstimate(ctx, s); err != nil || n != 5349376 {
		t.Fatalf("estimate %d %v", n, err)
	}
	var stream bytes.Buffer
	if err := r.Send(ctx, s, &stream); err != nil || stream.String() != "STREAM" {
		t.Fatalf("send %q %v", stream.String(), err)
	}
	if err := r.Receive(ctx, "backup/vol", false, strings.NewReader("STREAM")); !errors.Is(err, ErrIncrementalMismatch) {
		t.Errorf("receive: %v", err)
	}
	if err := r.Receive(ctx, "backup/vol", true, strings.NewReader("STREAM")); err != nil {
		t.Errorf("receive -F: %v", err)
	}
	if f.stdins[2] != "STREAM" || f.stdins[3] != "STREAM" {
		t.Errorf("receive stdin %q", f.stdins)
	}
}
