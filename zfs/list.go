package zfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type Kind -linecomment -output kind_string.go

// Kind says whether a [Point] is a snapshot or a bookmark.
type Kind uint8

// Kinds, spelled as zfs(8) prints the type property.
const (
	Snapshot Kind = iota + 1 // snapshot
	Bookmark                 // bookmark
)

// Point is one snapshot or bookmark of a dataset: a point in its history.
// A bookmark made from a snapshot has the snapshot's GUID and CreateTXG,
// so the two are the same point; GUID is the identity across pools (a
// received snapshot keeps the sender's GUID), CreateTXG the order within
// one pool. Creation has one-second resolution and is for display only.
type Point struct {
	Name      string // full name: pool/vol@snap or pool/vol#bm
	Kind      Kind
	GUID      uint64
	CreateTXG uint64
	Creation  time.Time
}

// Short returns the part after '@' or '#'.
func (p Point) Short() string {
	if i := strings.IndexAny(p.Name, "@#"); i >= 0 {
		return p.Name[i+1:]
	}
	return p.Name
}

// Dataset returns the part before '@' or '#'.
func (p Point) Dataset() string {
	if i := strings.IndexAny(p.Name, "@#"); i >= 0 {
		return p.Name[:i]
	}
	return p.Name
}

// ListArgs returns the zfs(8) arguments that list the snapshots and
// bookmarks of dataset in the form [ParseList] reads:
//
//	zfs list -Hp -d 1 -t snapshot,bookmark -o name,guid,createtxg,creation,type -s createtxg DATASET
//
// Columns: name, guid (decimal u64), createtxg (decimal u64), creation
// (Unix seconds, because of -p), type ("snapshot" or "bookmark"),
// tab-separated without a header (-H). "-d 1" is needed: zfs_main.c limits
// the depth by itself only when -t names exactly one of snapshot or
// bookmark (from OpenZFS 2.3.2 cmd/zfs/zfs_main.c zfs_do_list; to be
// verified in tests/loopback).
func ListArgs(dataset string) []string {
	return []string{"list", "-Hp", "-d", "1", "-t", "snapshot,bookmark",
		"-o", "name,guid,createtxg,creation,type", "-s", "createtxg", dataset}
}

// ParseList parses the output of [ListArgs] for dataset and returns its
// points sorted by [SortPoints]. Lines of other datasets are an error
// (the listing must be of dataset alone). Errors wrap [ErrSyntax] and
// quote the line.
func ParseList(dataset string, out []byte) ([]Point, error) {
	var pts []Point
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		p, err := parseListLine(line)
		if err != nil {
			return nil, fmt.Errorf("zfs list line %d %q: %w", n, line, err)
		}
		if p.Dataset() != dataset {
			return nil, fmt.Errorf("zfs list line %d %q: not of dataset %q: %w", n, line, dataset, ErrSyntax)
		}
		pts = append(pts, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("zfs list: %v: %w", err, ErrSyntax)
	}
	if err := SortPoints(pts); err != nil {
		return nil, err
	}
	return pts, nil
}

func parseListLine(line string) (Point, error) {
	f := strings.Split(line, "\t")
	if len(f) != 5 {
		return Point{}, fmt.Errorf("want 5 tab-separated fields, have %d: %w", len(f), ErrSyntax)
	}
	var p Point
	switch f[4] {
	case "snapshot":
		p.Kind = Snapshot
	case "bookmark":
		p.Kind = Bookmark
	default:
		return Point{}, fmt.Errorf("type %q: %w", f[4], ErrSyntax)
	}
	if err := checkPointName(f[0], p.Kind); err != nil {
		return Point{}, err
	}
	p.Name = f[0]
	var err error
	if p.GUID, err = strconv.ParseUint(f[1], 10, 64); err != nil || p.GUID == 0 {
		return Point{}, fmt.Errorf("guid %q: %w", f[1], ErrSyntax)
	}
	if p.CreateTXG, err = strconv.ParseUint(f[2], 10, 64); err != nil || p.CreateTXG == 0 {
		return Point{}, fmt.Errorf("createtxg %q: %w", f[2], ErrSyntax)
	}
	sec, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || sec < 0 {
		return Point{}, fmt.Errorf("creation %q: %w", f[3], ErrSyntax)
	}
	p.Creation = time.Unix(sec, 0).UTC()
	return p, nil
}

// checkPointName checks that name is DATASET@x (snapshot) or DATASET#x
// (bookmark) with exactly one separator and non-empty parts.
func checkPointName(name string, k Kind) error {
	sep := "@"
	if k == Bookmark {
		sep = "#"
	}
	ds, short, ok := strings.Cut(name, sep)
	if !ok || ds == "" || short == "" || strings.ContainsAny(ds, "@#") || strings.ContainsAny(short, "@#/") {
		return fmt.Errorf("%s name %q: %w", k, name, ErrInvalidName)
	}
	if err := CheckDatasetName(ds); err != nil {
		return err
	}
	return nil
}

// CheckDatasetName rejects names zfs(8) would reject or that could be
// mistaken for options: empty, starting with '-' or '/', containing '@',
// '#', whitespace, control characters, or empty components.
func CheckDatasetName(ds string) error {
	if ds == "" || ds[0] == '-' || strings.ContainsAny(ds, "@#") {
		return fmt.Errorf("dataset name %q: %w", ds, ErrInvalidName)
	}
	for _, c := range strings.Split(ds, "/") {
		if c == "" {
			return fmt.Errorf("dataset name %q: %w", ds, ErrInvalidName)
		}
	}
	for _, r := range ds {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("dataset name %q: %w", ds, ErrInvalidName)
		}
	}
	return nil
}

// SortPoints sorts pts in place by CreateTXG; a snapshot comes before the
// bookmarks of the same point, and bookmarks of one point are ordered by
// name. It never looks at names or Creation for ordering across points.
// Within one dataset no two snapshots share a txg (module/zfs/dsl_dataset.c
// "We don't allow multiple snapshots of the same txg") and a bookmark
// carries its snapshot's GUID and createtxg, so two points with the same
// CreateTXG but different GUIDs (or the same GUID but different
// CreateTXGs) mean the listing mixes datasets: SortPoints returns an error
// wrapping [ErrSyntax].
func SortPoints(pts []Point) error {
	slices.SortStableFunc(pts, comparePoints)
	byGUID := make(map[uint64]uint64, len(pts))
	for i, p := range pts {
		if txg, ok := byGUID[p.GUID]; ok && txg != p.CreateTXG {
			return fmt.Errorf("guid %d has createtxg %d and %d: %w", p.GUID, txg, p.CreateTXG, ErrSyntax)
		}
		byGUID[p.GUID] = p.CreateTXG
		if i > 0 && pts[i-1].CreateTXG == p.CreateTXG && pts[i-1].GUID != p.GUID {
			return fmt.Errorf("%s and %s share createtxg %d with different guids: %w", pts[i-1].Name, p.Name, p.CreateTXG, ErrSyntax)
		}
	}
	return nil
}

func comparePoints(a, b Point) int {
	if a.CreateTXG != b.CreateTXG {
		if a.CreateTXG < b.CreateTXG {
			return -1
		}
		return 1
	}
	if a.Kind != b.Kind {
		return int(a.Kind) - int(b.Kind)
	}
	return strings.Compare(a.Name, b.Name)
}

// Points lists the snapshots and bookmarks of dataset in createtxg order
// (see [ListArgs], [ParseList]). Errors: [ErrDatasetNotFound],
// [ErrZFSNotInstalled], [ErrNoModule], [ErrSyntax].
func (r *Runner) Points(ctx context.Context, dataset string) ([]Point, error) {
	if err := CheckDatasetName(dataset); err != nil {
		return nil, err
	}
	out, err := r.output(ctx, dataset, ListArgs(dataset)...)
	if err != nil {
		return nil, err
	}
	return ParseList(dataset, out)
}
