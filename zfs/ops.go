package zfs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseGet parses `zfs get -Hp -o property,value P1,P2,… NAME`: one
// "property<TAB>value" line per property. A value of "-" (not applicable
// or unset, e.g. receive_resume_token without a partial receive) becomes
// "". Errors wrap [ErrSyntax].
func ParseGet(out []byte) (map[string]string, error) {
	m := make(map[string]string)
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		prop, val, ok := strings.Cut(line, "\t")
		if !ok || prop == "" || strings.Contains(val, "\t") {
			return nil, fmt.Errorf("zfs get line %q: %w", line, ErrSyntax)
		}
		if val == "-" {
			val = ""
		}
		m[prop] = val
	}
	return m, nil
}

// Get returns the named properties of a dataset, snapshot or bookmark, in
// parsable form. Errors: [ErrDatasetNotFound], [ErrSyntax] (also when a
// requested property is missing from the output).
func (r *Runner) Get(ctx context.Context, name string, props ...string) (map[string]string, error) {
	if len(props) == 0 {
		return nil, errors.New("zfs get: no properties")
	}
	out, err := r.output(ctx, name, "get", "-Hp", "-o", "property,value", strings.Join(props, ","), name)
	if err != nil {
		return nil, err
	}
	m, err := ParseGet(out)
	if err != nil {
		return nil, err
	}
	for _, p := range props {
		if _, ok := m[p]; !ok {
			return nil, fmt.Errorf("zfs get %s %s: property missing from output: %w", p, name, ErrSyntax)
		}
	}
	return m, nil
}

// VolumeInfo is what dmsnap needs to know about a zvol.
type VolumeInfo struct {
	Name              string
	GUID              uint64
	SizeBytes         uint64 // volsize
	VolBlockSizeBytes uint64 // volblocksize
	// ResumeToken is receive_resume_token, "" when none.
	ResumeToken string
}

// Volume reads a zvol's properties. Errors: [ErrDatasetNotFound],
// [ErrNotAZvol] (the dataset exists but its type is not "volume"),
// [ErrSyntax].
func (r *Runner) Volume(ctx context.Context, dataset string) (VolumeInfo, error) {
	v, _, err := r.VolumeWith(ctx, dataset)
	return v, err
}

// VolumeWith is [Runner.Volume] that also reads the extra properties in
// the same `zfs get` (one command instead of several), returned as
// [Runner.Get] returns them.
func (r *Runner) VolumeWith(ctx context.Context, dataset string, extra ...string) (VolumeInfo, map[string]string, error) {
	if err := CheckDatasetName(dataset); err != nil {
		return VolumeInfo{}, nil, err
	}
	m, err := r.Get(ctx, dataset, append([]string{"type", "guid", "volsize", "volblocksize", "receive_resume_token"}, extra...)...)
	if err != nil {
		return VolumeInfo{}, nil, err
	}
	if m["type"] != "volume" {
		return VolumeInfo{}, nil, fmt.Errorf("%s is a %s: %w", dataset, m["type"], ErrNotAZvol)
	}
	v := VolumeInfo{Name: dataset, ResumeToken: m["receive_resume_token"]}
	for _, f := range []struct {
		prop string
		dst  *uint64
	}{{"guid", &v.GUID}, {"volsize", &v.SizeBytes}, {"volblocksize", &v.VolBlockSizeBytes}} {
		n, err := strconv.ParseUint(m[f.prop], 10, 64)
		if err != nil {
			return VolumeInfo{}, nil, fmt.Errorf("zfs get %s %s = %q: %w", f.prop, dataset, m[f.prop], ErrSyntax)
		}
		*f.dst = n
	}
	return v, m, nil
}

// Exists reports whether a dataset, snapshot or bookmark exists.
func (r *Runner) Exists(ctx context.Context, name string) (bool, error) {
	_, err := r.Get(ctx, name, "guid")
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrDatasetNotFound):
		return false, nil
	default:
		return false, err
	}
}

// CreateVolume runs `zfs create [-s] [-o PROP=VALUE]… -b VOLBLOCKSIZE -V
// SIZE dataset`. sparse omits the refreservation; props ("name=value")
// are set atomically with the creation. Errors: [ErrExists],
// [ErrDatasetNotFound] (parent or pool missing).
func (r *Runner) CreateVolume(ctx context.Context, dataset string, sizeBytes, volBlockSizeBytes uint64, sparse bool, props ...string) error {
	if err := CheckDatasetName(dataset); err != nil {
		return err
	}
	args := []string{"create"}
	if sparse {
		args = append(args, "-s")
	}
	for _, p := range props {
		if k, _, ok := strings.Cut(p, "="); !ok || k == "" {
			return fmt.Errorf("zfs create %s: property %q is not name=value: %w", dataset, p, ErrInvalidName)
		}
		args = append(args, "-o", p)
	}
	args = append(args, "-b", strconv.FormatUint(volBlockSizeBytes, 10),
		"-V", strconv.FormatUint(sizeBytes, 10), dataset)
	return r.Run(ctx, BinZFS, args, dataset, nil, nil)
}

// Snapshot runs `zfs snapshot pool/vol@name`. Errors: [ErrExists],
// [ErrDatasetNotFound].
func (r *Runner) Snapshot(ctx context.Context, snapshot string) error {
	if err := checkPointName(snapshot, Snapshot); err != nil {
		return err
	}
	return r.Run(ctx, BinZFS, []string{"snapshot", snapshot}, snapshot, nil, nil)
}

// Bookmark runs `zfs bookmark pool/vol@snap pool/vol#bm`. Errors:
// [ErrExists], [ErrDatasetNotFound].
func (r *Runner) Bookmark(ctx context.Context, snapshot, bookmark string) error {
	if err := checkPointName(snapshot, Snapshot); err != nil {
		return err
	}
	if err := checkPointName(bookmark, Bookmark); err != nil {
		return err
	}
	return r.Run(ctx, BinZFS, []string{"bookmark", snapshot, bookmark}, bookmark, nil, nil)
}

// MoveBookmark points bookmark at snapshot: it destroys the bookmark if it
// exists, then creates it. Not atomic: between the two steps the bookmark
// does not exist, so make the per-snapshot bookmark first.
func (r *Runner) MoveBookmark(ctx context.Context, snapshot, bookmark string) error {
	if err := r.DestroyIfExists(ctx, bookmark); err != nil {
		return err
	}
	return r.Bookmark(ctx, snapshot, bookmark)
}

// Destroy runs `zfs destroy NAME` for one snapshot or bookmark (never a
// dataset: this package destroys only clones, with [Runner.DestroyClone]). Errors:
// [ErrDatasetNotFound], [ErrBusy].
func (r *Runner) Destroy(ctx context.Context, name string) error {
	k := Snapshot
	if strings.Contains(name, "#") {
		k = Bookmark
	}
	if err := checkPointName(name, k); err != nil {
		return err
	}
	return r.Run(ctx, BinZFS, []string{"destroy", name}, name, nil, nil)
}

// DestroyIfExists is the idempotent [Runner.Destroy]: a missing snapshot
// or bookmark is success.
func (r *Runner) DestroyIfExists(ctx context.Context, name string) error {
	err := r.Destroy(ctx, name)
	if errors.Is(err, ErrDatasetNotFound) {
		return nil
	}
	return err
}

// Rollback runs `zfs rollback pool/vol@snap` (no -r): it discards changes
// made since the dataset's most recent snapshot, which snap must be.
func (r *Runner) Rollback(ctx context.Context, snapshot string) error {
	if err := checkPointName(snapshot, Snapshot); err != nil {
		return err
	}
	return r.Run(ctx, BinZFS, []string{"rollback", snapshot}, snapshot, nil, nil)
}

// Clone runs `zfs clone [-o PROP=VALUE]… snapshot clone`: a new dataset
// sharing snapshot's blocks (a read-only view when props hold
// readonly=on). The snapshot cannot be destroyed while the clone exists.
// Errors: [ErrExists], [ErrDatasetNotFound].
func (r *Runner) Clone(ctx context.Context, snapshot, clone string, props ...string) error {
	if err := checkPointName(snapshot, Snapshot); err != nil {
		return err
	}
	if err := CheckDatasetName(clone); err != nil {
		return err
	}
	args := []string{"clone"}
	for _, p := range props {
		if k, _, ok := strings.Cut(p, "="); !ok || k == "" {
			return fmt.Errorf("zfs clone %s: property %q is not name=value: %w", clone, p, ErrInvalidName)
		}
		args = append(args, "-o", p)
	}
	return r.Run(ctx, BinZFS, append(args, snapshot, clone), clone, nil, nil)
}

// ErrNotAClone: DestroyClone was asked to destroy a dataset that is not
// a clone.
var ErrNotAClone = errors.New("dataset is not a clone")

// DestroyClone runs `zfs destroy NAME` for a clone (its `origin`
// property names a snapshot), the only kind of dataset this package
// destroys; a missing clone is success. Errors: [ErrNotAClone] (nothing
// destroyed), [ErrBusy].
func (r *Runner) DestroyClone(ctx context.Context, name string) error {
	if err := CheckDatasetName(name); err != nil {
		return err
	}
	m, err := r.Get(ctx, name, "origin")
	if errors.Is(err, ErrDatasetNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if o := m["origin"]; o == "" || o == "-" {
		return fmt.Errorf("refusing to destroy %s: %w", name, ErrNotAClone)
	}
	err = r.Run(ctx, BinZFS, []string{"destroy", name}, name, nil, nil)
	if errors.Is(err, ErrDatasetNotFound) {
		return nil
	}
	return err
}
