package main

import (
	"context"
	"fmt"

	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
)

// fpPoolRemoveAfterMark: the pool's state-file entry is marked removing,
// nothing is wiped yet.
const fpPoolRemoveAfterMark = "pool.remove.after-mark"

// markRemoving marks the state-file entry of pool name (if it has one
// for uuid) as being removed. pool remove does it after committing the
// pool-remove record and before wiping the first PV, so that a kill
// after the last wipe leaves an entry that says why none of its PVs is
// found; [settleRemoved] forgets it.
func markRemoving(ctx context.Context, g *globalOptions, name string, uuid lvm.UUID) error {
	return updateState(ctx, g, func(st *state) error {
		p, ok := st.Pools[name]
		if !ok || p.UUID != uuid || p.Removing {
			return nil
		}
		p.Removing = true
		st.Pools[name] = p
		return nil
	})
}

// removedEntries returns the names of the state-file entries marked
// removing whose pool discovery did not find (no PV carries its uuid) and
// none of whose images is unreadable: a pool remove killed after its last
// wipe.
func removedEntries(d *discovery, st *state) []string {
	found := map[lvm.UUID]bool{}
	for _, fp := range d.Pools {
		found[fp.UUID] = true
	}
	var out []string
	for name, sp := range st.Pools {
		if sp.Removing && !found[sp.UUID] && !anyUnreadable(d, sp.Images) {
			out = append(out, name)
		}
	}
	return out
}

// removedPool is a state-file entry settleRemoved forgot.
type removedPool struct {
	Name string
	UUID lvm.UUID
}

// settleRemoved finishes the pool removals a kill after the last wipe
// left in the state file: each entry of [removedEntries] is forgotten
// under its pool's exclusive lock (a pool held by another process is
// left for later), if it is still marked removing for the same uuid. It
// returns the entries forgotten. Only names accepted by only (nil: all)
// are settled.
func settleRemoved(ctx context.Context, g *globalOptions, d *discovery, only func(string) bool) ([]removedPool, error) {
	st, err := loadState(g)
	if err != nil {
		return nil, err
	}
	var done []removedPool
	for _, name := range removedEntries(d, st) {
		if only != nil && !only(name) {
			continue
		}
		uuid := st.Pools[name].UUID
		l, err := lockPool(g, name, lock.Exclusive)
		if err != nil {
			continue // in use: its holder (or a later run) settles it
		}
		forgot := false
		err = updateState(ctx, g, func(st *state) error {
			p, ok := st.Pools[name]
			if !ok || !p.Removing || p.UUID != uuid {
				return nil
			}
			delete(st.Pools, name)
			if st.DefaultPool == name {
				st.DefaultPool = ""
			}
			forgot = true
			return nil
		})
		l.Close()
		if err != nil {
			return done, fmt.Errorf("forget removed pool %s: %w", name, err)
		}
		if forgot {
			done = append(done, removedPool{Name: name, UUID: uuid})
		}
	}
	return done, nil
}

// forgetIfRemoving forgets the state-file entry of pool name if it is
// marked removing, and reports whether it did. The caller holds the
// pool's exclusive lock and found none of its PVs.
func forgetIfRemoving(ctx context.Context, g *globalOptions, name string) (bool, error) {
	forgot := false
	err := updateState(ctx, g, func(st *state) error {
		if p, ok := st.Pools[name]; !ok || !p.Removing {
			return nil
		}
		delete(st.Pools, name)
		if st.DefaultPool == name {
			st.DefaultPool = ""
		}
		forgot = true
		return nil
	})
	return forgot, err
}
