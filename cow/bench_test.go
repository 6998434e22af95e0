package cow

import (
	"math/rand/v2"
	"sync"
	"testing"
)

const benchExceptions = 1 << 20

// benchStore is a C=8 store with 1M exceptions (4096 full areas plus an
// empty one, 16 MiB of metadata on a 4 GiB COW), once with sequential and
// once with random origin chunks.
var benchStore = sync.OnceValue(func() map[string]*memDev {
	rng := rand.New(rand.NewPCG(9, 10))
	size := int64(benchExceptions+benchExceptions/256+8) * 4096
	seq, _ := refImage(8, size, sequentialOlds(benchExceptions))
	random, _ := refImage(8, size, randomOlds(rng, benchExceptions, 1<<32))
	return map[string]*memDev{"sequential": seq, "random": random}
})

func BenchmarkOpen1M(b *testing.B) {
	for _, name := range []string{"sequential", "random"} {
		b.Run(name, func(b *testing.B) {
			d := benchStore()[name]
			b.SetBytes(int64(benchExceptions/256+1) * 4096) // metadata read
			b.ReportAllocs()
			for b.Loop() {
				s, err := Open(d, d.size)
				if err != nil || s.Len() != benchExceptions {
					b.Fatal(s, err)
				}
			}
		})
	}
}

func BenchmarkWalk1M(b *testing.B) {
	d := benchStore()["random"]
	b.SetBytes(int64(benchExceptions/256+1) * 4096)
	b.ReportAllocs()
	for b.Loop() {
		st, err := Walk(d, d.size, nil)
		if err != nil || st.Count != benchExceptions {
			b.Fatal(st, err)
		}
	}
}

func BenchmarkChangedExtents1M(b *testing.B) {
	for _, name := range []string{"sequential", "random"} {
		b.Run(name, func(b *testing.B) {
			d := benchStore()[name]
			s, err := Open(d, d.size)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if len(s.ChangedExtents()) == 0 {
					b.Fatal("no extents")
				}
			}
		})
	}
}
