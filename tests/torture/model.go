package torture

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// Sizes of the modelled pool: extents of 4 MiB, volumes of 8 to 24 MiB,
// COWs of 8 to 16 MiB. Writes go to the first 4 MiB of a volume only, so a
// snapshot's COW (8 MiB at least) never fills and stays valid.
const (
	mib        = 1 << 20
	extent     = 4 * mib
	contentMax = 4 * mib
	maxVolumes = 4
	maxSnaps   = 4
)

// object is a modelled volume or snapshot. Content names the model file
// holding what its first len(file) bytes must be ("" while nothing was
// written: a new volume's extents may hold anything).
type object struct {
	Size    uint64 `json:"size"` // volume size, or a snapshot's COW size
	Origin  string `json:"origin,omitempty"`
	Content string `json:"content,omitempty"`
}

// model is the pool as the test believes it is.
type model struct {
	Vols  map[string]*object `json:"vols"`
	Snaps map[string]*object `json:"snaps"`
	Seq   int                `json:"seq"` // for new names
}

func newModel() *model {
	return &model{Vols: map[string]*object{}, Snaps: map[string]*object{}}
}

func (m *model) clone() *model {
	c := &model{Vols: map[string]*object{}, Snaps: map[string]*object{}, Seq: m.Seq}
	for k, v := range m.Vols {
		o := *v
		c.Vols[k] = &o
	}
	for k, v := range m.Snaps {
		o := *v
		c.Snaps[k] = &o
	}
	return c
}

// shape is what the pool's metadata must show for m: every volume with
// its size, every snapshot with its origin and COW size.
func (m *model) shape() string {
	var parts []string
	for n, v := range m.Vols {
		parts = append(parts, fmt.Sprintf("vol %s %d", n, v.Size))
	}
	for n, s := range m.Snaps {
		parts = append(parts, fmt.Sprintf("snap %s of %s cow %d", n, s.Origin, s.Size))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func (m *model) snapsOf(vol string) int {
	n := 0
	for _, s := range m.Snaps {
		if s.Origin == vol {
			n++
		}
	}
	return n
}

func (m *model) name(prefix string) string {
	m.Seq++
	return fmt.Sprintf("%s%d", prefix, m.Seq)
}

// op is one mutating command: its argv (after "dmsnap") and the states a
// crash may leave, old or next.
type op struct {
	Kind string   `json:"kind"`
	Args []string `json:"args"`
	Old  *model   `json:"old"`
	Next *model   `json:"next"`
	// Target is the snapshot a merge merges.
	Target string `json:"target,omitempty"`
}

func sortedKeys(m map[string]*object) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// pick draws one op that m allows, with its next state. pool is the pool
// name used in the argv.
func pick(r *rand.Rand, m *model, pool string) op {
	vols, snaps := sortedKeys(m.Vols), sortedKeys(m.Snaps)
	var free []string // volumes without snapshots
	for _, v := range vols {
		if m.snapsOf(v) == 0 {
			free = append(free, v)
		}
	}
	type choice func() op
	var choices []choice
	next := m.clone()
	mk := func(kind string, args ...string) op {
		return op{Kind: kind, Args: args, Old: m, Next: next}
	}
	if len(vols) < maxVolumes {
		choices = append(choices, func() op {
			n := next.name("v")
			size := uint64(8+4*r.IntN(3)) * mib
			next.Vols[n] = &object{Size: size}
			return mk("lv-create", "lv", "create", pool+"/"+n, "--size", fmt.Sprintf("%dM", size/mib))
		})
	}
	if len(free) > 0 && len(vols) > 1 {
		choices = append(choices, func() op {
			v := free[r.IntN(len(free))]
			delete(next.Vols, v)
			return mk("lv-remove", "lv", "remove", pool+"/"+v)
		})
	}
	var growable []string
	for _, v := range free {
		if m.Vols[v].Size < 24*mib {
			growable = append(growable, v)
		}
	}
	if len(growable) > 0 {
		choices = append(choices, func() op {
			v := growable[r.IntN(len(growable))]
			next.Vols[v].Size += extent
			return mk("lv-extend", "lv", "extend", pool+"/"+v, "--size", "+4M")
		})
	}
	if len(free) > 0 {
		choices = append(choices, func() op {
			v := free[r.IntN(len(free))]
			n := next.name("v")
			next.Vols[n] = next.Vols[v]
			delete(next.Vols, v)
			return mk("lv-rename", "lv", "rename", pool+"/"+v, n)
		})
	}
	var snappable []string
	for _, v := range vols {
		if m.snapsOf(v) < 2 && m.Vols[v].Content != "" {
			snappable = append(snappable, v)
		}
	}
	if len(snappable) > 0 && len(snaps) < maxSnaps {
		choices = append(choices, func() op {
			v := snappable[r.IntN(len(snappable))]
			n := next.name("s")
			next.Snaps[n] = &object{Size: 8 * mib, Origin: v, Content: m.Vols[v].Content}
			return mk("create", "create", pool+"/"+v, n, "--cow", "8M")
		})
	}
	if len(snaps) > 0 {
		choices = append(choices, func() op {
			s := snaps[r.IntN(len(snaps))]
			delete(next.Snaps, s)
			return mk("remove", "remove", pool+"/"+s)
		}, func() op {
			s := snaps[r.IntN(len(snaps))]
			n := next.name("s")
			next.Snaps[n] = next.Snaps[s]
			delete(next.Snaps, s)
			return mk("rename", "rename", pool+"/"+s, n)
		}, func() op {
			s := snaps[r.IntN(len(snaps))]
			next.Vols[m.Snaps[s].Origin].Content = m.Snaps[s].Content
			delete(next.Snaps, s)
			o := mk("merge", "merge", pool+"/"+s)
			o.Target = s
			return o
		})
		var extendable []string
		for _, s := range snaps {
			if m.Snaps[s].Size < 16*mib {
				extendable = append(extendable, s)
			}
		}
		if len(extendable) > 0 {
			choices = append(choices, func() op {
				s := extendable[r.IntN(len(extendable))]
				next.Snaps[s].Size += extent
				return mk("extend", "extend", pool+"/"+s, "--cow", "+4M")
			})
		}
	}
	return choices[r.IntN(len(choices))]()
}
