package replicate

import (
	"fmt"
	"github.com/dmsnap/dmsnap/zfs"
	"strings"
)

// PlanRequest is the input of [NewPlan]: both sides' listings
// (from [Runner.Points]) and the caller's permissions.
type PlanRequest struct {
	// Sender and Receiver are the dataset names.
	Sender, Receiver string
	// SenderPoints and ReceiverPoints are the two listings, in any order.
	SenderPoints, ReceiverPoints []zfs.Point
	// ReceiverExists is false when the receiving dataset does not exist
	// yet (a full receive then creates it).
	ReceiverExists bool
	// ResumeToken is the receiver's receive_resume_token ("" or "-" for
	// none).
	ResumeToken string
	// To is the short name of the sender snapshot to replicate up to;
	// empty means the sender's newest snapshot (by createtxg).
	To string
	// AllowFull permits a full send into a receiver that has history but
	// no common base (it also needs ForceRollback, since zfs receive
	// refuses to overwrite an existing dataset without -F).
	AllowFull bool
	// ForceRollback permits `zfs receive -F`, which destroys the
	// receiver snapshots listed in [Plan.Destroys].
	ForceRollback bool
	// IncrementalPackage permits `zfs send -I`; set it from
	// [Guard.SendIncrementalPackage]. When false, intermediate snapshots
	// are sent as a chain of -i streams.
	IncrementalPackage bool
	// InitialAll makes a first replication send the sender's oldest
	// snapshot in full and then every later one incrementally; by default
	// only the target snapshot is sent.
	InitialAll bool
}

// Plan is the result of [NewPlan].
type Plan struct {
	// Base is the sender point the first incremental starts from (a
	// snapshot, or a bookmark when the snapshot is gone); zero for a
	// full send or a resume.
	Base zfs.Point
	// ReceiverBase is the receiver snapshot with Base's GUID.
	ReceiverBase zfs.Point
	// Sends are the steps, in order. Empty when UpToDate.
	Sends []zfs.Send
	// UpToDate: the receiver already has the target snapshot.
	UpToDate bool
	// Destroys lists the receiver snapshots the plan destroys (non-empty
	// only with ForceRollback): for an incremental, `receive -F` destroys
	// them itself; for a full overwrite (DestroyFirst) zfs receive refuses
	// a destination with snapshots ("must destroy them to overwrite it",
	// libzfs_sendrecv.c), so the caller destroys them before the receive.
	Destroys []zfs.Point
	// DestroyFirst: destroy Destroys before the first receive.
	DestroyFirst bool
	// Resume: the plan is a single resumed receive; plan again after it
	// completes.
	Resume bool
}

// NewPlan decides what to send so that the receiver gets the
// sender's target snapshot. It looks only at GUIDs and createtxg, never at
// names or creation times:
//
//  1. A receiver resume token → a single `send -t` step (plan again after).
//  2. The base is the newest receiver snapshot whose GUID equals a sender
//     snapshot's or bookmark's GUID; the sender side prefers the snapshot.
//  3. No base: a receiver that does not exist gets a full send; one that
//     exists gets [zfs.ErrNoCommonBase] unless AllowFull and ForceRollback.
//  4. Receiver snapshots newer than the base: [zfs.ErrReceiverDiverged]
//     unless ForceRollback, and then Plan.Destroys lists them.
//  5. Base → target as -I when allowed and the base is a snapshot,
//     otherwise a chain of -i through every intermediate sender snapshot.
//
// Other errors: [zfs.ErrDatasetNotFound] (no such target snapshot, or the
// sender has no snapshots). An up-to-date receiver is not an error: it
// gives Plan.UpToDate.
func NewPlan(req PlanRequest) (Plan, error) {
	snd := append([]zfs.Point(nil), req.SenderPoints...)
	rcv := append([]zfs.Point(nil), req.ReceiverPoints...)
	if err := zfs.SortPoints(snd); err != nil {
		return Plan{}, fmt.Errorf("sender %s: %w", req.Sender, err)
	}
	if err := zfs.SortPoints(rcv); err != nil {
		return Plan{}, fmt.Errorf("receiver %s: %w", req.Receiver, err)
	}
	if tok := req.ResumeToken; tok != "" && tok != "-" {
		return Plan{Resume: true, Sends: []zfs.Send{{ResumeToken: tok}}}, nil
	}

	sndSnaps := filterKind(snd, zfs.Snapshot)
	rcvSnaps := filterKind(rcv, zfs.Snapshot)
	if len(sndSnaps) == 0 {
		return Plan{}, fmt.Errorf("sender %s has no snapshots: %w", req.Sender, zfs.ErrDatasetNotFound)
	}
	target := sndSnaps[len(sndSnaps)-1]
	if req.To != "" {
		i := indexFunc(sndSnaps, func(p zfs.Point) bool { return p.Short() == req.To })
		if i < 0 {
			return Plan{}, fmt.Errorf("sender snapshot %s@%s: %w", req.Sender, req.To, zfs.ErrDatasetNotFound)
		}
		target = sndSnaps[i]
	}

	// 2. Newest receiver snapshot with a GUID the sender knows.
	var plan Plan
	found := false
	for i := len(rcvSnaps) - 1; i >= 0 && !found; i-- {
		r := rcvSnaps[i]
		var book *zfs.Point
		for j := range snd {
			if snd[j].GUID != r.GUID {
				continue
			}
			if snd[j].Kind == zfs.Snapshot {
				plan.Base, found = snd[j], true
				break
			}
			if book == nil {
				book = &snd[j]
			}
		}
		if !found && book != nil {
			plan.Base, found = *book, true
		}
		if found {
			plan.ReceiverBase = r
		}
	}

	if !found {
		return planFull(req, sndSnaps, rcv, rcvSnaps, target)
	}

	// The receiver has the target (or something newer from the sender).
	if target.CreateTXG <= plan.Base.CreateTXG {
		plan.UpToDate = true
		return plan, nil
	}

	// 4. Receiver snapshots newer than the base.
	var newer []zfs.Point
	for _, r := range rcvSnaps {
		if r.CreateTXG > plan.ReceiverBase.CreateTXG {
			newer = append(newer, r)
		}
	}
	if len(newer) > 0 {
		if !req.ForceRollback {
			return Plan{}, fmt.Errorf("%s: base %s (guid %d); newer on the target: %s; only zfs receive -F (--force-rollback) could proceed and it would destroy them: %w",
				req.Receiver, plan.ReceiverBase.Name, plan.ReceiverBase.GUID, names(newer), zfs.ErrReceiverDiverged)
		}
		plan.Destroys = newer
	}

	// 5. Base → target.
	var mids []zfs.Point
	for _, s := range sndSnaps {
		if s.CreateTXG > plan.Base.CreateTXG && s.CreateTXG < target.CreateTXG {
			mids = append(mids, s)
		}
	}
	plan.Sends = incrementalChain(plan.Base, mids, target, req.IncrementalPackage)
	if len(plan.Destroys) > 0 {
		plan.Sends[0].Force = true
	}
	return plan, nil
}

// planFull handles "no common base".
func planFull(req PlanRequest, sndSnaps, rcv, rcvSnaps []zfs.Point, target zfs.Point) (Plan, error) {
	var plan Plan
	if req.ReceiverExists {
		why := fmt.Sprintf("%s has %d snapshot(s) and %d bookmark(s), none with a GUID the sender %s has",
			req.Receiver, len(rcvSnaps), len(rcv)-len(rcvSnaps), req.Sender)
		if len(rcv) == 0 {
			why = fmt.Sprintf("%s exists but has no snapshots", req.Receiver)
		}
		switch {
		case !req.AllowFull:
			return Plan{}, fmt.Errorf("%s; it is not a replica of %s (or its common snapshots were destroyed); a full send needs --allow-full and --force-rollback, which destroys the target's history: %w",
				why, req.Sender, zfs.ErrNoCommonBase)
		case !req.ForceRollback:
			return Plan{}, fmt.Errorf("%s; a full receive into an existing dataset needs -F (--force-rollback), which destroys all of it: %w",
				why, zfs.ErrNoCommonBase)
		}
		plan.Destroys = rcvSnaps
		plan.DestroyFirst = len(rcvSnaps) > 0
	}
	first := target
	var mids []zfs.Point
	if req.InitialAll {
		first = sndSnaps[0]
		for _, s := range sndSnaps {
			if s.CreateTXG > first.CreateTXG && s.CreateTXG < target.CreateTXG {
				mids = append(mids, s)
			}
		}
	}
	plan.Sends = []zfs.Send{{To: first.Name, ToGUID: first.GUID, Force: req.ReceiverExists}}
	if first.GUID != target.GUID {
		plan.Sends = append(plan.Sends, incrementalChain(first, mids, target, req.IncrementalPackage)...)
	}
	return plan, nil
}

// incrementalChain returns the steps from base through mids to target.
func incrementalChain(base zfs.Point, mids []zfs.Point, target zfs.Point, allowI bool) []zfs.Send {
	var out []zfs.Send
	from := base
	if len(mids) > 0 && (base.Kind == zfs.Bookmark || !allowI) {
		// -I needs a snapshot source: bookmark → first snapshot with -i.
		first := mids[0]
		out = append(out, step(from, first, false))
		from, mids = first, mids[1:]
	}
	if len(mids) == 0 {
		return append(out, step(from, target, false))
	}
	if allowI {
		return append(out, step(from, target, true))
	}
	for _, m := range mids {
		out = append(out, step(from, m, false))
		from = m
	}
	return append(out, step(from, target, false))
}

func step(from, to zfs.Point, intermediates bool) zfs.Send {
	return zfs.Send{From: from.Name, FromGUID: from.GUID, To: to.Name, ToGUID: to.GUID,
		Incremental: true, Intermediates: intermediates}
}

func filterKind(pts []zfs.Point, k zfs.Kind) []zfs.Point {
	var out []zfs.Point
	for _, p := range pts {
		if p.Kind == k {
			out = append(out, p)
		}
	}
	return out
}

func indexFunc(pts []zfs.Point, f func(zfs.Point) bool) int {
	for i, p := range pts {
		if f(p) {
			return i
		}
	}
	return -1
}

func names(pts []zfs.Point) string {
	s := make([]string, len(pts))
	for i, p := range pts {
		s[i] = p.Name
	}
	return strings.Join(s, ", ")
}
