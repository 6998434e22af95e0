package replicate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dmsnap/dmsnap/zfs"
)

// Replication records. After every successful receive, replicate sets the
// user property RecordPropertyPrefix+<hash of the target> on the sender dataset
// to "<guid> <target>": the newest snapshot that target has. `zfs prune`
// protects every recorded guid, so replicating one dataset to several
// targets keeps each target's base, not only the one #dmsnap-last-sent
// points at. User properties stay on the sender (replicate never sends
// properties) and survive a lost config directory.
const RecordPropertyPrefix = "dmsnap:sent-"

// Record is one replication record.
type Record struct {
	Prop   string
	GUID   uint64
	Target string // "[HOST:]DATASET"
}

// TargetID names a replication target: "backup/vol", or "host1:backup/vol"
// with --to-host.
func TargetID(host, target string) string {
	if host == "" {
		return target
	}
	return host + ":" + target
}

// RecordProperty is the record property of a target.
func RecordProperty(target string) string {
	h := sha256.Sum256([]byte(target))
	return RecordPropertyPrefix + hex.EncodeToString(h[:8])
}

func ParseRecord(prop, val string) (Record, error) {
	g, tgt, ok := strings.Cut(val, " ")
	n, err := strconv.ParseUint(g, 10, 64)
	if !ok || err != nil || n == 0 || tgt == "" {
		return Record{}, fmt.Errorf("replication record %s = %q: want \"<guid> <target>\"", prop, val)
	}
	return Record{Prop: prop, GUID: n, Target: tgt}, nil
}

// Base is a guid prune must keep, with why.
type Base struct {
	GUID      uint64 `json:"guid,string"`
	CreateTXG uint64 `json:"createtxg"`
	// Source is "#dmsnap-last-sent" or "sent to TARGET (PROPERTY)".
	Source string `json:"source"`
}

// Bases returns the replication bases of dataset: the guid of
// its #dmsnap-last-sent bookmark and of every replication record, oldest
// first. A record that does not parse, or whose guid is no longer a
// snapshot or bookmark of the dataset (its target's chain is broken, and
// nothing can be pruned against it), is an error wrapping
// zfs.ErrDatasetNotFound; the other bases are returned with it.
func Bases(ctx context.Context, r *zfs.Runner, dataset string, pts []zfs.Point) ([]Base, error) {
	txg := map[uint64]uint64{}
	for _, p := range pts {
		txg[p.GUID] = p.CreateTXG
	}
	var out []Base
	last := zfs.BookmarkFullName(dataset, zfs.LastSentBookmark)
	for _, p := range pts {
		if p.Name == last {
			out = append(out, Base{GUID: p.GUID, CreateTXG: p.CreateTXG, Source: "#" + zfs.LastSentBookmark})
		}
	}
	props, err := r.UserProperties(ctx, dataset, RecordPropertyPrefix)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(props)) {
		rec, err := ParseRecord(k, props[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w; remove it with: zfs inherit %s %s: %w", dataset, err, k, dataset, zfs.ErrDatasetNotFound))
			continue
		}
		t, ok := txg[rec.GUID]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: the replication base of %s (guid %d, property %s) is neither a snapshot nor a bookmark of %s any more: "+
				"that target's incremental chain is broken (its next replicate needs --allow-full --force-rollback); "+
				"to stop protecting it: zfs inherit %s %s: %w",
				dataset, rec.Target, rec.GUID, k, dataset, k, dataset, zfs.ErrDatasetNotFound))
			continue
		}
		out = append(out, Base{GUID: rec.GUID, CreateTXG: t, Source: fmt.Sprintf("sent to %s (%s)", rec.Target, k)})
	}
	slices.SortStableFunc(out, func(a, b Base) int { return cmp.Compare(a.CreateTXG, b.CreateTXG) })
	return out, errors.Join(errs...)
}
