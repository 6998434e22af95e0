package zfs

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustParseList(t testing.TB, dataset, file string) []Point {
	t.Helper()
	pts, err := ParseList(dataset, []byte(readTestdata(t, file)))
	if err != nil {
		t.Fatal(err)
	}
	return pts
}

func TestParseListGolden(t *testing.T) {
	pts := mustParseList(t, "tank/vol", "zfs-2.3.2-list-Hp-sender.txt")
	want := []string{
		"tank/vol@dmsnap-20261122T100000Z-000001",
		"tank/vol#dmsnap-20261122T100000Z-000001",
		"tank/vol@dmsnap-20261122T100000Z-000002",
		"tank/vol#dmsnap-20261122T100000Z-000002",
		"tank/vol#dmsnap-last-sent",
		"tank/vol@manual",
		"tank/vol@dmsnap-20261122T110500Z-000003",
	}
	if got := pointNames(pts); !slices.Equal(got, want) {
		t.Fatalf("order\n got %q\nwant %q", got, want)
	}
	p := pts[6]
	if p.Kind != Snapshot || p.GUID != 17706119220354061411 || p.CreateTXG != 1187 ||
		!p.Creation.Equal(time.Date(2026, 11, 22, 11, 5, 0, 0, time.UTC)) {
		t.Errorf("last point %+v", p)
	}
	if pts[4].Kind != Bookmark || pts[4].GUID != pts[2].GUID || pts[4].Short() != LastSentBookmark || pts[4].Dataset() != "tank/vol" {
		t.Errorf("last-sent bookmark %+v", pts[4])
	}
	// 000001 and 000002 share a creation second: only createtxg orders them.
	if !pts[0].Creation.Equal(pts[2].Creation) || pts[0].CreateTXG >= pts[2].CreateTXG {
		t.Errorf("fixture no longer exercises same-second creation")
	}
	if got := Kind(0).String(); got != "Kind(0)" {
		t.Errorf("Kind(0) = %q", got)
	}
	if Snapshot.String() != "snapshot" || Bookmark.String() != "bookmark" {
		t.Errorf("kind strings %q %q", Snapshot, Bookmark)
	}
}

// TestParseListCaptured reads listings captured from zfs 2.3.2 in the VM
// tier: a bookmark lists with its snapshot's guid and createtxg, and a
// received snapshot keeps the sender's guid under its own createtxg.
func TestParseListCaptured(t *testing.T) {
	snd := mustParseList(t, "tank/vol", "zfs-2.3.2-list-Hp-vm-sender.txt")
	if got, want := pointNames(snd), []string{"tank/vol@s1", "tank/vol#b1", "tank/vol@s2"}; !slices.Equal(got, want) {
		t.Fatalf("sender order %q, want %q", got, want)
	}
	if snd[1].Kind != Bookmark || snd[1].GUID != snd[0].GUID || snd[1].CreateTXG != snd[0].CreateTXG {
		t.Errorf("bookmark %+v, snapshot %+v", snd[1], snd[0])
	}
	rcv := mustParseList(t, "backup/vol", "zfs-2.3.2-list-Hp-vm-receiver.txt")
	if len(rcv) != 2 || rcv[0].GUID != snd[0].GUID || rcv[1].GUID != snd[2].GUID || rcv[0].CreateTXG == snd[0].CreateTXG {
		t.Errorf("receiver %+v, sender %+v", rcv, snd)
	}
}

func pointNames(pts []Point) []string {
	out := make([]string, len(pts))
	for i, p := range pts {
		out[i] = p.Name
	}
	return out
}

// TestSortPointsIgnoresNamesAndTimes: shuffled input with names and
// creation times that contradict createtxg still sorts by createtxg.
func TestSortPointsIgnoresNamesAndTimes(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pts []Point
	for i := range 50 {
		pts = append(pts, Point{
			Name:      "p/v@" + string(rune('z'-i%26)) + strings.Repeat("x", i),
			Kind:      Snapshot,
			GUID:      uint64(1000 + i),
			CreateTXG: uint64(10 + 3*i),
			Creation:  base.Add(-time.Duration(i) * time.Hour), // newer txg, older clock
		})
	}
	want := slices.Clone(pts)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		rng.Shuffle(len(pts), func(i, j int) { pts[i], pts[j] = pts[j], pts[i] })
		if err := SortPoints(pts); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pts, want) {
			t.Fatal("SortPoints did not restore createtxg order")
		}
	}
}

func TestSortPointsRejectsInconsistent(t *testing.T) {
	for name, pts := range map[string][]Point{
		"same txg, two guids": {
			{Name: "p/v@a", Kind: Snapshot, GUID: 1, CreateTXG: 5},
			{Name: "p/v@b", Kind: Snapshot, GUID: 2, CreateTXG: 5},
		},
		"same guid, two txgs": {
			{Name: "p/v@a", Kind: Snapshot, GUID: 1, CreateTXG: 5},
			{Name: "p/v#a", Kind: Bookmark, GUID: 1, CreateTXG: 6},
		},
	} {
		if err := SortPoints(pts); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: err %v, want ErrSyntax", name, err)
		}
	}
}

func TestParseListRejects(t *testing.T) {
	tab := "\t"
	good := "tank/vol@s" + tab + "1" + tab + "2" + tab + "3" + tab + "snapshot"
	if _, err := ParseList("tank/vol", []byte(good+"\n")); err != nil {
		t.Fatalf("good line rejected: %v", err)
	}
	for _, line := range []string{
		"tank/vol@s 1 2 3 snapshot",                         // spaces, not -H
		"NAME\tGUID\tCREATETXG\tCREATION\tTYPE",             // header
		"tank/vol@s\t1\t2\t3",                               // missing column
		"tank/vol@s\t1\t2\t3\tsnapshot\textra",              // extra column
		"tank/vol@s\t-1\t2\t3\tsnapshot",                    // bad guid
		"tank/vol@s\t0\t2\t3\tsnapshot",                     // zero guid
		"tank/vol@s\t1\t2.5K\t3\tsnapshot",                  // not -p
		"tank/vol@s\t1\t2\tSun Nov 22 10:00 2026\tsnapshot", // not -p
		"tank/vol@s\t1\t2\t3\tfilesystem",
		"tank/vol@s\t1\t2\t3\tbookmark", // '@' with bookmark type
		"tank/vol#s\t1\t2\t3\tsnapshot", // '#' with snapshot type
		"tank/vol@s@t\t1\t2\t3\tsnapshot",
		"tank/vol@\t1\t2\t3\tsnapshot",
		"tank/other@s\t1\t2\t3\tsnapshot", // other dataset
		"tank/vol/child@s\t1\t2\t3\tsnapshot",
		"tank/vol\t1\t2\t3\tsnapshot",
	} {
		if _, err := ParseList("tank/vol", []byte(line+"\n")); !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: err %v, want ErrSyntax or ErrInvalidName", line, err)
		}
	}
	if pts, err := ParseList("tank/vol", []byte(readTestdata(t, "zfs-2.3.2-list-Hp-empty.txt"))); err != nil || len(pts) != 0 {
		t.Errorf("empty listing: %v %v", pts, err)
	}
}

func TestRunnerPoints(t *testing.T) {
	f := newFake(t, map[string]reply{
		"zfs list -Hp -d 1 -t snapshot,bookmark -o name,guid,createtxg,creation,type -s createtxg tank/vol": {
			stdout: readTestdata(t, "zfs-2.3.2-list-Hp-sender.txt")},
		"zfs list -Hp -d 1 -t snapshot,bookmark -o name,guid,createtxg,creation,type -s createtxg tank/nope": {
			stderr: readTestdata(t, "zfs-2.3.2-stderr-list-missing.txt"), err: errExit1},
	})
	r := &Runner{Exec: f}
	pts, err := r.Points(context.Background(), "tank/vol")
	if err != nil || len(pts) != 7 {
		t.Fatalf("Points: %d %v", len(pts), err)
	}
	if _, err := r.Points(context.Background(), "tank/nope"); !errors.Is(err, ErrDatasetNotFound) {
		t.Errorf("missing dataset: %v", err)
	}
	if _, err := r.Points(context.Background(), "-o"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("option-like name: %v", err)
	}
	if len(f.calls) != 2 {
		t.Errorf("ran %d commands, want 2 (invalid name must not run zfs)", len(f.calls))
	}
}

func TestCheckDatasetName(t *testing.T) {
	for _, ok := range []string{"tank", "tank/vol", "tank/a.b_c-d:e"} {
		if err := CheckDatasetName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-F", "/tank", "tank/", "tank//v", "tank/v@s", "tank/v#b", "tank/v x", "tank/\tv", "tank/\x00"} {
		if err := CheckDatasetName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q accepted", bad)
		}
	}
}
