package zfs

import (
	"fmt"
	"strings"
)

// Send is one `zfs send | zfs receive` step of a [Plan].
type Send struct {
	// From is the full name of the incremental source: a sender snapshot
	// (pool/vol@s) or, when that snapshot is gone, its bookmark
	// (pool/vol#s). Empty for a full stream and for a resume.
	From string
	// To is the full name of the sender snapshot to send; empty for a
	// resume.
	To string
	// FromGUID and ToGUID identify From and To across pools (0 if unset).
	FromGUID, ToGUID uint64
	// Incremental is true for -i/-I streams.
	Incremental bool
	// Intermediates selects -I (every snapshot between From and To) over
	// -i. Only when From is a snapshot and the version guard allows it.
	Intermediates bool
	// ResumeToken, if set, makes this step `zfs send -t TOKEN`.
	ResumeToken string
	// Force adds -F to this step's receive (only with ForceRollback).
	Force bool
}

// String describes the step: "full pool/vol@b", "-i pool/vol#a pool/vol@b",
// "-I pool/vol@a pool/vol@d", "resume 1-…".
func (s Send) String() string {
	switch {
	case s.ResumeToken != "":
		return "resume " + s.ResumeToken
	case !s.Incremental:
		return "full " + s.To
	case s.Intermediates:
		return "-I " + s.From + " " + s.To
	default:
		return "-i " + s.From + " " + s.To
	}
}

// PlanRequest is the input of [PlanReplication]: both sides' listings
// (from [Runner.Points]) and the caller's permissions.
type PlanRequest struct {
	// Sender and Receiver are the dataset names.
	Sender, Receiver string
	// SenderPoints and ReceiverPoints are the two listings, in any order.
	SenderPoints, ReceiverPoints []Point
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

// Plan is the result of [PlanReplication].
type Plan struct {
	// Base is the sender point the first incremental starts from (a
	// snapshot, or a bookmark when the snapshot is gone); zero for a
	// full send or a resume.
	Base Point
	// ReceiverBase is the receiver snapshot with Base's GUID.
	ReceiverBase Point
	// Sends are the steps, in order. Empty when UpToDate.
	Sends []Send
	// UpToDate: the receiver already has the target snapshot.
	UpToDate bool
	// Destroys lists the receiver snapshots the plan destroys (non-empty
	// only with ForceRollback): for an incremental, `receive -F` destroys
	// them itself; for a full overwrite (DestroyFirst) zfs receive refuses
	// a destination with snapshots ("must destroy them to overwrite it",
	// libzfs_sendrecv.c), so the caller destroys them before the receive.
	Destroys []Point
	// DestroyFirst: destroy Destroys before the first receive.
	DestroyFirst bool
	// Resume: the plan is a single resumed receive; plan again after it
	// completes.
	Resume bool
}

// PlanReplication decides what to send so that the receiver gets the
// sender's target snapshot. It looks only at GUIDs and createtxg, never at
// names or creation times:
//
//  1. A receiver resume token → a single `send -t` step (plan again after).
//  2. The base is the newest receiver snapshot whose GUID equals a sender
//     snapshot's or bookmark's GUID; the sender side prefers the snapshot.
//  3. No base: a receiver that does not exist gets a full send; one that
//     exists gets [ErrNoCommonBase] unless AllowFull and ForceRollback.
//  4. Receiver snapshots newer than the base: [ErrReceiverDiverged]
//     unless ForceRollback, and then Plan.Destroys lists them.
//  5. Base → target as -I when allowed and the base is a snapshot,
//     otherwise a chain of -i through every intermediate sender snapshot.
//
// Other errors: [ErrDatasetNotFound] (no such target snapshot, or the
// sender has no snapshots). An up-to-date receiver is not an error: it
// gives Plan.UpToDate.
func PlanReplication(req PlanRequest) (Plan, error) {
	snd := append([]Point(nil), req.SenderPoints...)
	rcv := append([]Point(nil), req.ReceiverPoints...)
	if err := SortPoints(snd); err != nil {
		return Plan{}, fmt.Errorf("sender %s: %w", req.Sender, err)
	}
	if err := SortPoints(rcv); err != nil {
		return Plan{}, fmt.Errorf("receiver %s: %w", req.Receiver, err)
	}
	if tok := req.ResumeToken; tok != "" && tok != "-" {
		return Plan{Resume: true, Sends: []Send{{ResumeToken: tok}}}, nil
	}

	sndSnaps := filterKind(snd, Snapshot)
	rcvSnaps := filterKind(rcv, Snapshot)
	if len(sndSnaps) == 0 {
		return Plan{}, fmt.Errorf("sender %s has no snapshots: %w", req.Sender, ErrDatasetNotFound)
	}
	target := sndSnaps[len(sndSnaps)-1]
	if req.To != "" {
		i := indexFunc(sndSnaps, func(p Point) bool { return p.Short() == req.To })
		if i < 0 {
			return Plan{}, fmt.Errorf("sender snapshot %s@%s: %w", req.Sender, req.To, ErrDatasetNotFound)
		}
		target = sndSnaps[i]
	}

	// 2. Newest receiver snapshot with a GUID the sender knows.
	var plan Plan
	found := false
	for i := len(rcvSnaps) - 1; i >= 0 && !found; i-- {
		r := rcvSnaps[i]
		var book *Point
		for j := range snd {
			if snd[j].GUID != r.GUID {
				continue
			}
			if snd[j].Kind == Snapshot {
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
	var newer []Point
	for _, r := range rcvSnaps {
		if r.CreateTXG > plan.ReceiverBase.CreateTXG {
			newer = append(newer, r)
		}
	}
	if len(newer) > 0 {
		if !req.ForceRollback {
			return Plan{}, fmt.Errorf("%s: base %s (guid %d); newer on the target: %s; only zfs receive -F (--force-rollback) could proceed and it would destroy them: %w",
				req.Receiver, plan.ReceiverBase.Name, plan.ReceiverBase.GUID, names(newer), ErrReceiverDiverged)
		}
		plan.Destroys = newer
	}

	// 5. Base → target.
	var mids []Point
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
func planFull(req PlanRequest, sndSnaps, rcv, rcvSnaps []Point, target Point) (Plan, error) {
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
				why, req.Sender, ErrNoCommonBase)
		case !req.ForceRollback:
			return Plan{}, fmt.Errorf("%s; a full receive into an existing dataset needs -F (--force-rollback), which destroys all of it: %w",
				why, ErrNoCommonBase)
		}
		plan.Destroys = rcvSnaps
		plan.DestroyFirst = len(rcvSnaps) > 0
	}
	first := target
	var mids []Point
	if req.InitialAll {
		first = sndSnaps[0]
		for _, s := range sndSnaps {
			if s.CreateTXG > first.CreateTXG && s.CreateTXG < target.CreateTXG {
				mids = append(mids, s)
			}
		}
	}
	plan.Sends = []Send{{To: first.Name, ToGUID: first.GUID, Force: req.ReceiverExists}}
	if first.GUID != target.GUID {
		plan.Sends = append(plan.Sends, incrementalChain(first, mids, target, req.IncrementalPackage)...)
	}
	return plan, nil
}

// incrementalChain returns the steps from base through mids to target.
func incrementalChain(base Point, mids []Point, target Point, allowI bool) []Send {
	var out []Send
	from := base
	if len(mids) > 0 && (base.Kind == Bookmark || !allowI) {
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

func step(from, to Point, intermediates bool) Send {
	return Send{From: from.Name, FromGUID: from.GUID, To: to.Name, ToGUID: to.GUID,
		Incremental: true, Intermediates: intermediates}
}

func filterKind(pts []Point, k Kind) []Point {
	var out []Point
	for _, p := range pts {
		if p.Kind == k {
			out = append(out, p)
		}
	}
	return out
}

func indexFunc(pts []Point, f func(Point) bool) int {
	for i, p := range pts {
		if f(p) {
			return i
		}
	}
	return -1
}

func names(pts []Point) string {
	s := make([]string, len(pts))
	for i, p := range pts {
		s[i] = p.Name
	}
	return strings.Join(s, ", ")
}
