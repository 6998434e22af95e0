package zfs

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// SnapshotSet is one commit point: a snapshot, optionally a bookmark of it,
// and user properties set on the snapshot.
type SnapshotSet struct {
	Snapshot string            // dataset@name
	Bookmark string            // dataset#name; "" for none
	Props    map[string]string // user properties (module:property) on the snapshot
}

// commitProgram is the channel program of [Runner.CommitSnapshots].
//
//go:embed program_commit.lua
var commitProgram []byte

// CommitSnapshots creates every set in one channel program (`zfs program`):
// one transaction group, no administrative command in between, and the
// snapshots visible with their properties and bookmarks together or not at
// all. Everything that can be checked is checked before the first change,
// and a failure after it destroys the snapshots made in the same program,
// so nothing of a failed commit is ever seen. All sets must be in one pool.
// A snapshot name must be new: ErrExists names the one that is not.
//
// This replaces `zfs snapshot` + `zfs set` + `zfs bookmark` (three commands,
// three transaction groups, and a crash between them leaves a half-made
// commit point).
func (r *Runner) CommitSnapshots(ctx context.Context, sets ...SnapshotSet) error {
	if len(sets) == 0 {
		return errors.New("zfs program: no snapshots to commit")
	}
	pool := ""
	var argv []string
	for _, s := range sets {
		if err := checkPointName(s.Snapshot, Snapshot); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		ds, _, _ := strings.Cut(s.Snapshot, "@")
		p, _, _ := strings.Cut(ds, "/")
		if pool == "" {
			pool = p
		} else if p != pool {
			return fmt.Errorf("commit: %s and %s are in different pools; one channel program runs in one pool", sets[0].Snapshot, s.Snapshot)
		}
		if s.Bookmark != "" {
			if err := checkPointName(s.Bookmark, Bookmark); err != nil {
				return fmt.Errorf("commit %s: %w", s.Snapshot, err)
			}
			if bds, _, _ := strings.Cut(s.Bookmark, "#"); bds != ds {
				return fmt.Errorf("commit %s: bookmark %s is of another dataset: %w", s.Snapshot, s.Bookmark, ErrInvalidName)
			}
		}
		keys := make([]string, 0, len(s.Props))
		for k, v := range s.Props {
			if err := CheckUserProperty(k); err != nil {
				return fmt.Errorf("commit %s: %w", s.Snapshot, err)
			}
			if strings.ContainsAny(v, "\t\n") || len(v) >= 8192 {
				return fmt.Errorf("commit %s: value of %s: tab, newline or over 8191 bytes: %w", s.Snapshot, k, ErrInvalidName)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		argv = append(argv, s.Snapshot, s.Bookmark, strconv.Itoa(len(keys)))
		for _, k := range keys {
			argv = append(argv, k, s.Props[k])
		}
	}
	args := append([]string{"program", pool, "-"}, argv...)
	var out bytes.Buffer
	err := r.Run(ctx, BinZFS, args, sets[0].Snapshot, bytes.NewReader(commitProgram), &out)
	if err != nil {
		return programError(sets[0].Snapshot, err)
	}
	return nil
}

// programFailure is the error() line of the commit program in zfs
// program's stderr: `[string "channel program"]:27: snapshot a@b: errno 17`.
var programFailure = regexp.MustCompile(`\]:\d+: (.+): errno (\d+)`)

// programError names what the program refused and maps its errno to the
// package's typed errors.
func programError(first string, err error) error {
	var ce *CommandError
	if !errors.As(err, &ce) {
		return fmt.Errorf("commit %s: %w", first, err)
	}
	m := programFailure.FindStringSubmatch(ce.Stderr)
	if m == nil {
		return fmt.Errorf("commit %s: %w", first, err)
	}
	what := m[1]
	switch m[2] {
	case "17": // EEXIST
		return fmt.Errorf("commit: %s already exists (nothing was created): %w", what, ErrExists)
	case "2": // ENOENT
		return fmt.Errorf("commit: %s: dataset does not exist (nothing was created): %w", what, ErrDatasetNotFound)
	case "28": // ENOSPC
		return fmt.Errorf("commit: %s: out of space (nothing was created): %w", what, err)
	}
	return fmt.Errorf("commit: %s failed with errno %s (nothing was created): %w", what, m[2], err)
}
