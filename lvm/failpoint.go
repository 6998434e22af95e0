package lvm

import "github.com/dmsnap/dmsnap/internal/failpoint"

// The pool's failpoints (internal/failpoint; the full list is in
// docs/formats.md):
//
//	lvm.create.after-metadata  Create: metadata written to every PV, no label yet
//	lvm.commit.before-write    a commit is encoded, nothing written
//	lvm.commit.after-payload   a slot's document written and synced, its header not
//	lvm.commit.torn-header     half of a slot header written and synced, then exit
//	lvm.commit.after-slot-write  one PV's slot fully written and synced (fires per PV)
//	lvm.commit.done            every PV written
//	lvm.extend.after-new-pvs   Extend: new PVs labelled and written, old PVs not yet
//	lvm.snapshot.*             snapshot create/remove/extend/rename steps
func failpointHit(name string) { failpoint.Hit(name) }
