//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/zfs"
)

// pruneCrashArgs is the prune the crash test kills.
var pruneCrashArgs = []string{"--keep", "1", "--keep-bookmarks", "0"}

// prunePlan returns the points `zfs prune --dry-run` would destroy, in
// its order.
func prunePlan(t *testing.T, e *cliEnv, ds string) []jsonZFSPoint {
	t.Helper()
	out, _ := e.runOK(append([]string{"--json", "zfs", "prune", ds, "--dry-run"}, pruneCrashArgs...)...)
	var res jsonZFSPrune
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("prune --dry-run: %v: %q", err, out)
	}
	return res.Destroy
}

// datasetPoints is the set of a dataset's snapshots and bookmarks.
func datasetPoints(t *testing.T, ds string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(replPoints(t, ds)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	slices.Sort(out)
	return out
}

func planNames(pts []jsonZFSPoint) []string {
	var out []string
	for _, p := range pts {
		out = append(out, p.Name)
	}
	return out
}

// TestZFSPruneCrash kills `zfs prune --keep 1 --keep-bookmarks 0` at each
// step: after its plan (lock held, nothing destroyed) and after each
// destroy. The sender has s1, s2, s3 replicated one by one (s3 is the
// base: #dmsnap-last-sent and the target's record) and s4, s5 not
// replicated, so the plan holds the older snapshots and bookmarks. After
// each kill:
//  1. exactly the plan's oldest k points are gone (k = destroys before
//     the kill), nothing else: the plan goes oldest first and names no
//     replication base;
//  2. the base (s3, its bookmark, #dmsnap-last-sent) is there and the
//     record names it: `zfs ls` reports no broken chain;
//  3. a dry run now plans exactly the plan's remaining points, and a
//     prune run again (the killed one's dataset lock is gone with it)
//     destroys them and nothing else;
//  4. the next replicate goes incrementally from s3 and the target gets
//     s4, s5 and a new s6 with the sender's guids.
func TestZFSPruneCrash(t *testing.T) {
	testutil.RequireZFSTier(t)
	// The number of points the scenario's plan destroys, known after
	// the first setup; every k up to it is a kill point.
	var n int
	for k := 0; k == 0 || k <= n; k++ {
		fp := fpZFSPruneAfterPlan // k = 0: nothing destroyed
		if k > 0 {
			fp = fmt.Sprintf("%s@%d", fpZFSPruneAfterDestroy, k)
		}
		t.Run(fp, func(t *testing.T) {
			ctx := t.Context()
			srcPool, dstPool := testutil.ScratchZpool(t, 128<<20), testutil.ScratchZpool(t, 128<<20)
			src, dst := srcPool+"/vol", dstPool+"/vol"
			const size = 8 << 20
			r := &zfs.Runner{}
			if err := r.CreateVolume(ctx, src, size, 16<<10, true); err != nil {
				t.Fatal(err)
			}
			dev, err := r.ZvolDevice(ctx, src, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			e := newCLIEnv(t)
			var snaps []string
			for seq := uint64(1); seq <= 5; seq++ {
				s, _ := replSnapshot(t, src, dev, seq, int64(seq)<<20, 1<<20, size)
				snaps = append(snaps, s)
				if seq <= 3 {
					replicateJSON(t, e, src, dst)
				}
			}
			base := snaps[2]
			plan := prunePlan(t, e, src)
			if n == 0 {
				n = len(plan)
			}
			if len(plan) < 2 || len(plan) != n {
				t.Fatalf("plan %q: want the same ≥ 2 points in every run", planNames(plan))
			}
			for i, p := range plan {
				if p.Base || p.LastSent || p.Name == base || p.Name == zfs.BookmarkFor(base) {
					t.Fatalf("the plan destroys %s, a replication base", p.Name)
				}
				if i > 0 && p.CreateTXG < plan[i-1].CreateTXG {
					t.Fatalf("plan not oldest first: %q", planNames(plan))
				}
			}
			before := datasetPoints(t, src)
			e.crash(fp, append([]string{"zfs", "prune", src}, pruneCrashArgs...)...)

			done := k
			want := slices.DeleteFunc(slices.Clone(before), func(s string) bool { return slices.Contains(planNames(plan[:done]), s) })
			if got := datasetPoints(t, src); !slices.Equal(got, want) {
				t.Fatalf("after the kill: %q\nwant %q (the plan's oldest %d gone)", got, want, done)
			}
			g := replGUID(t, base)
			for _, p := range []string{zfs.BookmarkFor(base), zfs.BookmarkFullName(src, zfs.LastSentBookmark)} {
				if got := replGUID(t, p); got != g {
					t.Errorf("%s guid %q, want the base's %s", p, got, g)
				}
			}
			if rec := strings.TrimSpace(replZFS(t, "get", "-Hp", "-o", "value", sentProp(dst), src)); rec != g+" "+dst {
				t.Errorf("record %q, want %q", rec, g+" "+dst)
			}
			e.mustRun("zfs", "ls", src)
			if rest := prunePlan(t, e, src); !slices.Equal(planNames(rest), planNames(plan[done:])) {
				t.Errorf("plan after the kill %q, want the rest %q", planNames(rest), planNames(plan[done:]))
			}
			e.mustRun(append([]string{"zfs", "prune", src}, pruneCrashArgs...)...)
			want = slices.DeleteFunc(slices.Clone(before), func(s string) bool { return slices.Contains(planNames(plan), s) })
			if got := datasetPoints(t, src); !slices.Equal(got, want) {
				t.Fatalf("after the rerun: %q\nwant %q", got, want)
			}
			s6, _ := replSnapshot(t, src, dev, 6, 6<<20, 1<<20, size)
			res, _ := replicateJSON(t, e, src, dst)
			if len(res.Steps) != 1 || res.Steps[0].From != base || res.Steps[0].To != s6 {
				t.Errorf("replicate after the prune: %+v, want one incremental %s -> %s", res.Steps, base, s6)
			}
			replSameGUIDs(t, dst, snaps[3], snaps[4], s6)
		})
	}
}
