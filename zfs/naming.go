package zfs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Names of dmsnap's snapshots and bookmarks. A name records when and in
// which ingest the point was made, for people; programs order points by
// createtxg and identify them by guid, never by name.
const (
	// NamePrefix starts every dmsnap snapshot and bookmark name.
	NamePrefix = "dmsnap-"
	// LastSentBookmark is the stable bookmark (short name) moved to the
	// newest successfully replicated snapshot.
	LastSentBookmark = "dmsnap-last-sent"
	// nameTimeLayout is UTC, second resolution, no separators that zfs
	// rejects.
	nameTimeLayout = "20060102T150405Z"
)

// SnapshotName returns the short name of an ingest snapshot:
// "dmsnap-20261122T101500Z-000042" for t (converted to UTC, truncated to
// the second) and sequence number seq.
func SnapshotName(t time.Time, seq uint64) string {
	return fmt.Sprintf("%s%s-%06d", NamePrefix, t.UTC().Format(nameTimeLayout), seq)
}

// ParseSnapshotName parses a short name made by [SnapshotName]. ok is
// false for any other name (including [LastSentBookmark]).
func ParseSnapshotName(short string) (t time.Time, seq uint64, ok bool) {
	rest, found := strings.CutPrefix(short, NamePrefix)
	if !found {
		return time.Time{}, 0, false
	}
	ts, seqs, found := strings.Cut(rest, "-")
	if !found || len(seqs) < 6 || seqs[0] == '+' {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(nameTimeLayout, ts)
	if err != nil {
		return time.Time{}, 0, false
	}
	seq, err = strconv.ParseUint(seqs, 10, 64)
	if err != nil {
		return time.Time{}, 0, false
	}
	if SnapshotName(t, seq) != short {
		return time.Time{}, 0, false
	}
	return t, seq, true
}

// SnapshotFullName returns "dataset@short".
func SnapshotFullName(dataset, short string) string { return dataset + "@" + short }

// BookmarkFullName returns "dataset#short".
func BookmarkFullName(dataset, short string) string { return dataset + "#" + short }

// BookmarkFor returns the per-snapshot bookmark name of a full snapshot
// name: "pool/vol@dmsnap-…" → "pool/vol#dmsnap-…". It returns "" if
// snapshot has no '@'.
func BookmarkFor(snapshot string) string {
	ds, short, ok := strings.Cut(snapshot, "@")
	if !ok {
		return ""
	}
	return BookmarkFullName(ds, short)
}

// IsOurs reports whether a point's short name is one dmsnap makes: an
// ingest snapshot, its per-snapshot bookmark, or [LastSentBookmark].
func IsOurs(p Point) bool {
	short := p.Short()
	if p.Kind == Bookmark && short == LastSentBookmark {
		return true
	}
	_, _, ok := ParseSnapshotName(short)
	return ok
}
