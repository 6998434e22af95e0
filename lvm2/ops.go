package lvm2

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"
)

// CursorTag is the LVM2 tag on every snapshot dmsnap makes (lvs shows it
// as "dmsnap-cursor"). dmsnap changes no snapshot without it unless told.
const CursorTag = "dmsnap-cursor"

// supportedSegTypes are the origin segment types a classic snapshot of
// which dmsnap supports. Thin, cache, raid, vdo and the rest are refused.
var supportedSegTypes = map[string]bool{"linear": true, "striped": true}

// SnapshotOptions describe a classic LVM2 snapshot to create.
type SnapshotOptions struct {
	// Name is the new snapshot LV's name.
	Name string
	// COWBytes is the COW size (lvcreate -L, rounded up by LVM2 to whole
	// extents); COWExtents (lvcreate -l) is used instead when non-zero.
	COWBytes   uint64
	COWExtents uint64
	// ChunkBytes is the chunk size (lvcreate --chunksize); 0 leaves
	// LVM2's default. LVM2 takes powers of two from 4 KiB to 512 KiB.
	ChunkBytes uint64
	// ReadOnly creates the snapshot with -p r.
	ReadOnly bool
	// Tags are added besides [CursorTag], which is always added.
	Tags []string
	// Overflow (PO) and Discard features have no LVM2 metadata; asking
	// for them is refused with [ErrUnsupported].
	Overflow, Discard bool
}

// snapshotArgs builds lvcreate's argv for a snapshot of origin, checking
// every option first.
func snapshotArgs(origin Path, o SnapshotOptions) ([]string, error) {
	if _, err := ParsePath(origin.String()); err != nil {
		return nil, err
	}
	if err := ValidateLVName(o.Name); err != nil {
		return nil, err
	}
	if o.Overflow {
		return nil, fmt.Errorf("%w: snapshot %s/%s: PO (overflow) snapshots cannot be expressed in LVM2's metadata; use a dmsnap pool", ErrUnsupported, origin.VG, o.Name)
	}
	if o.Discard {
		return nil, fmt.Errorf("%w: snapshot %s/%s: discard features cannot be expressed in LVM2's metadata; use a dmsnap pool", ErrUnsupported, origin.VG, o.Name)
	}
	args := []string{"--snapshot", "--yes", "--name", o.Name}
	switch {
	case o.COWExtents > 0:
		args = append(args, "--extents", strconv.FormatUint(o.COWExtents, 10))
	case o.COWBytes > 0:
		args = append(args, "--size", strconv.FormatUint(o.COWBytes, 10)+"b")
	default:
		return nil, fmt.Errorf("snapshot %s/%s: a COW size is required", origin.VG, o.Name)
	}
	if c := o.ChunkBytes; c != 0 {
		if c < 4096 || c > 512*1024 || c&(c-1) != 0 {
			return nil, fmt.Errorf("snapshot %s/%s: chunk size %d bytes: LVM2 takes a power of two from 4096 to 524288", origin.VG, o.Name, c)
		}
		args = append(args, "--chunksize", strconv.FormatUint(c/1024, 10)+"k")
	}
	if o.ReadOnly {
		args = append(args, "--permission", "r")
	}
	for _, t := range append([]string{CursorTag}, o.Tags...) {
		if err := validateName("tag", t); err != nil {
			return nil, err
		}
		args = append(args, "--addtag", t)
	}
	return append(args, origin.String()), nil
}

// CreateSnapshot makes a classic snapshot of origin tagged [CursorTag] and
// returns it as lvs reports it. A VG without free extents for the COW is
// refused with [ErrNoSpace] and the amount needed. The origin must be a linear or striped LV
// (else [ErrUnsupported] naming its segment type); bad options are
// refused before anything runs.
func (r *Runner) CreateSnapshot(ctx context.Context, origin Path, o SnapshotOptions) (LV, error) {
	args, err := snapshotArgs(origin, o)
	if err != nil {
		return LV{}, err
	}
	lv, err := r.LV(ctx, origin)
	if err != nil {
		return LV{}, err
	}
	if err := checkSegType(lv); err != nil {
		return LV{}, err
	}
	need := o.COWBytes
	if o.COWExtents > 0 {
		need = o.COWExtents * lv.ExtentBytes
	}
	asked := need
	need = min(need, cowMaxBytes(lv.SizeBytes, o.ChunkBytes))
	if err := r.CheckFree(ctx, origin.VG, need); err != nil {
		if need < asked {
			err = fmt.Errorf("%w (the %d bytes asked for, capped at the largest COW %s can use, as LVM2 does)", err, asked, origin)
		}
		return LV{}, err
	}
	if _, _, err := r.Run(ctx, "lvcreate", args, origin.VG+"/"+o.Name); err != nil {
		return LV{}, err
	}
	return r.LV(ctx, Path{VG: origin.VG, LV: o.Name})
}

// defaultChunkBytes is lvcreate's snapshot chunk size when none is given
// (lvm.conf allocation/snapshot_chunk_size... is not read: 4 KiB is
// LVM2's built-in default).
const defaultChunkBytes = 4096

// cowMaxBytes is the largest COW a snapshot of an origin of originBytes
// can use: LVM2 reduces a larger request to it (lib/metadata/snapshot_manip.c
// _cow_max_size): a header chunk, one chunk per origin chunk, and the
// metadata chunks indexing them, each holding chunk/16 exceptions, plus a
// terminator when they fill the last area exactly.
func cowMaxBytes(originBytes, chunkBytes uint64) uint64 {
	if chunkBytes == 0 {
		chunkBytes = defaultChunkBytes
	}
	originChunks := (originBytes + chunkBytes - 1) / chunkBytes
	perArea := chunkBytes / 16
	metadataChunks := (originChunks + perArea) / perArea
	return (1 + metadataChunks + originChunks) * chunkBytes
}

func checkSegType(lv LV) error {
	if lv.IsSnapshot() {
		return fmt.Errorf("%w: %s is itself a snapshot", ErrUnsupported, lv.Path())
	}
	if !supportedSegTypes[lv.SegType] {
		return fmt.Errorf("%w: %s has segment type %q (only linear and striped LVs have classic snapshots here)", ErrUnsupported, lv.Path(), lv.SegType)
	}
	return nil
}

// CheckOwned returns nil if lv is a snapshot dmsnap made (tagged
// [CursorTag]) or allowUntagged is set. Otherwise it returns an error
// wrapping [ErrNotOwned] (or [ErrUnsupported] for an LV that is no
// snapshot).
func CheckOwned(lv LV, allowUntagged bool) error {
	if !lv.IsSnapshot() {
		return fmt.Errorf("%w: %s is not a classic snapshot (lv_attr %s)", ErrUnsupported, lv.Path(), lv.Attr)
	}
	if lv.HasTag(CursorTag) || allowUntagged {
		return nil
	}
	return fmt.Errorf("%w: %s has no @%s tag; dmsnap changes snapshots it did not make only when told to", ErrNotOwned, lv.Path(), CursorTag)
}

// owned reads p and applies [CheckOwned].
func (r *Runner) owned(ctx context.Context, p Path, allowUntagged bool) (LV, error) {
	lv, err := r.LV(ctx, p)
	if err != nil {
		return LV{}, err
	}
	return lv, CheckOwned(lv, allowUntagged)
}

// Remove removes the snapshot p (lvremove -y), refusing one without
// [CursorTag] unless allowUntagged.
func (r *Runner) Remove(ctx context.Context, p Path, allowUntagged bool) error {
	if _, err := r.owned(ctx, p, allowUntagged); err != nil {
		return err
	}
	_, _, err := r.Run(ctx, "lvremove", []string{"--yes", p.String()}, p.String())
	return err
}

// Extend grows the snapshot p's COW by addBytes (lvextend -L +N, rounded
// up to whole extents by LVM2), refusing one without [CursorTag] unless
// allowUntagged, and checking the VG's free extents first.
func (r *Runner) Extend(ctx context.Context, p Path, addBytes uint64, allowUntagged bool) error {
	if addBytes == 0 {
		return fmt.Errorf("extend %s: nothing to add", p)
	}
	if _, err := r.owned(ctx, p, allowUntagged); err != nil {
		return err
	}
	if err := r.CheckFree(ctx, p.VG, addBytes); err != nil {
		return err
	}
	_, _, err := r.Run(ctx, "lvextend", []string{"--size", "+" + strconv.FormatUint(addBytes, 10) + "b", p.String()}, p.String())
	return err
}

// Rename renames the snapshot p to newName (lvrename), refusing one
// without [CursorTag] unless allowUntagged.
func (r *Runner) Rename(ctx context.Context, p Path, newName string, allowUntagged bool) error {
	if err := ValidateLVName(newName); err != nil {
		return err
	}
	if _, err := r.owned(ctx, p, allowUntagged); err != nil {
		return err
	}
	_, _, err := r.Run(ctx, "lvrename", []string{p.VG, p.LV, newName}, p.String())
	return err
}

// MergeResult says how lvconvert --merge ended.
type MergeResult struct {
	// Pending: the origin was open, so LVM2 deferred the merge to the
	// origin's next activation ("Delaying merge since origin is open").
	Pending bool
	// Output is what lvconvert printed.
	Output string
}

// pendingMarkers are what lvconvert prints when it defers a merge
// (tools/lvconvert.c _lvconvert_merge_old_snapshot). Verified in the VM
// tier (lvm2 2.03.16).
var pendingMarkers = [][]byte{[]byte("Delaying merge since origin is open"), []byte("will occur on next activation")}

// Merge merges the snapshot p into its origin with lvconvert --merge in
// the foreground (polling every second until LVM2 has removed the
// snapshot), refusing a snapshot without [CursorTag] unless
// allowUntagged, and one already merging ([ErrMerging]). When the origin
// is open LVM2 defers the merge: Merge then returns Pending, and the merge
// starts when the origin is next activated (see [Runner.Reactivate]).
func (r *Runner) Merge(ctx context.Context, p Path, allowUntagged bool) (MergeResult, error) {
	lv, err := r.owned(ctx, p, allowUntagged)
	if err != nil {
		return MergeResult{}, err
	}
	if lv.Merging() {
		return MergeResult{}, fmt.Errorf("%w: %s", ErrMerging, p)
	}
	out, stderr, err := r.Run(ctx, "lvconvert", []string{"--merge", "--yes", "--interval", "1", p.String()}, p.String())
	res := MergeResult{Output: string(out) + string(stderr)}
	if err != nil {
		return res, err
	}
	for _, m := range pendingMarkers {
		if bytes.Contains(out, m) || bytes.Contains(stderr, m) {
			res.Pending = true
		}
	}
	return res, nil
}

// Reactivate deactivates and activates p (lvchange -an, -ay --poll n),
// which starts a deferred merge into p, then has LVM2 finish it
// (lvm lvpoll --polloperation merge) and waits, checking lvs every
// second until ctx ends, for p to stop merging. The origin must be closed.
func (r *Runner) Reactivate(ctx context.Context, p Path) error {
	if _, _, err := r.Run(ctx, "lvchange", []string{"--activate", "n", p.String()}, p.String()); err != nil {
		return err
	}
	if _, _, err := r.Run(ctx, "lvchange", []string{"--activate", "y", "--poll", "n", p.String()}, p.String()); err != nil {
		return err
	}
	lv, err := r.LV(ctx, p)
	if err != nil || !lv.Merging() {
		return err
	}
	// lvconvert --startpoll refuses a snapshot origin ("does not accept
	// LV type linear", VM tier); lvpoll is the command lvmpolld and the
	// forked background poller run, in the foreground.
	if _, _, err := r.Run(ctx, "lvpoll", []string{"--polloperation", "merge", "--interval", "1", p.String()}, p.String()); err != nil {
		return err
	}
	for {
		lv, err := r.LV(ctx, p)
		if err != nil || !lv.Merging() {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reactivate %s: merge still running: %w", p, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// CheckFree returns nil if volume group vg has free extents for a COW of
// needBytes (rounded up to whole extents, as LVM2 allocates), else an
// error wrapping [ErrNoSpace] that names how much is needed and free.
func (r *Runner) CheckFree(ctx context.Context, vg string, needBytes uint64) error {
	v, err := r.VG(ctx, vg)
	if err != nil {
		return err
	}
	return checkFree(v, needBytes)
}

func checkFree(v VG, needBytes uint64) error {
	if v.ExtentBytes == 0 {
		return fmt.Errorf("%w: vg %s reports extent size 0", ErrSyntax, v.Name)
	}
	need := (needBytes + v.ExtentBytes - 1) / v.ExtentBytes
	if need <= v.FreeExtents {
		return nil
	}
	return fmt.Errorf("%w: vg %s: a cursor of %d bytes needs %d extents (%d bytes), %d free (%d bytes); %d more extents (%d bytes) needed",
		ErrNoSpace, v.Name, needBytes, need, need*v.ExtentBytes, v.FreeExtents, v.FreeExtents*v.ExtentBytes,
		need-v.FreeExtents, (need-v.FreeExtents)*v.ExtentBytes)
}
