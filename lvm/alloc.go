package lvm

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/dmsnap/dmsnap/dm"
)

// NoSpaceError reports an allocation the pool cannot satisfy. It matches
// [ErrNoSpace] with errors.Is.
type NoSpaceError struct {
	Pool       string
	Need, Free ExtentCount
	ExtentSize dm.Sector
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("pool %s: need %d extents (%s), only %d free (%s)", e.Pool,
		e.Need, FormatSize(dm.Sector(e.Need)*e.ExtentSize), e.Free, FormatSize(dm.Sector(e.Free)*e.ExtentSize))
}

// Is reports whether target is [ErrNoSpace].
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

// FreeRun is a maximal run of unallocated extents on one PV.
type FreeRun struct {
	PV    UUID
	Start ExtentIndex
	Count ExtentCount
}

// FreeRuns returns the free runs of p in PV order, then by start.
func (p *Pool) FreeRuns() []FreeRun {
	used := map[UUID][]Segment{}
	for _, v := range p.Volumes {
		for _, s := range v.Segments {
			used[s.PV] = append(used[s.PV], s)
		}
	}
	var out []FreeRun
	for _, pv := range p.PVs {
		segs := used[pv.UUID]
		slices.SortFunc(segs, func(a, b Segment) int { return cmp.Compare(a.Start, b.Start) })
		var next ExtentIndex
		for _, s := range segs {
			if s.Start > next {
				out = append(out, FreeRun{pv.UUID, next, ExtentCount(s.Start - next)})
			}
			next = max(next, s.Start+ExtentIndex(s.Count))
		}
		if end := ExtentIndex(pv.PECount); end > next {
			out = append(out, FreeRun{pv.UUID, next, ExtentCount(end - next)})
		}
	}
	return out
}

// Allocate chooses n free extents without changing p: the smallest single
// free run that holds all n (contiguous first, best fit, earliest on a
// tie), or else free runs in PV order, first fit, until n are covered. It
// returns a [*NoSpaceError] when fewer than n extents are free.
func (p *Pool) Allocate(n ExtentCount) ([]Segment, error) {
	if n == 0 {
		return nil, fmt.Errorf("allocate: zero extents: %w", ErrBadSize)
	}
	runs := p.FreeRuns()
	var free ExtentCount
	best := -1
	for i, r := range runs {
		free += r.Count
		if r.Count >= n && (best < 0 || r.Count < runs[best].Count) {
			best = i
		}
	}
	if free < n {
		return nil, &NoSpaceError{Pool: p.Name, Need: n, Free: free, ExtentSize: p.ExtentSize}
	}
	if best >= 0 {
		return []Segment{{PV: runs[best].PV, Start: runs[best].Start, Count: n}}, nil
	}
	var segs []Segment
	for _, r := range runs {
		take := min(r.Count, n)
		segs = append(segs, Segment{PV: r.PV, Start: r.Start, Count: take})
		if n -= take; n == 0 {
			break
		}
	}
	return segs, nil
}

// mergeSegments joins neighbouring segments that continue each other on
// the same PV.
func mergeSegments(segs []Segment) []Segment {
	out := segs[:0:0]
	for _, s := range segs {
		if k := len(out) - 1; k >= 0 && out[k].PV == s.PV && out[k].Start+ExtentIndex(out[k].Count) == s.Start {
			out[k].Count += s.Count
			continue
		}
		out = append(out, s)
	}
	return out
}
