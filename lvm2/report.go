package lvm2

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// reportArgs go with every read: JSON, sizes in bytes without a suffix.
var reportArgs = []string{"--reportformat", "json", "--units", "b", "--nosuffix"}

// VG is a volume group as vgs reports it.
type VG struct {
	Name          string
	UUID          string
	SizeBytes     uint64
	FreeBytes     uint64
	ExtentBytes   uint64
	ExtentCount   uint64
	FreeExtents   uint64
	LVCount       uint64
	SnapshotCount uint64
	Tags          []string
}

// vgFields are the vgs columns, in the order parseVGs expects none of.
const vgFields = "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,lv_count,snap_count,vg_tags"

// LV is a logical volume as lvs reports it. Sizes are in bytes, as
// lvs --units b prints them.
type LV struct {
	VG, Name string
	UUID     string
	// Attr is lv_attr verbatim (lvs(8) "lv_attr bits").
	Attr      string
	SizeBytes uint64
	// Extents is SizeBytes over the VG's extent size.
	Extents     uint64
	ExtentBytes uint64
	// Layout and SegType are lv_layout and the first segment's segtype.
	Layout  string
	SegType string
	// Origin is the origin's LV name for a snapshot, else "".
	Origin          string
	OriginSizeBytes uint64
	// SnapPercent is LVM2's Snap% exactly as lvs prints it ("25.12"), ""
	// when lvs prints nothing (not a snapshot, inactive, invalid).
	SnapPercent string
	// Monitor is seg_monitor: "monitored", "not monitored" or "" (no
	// dmeventd monitoring applies).
	Monitor string
	Tags    []string
	// DMPath is lv_dm_path (/dev/mapper/VG-LV); KernelMajor/Minor the
	// active device's numbers, -1 when inactive.
	DMPath                   string
	KernelMajor, KernelMinor int64
	ChunkBytes               uint64
	// Hidden: lvs -a printed the name in brackets ("[cur]"), as LVM2 does
	// for sub-LVs and for a snapshot merging into its origin (verified in
	// the VM tier, lvm2 2.03.16). Name is without the brackets.
	Hidden bool
}

// lvFields are the lvs columns. chunk_size, segtype and seg_monitor are
// segment fields: lvs then prints one row per segment, and parseLVs keeps
// the first row of each LV.
const lvFields = "vg_name,lv_name,lv_uuid,lv_attr,lv_size,vg_extent_size,lv_layout,segtype,origin,origin_size,snap_percent,seg_monitor,lv_tags,lv_dm_path,lv_kernel_major,lv_kernel_minor,chunk_size"

// Path returns the LV's "VG/LV".
func (l LV) Path() Path { return Path{VG: l.VG, LV: l.Name} }

// DMName returns the LV's device-mapper name.
func (l LV) DMName() string { return l.Path().DMName() }

// COWDMName returns the device-mapper name of a classic snapshot's COW
// layer ("VG-LV-cow"), which package cow reads.
func (l LV) COWDMName() string { return l.Path().DMName("cow") }

// IsSnapshot reports whether the LV is a classic (COW) snapshot: lv_attr
// volume type 's' (snapshot) or 'S' (merging snapshot).
func (l LV) IsSnapshot() bool { return len(l.Attr) > 0 && (l.Attr[0] == 's' || l.Attr[0] == 'S') }

// IsOrigin reports whether the LV is the origin of classic snapshots:
// lv_attr 'o', or 'O' while one merges into it.
func (l LV) IsOrigin() bool { return len(l.Attr) > 0 && (l.Attr[0] == 'o' || l.Attr[0] == 'O') }

// Merging reports whether the LV is a snapshot merging into its origin,
// or an origin a snapshot merges into (lv_attr 'S' or 'O'), a deferred
// merge included.
func (l LV) Merging() bool { return len(l.Attr) > 0 && (l.Attr[0] == 'S' || l.Attr[0] == 'O') }

// Active reports lv_attr's state bit 'a'.
func (l LV) Active() bool { return len(l.Attr) > 4 && l.Attr[4] == 'a' }

// Open reports lv_attr's device-open bit 'o'.
func (l LV) Open() bool { return len(l.Attr) > 5 && l.Attr[5] == 'o' }

// Invalid reports lv_attr's state 'I' (invalid snapshot) or 'm' (merge
// failed).
func (l LV) Invalid() bool { return len(l.Attr) > 4 && (l.Attr[4] == 'I' || l.Attr[4] == 'm') }

// ReadOnly reports lv_attr's permission 'r' or 'R'.
func (l LV) ReadOnly() bool { return len(l.Attr) > 1 && (l.Attr[1] == 'r' || l.Attr[1] == 'R') }

// HasTag reports whether the LV carries tag.
func (l LV) HasTag(tag string) bool {
	for _, t := range l.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// report is the shape of LVM2's JSON report: {"report":[{"lv":[{...}]}]}
// with every value a string.
type report struct {
	Report []map[string][]map[string]string `json:"report"`
}

func parseRows(b []byte, key string) ([]map[string]string, error) {
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	var rows []map[string]string
	for _, part := range r.Report {
		rows = append(rows, part[key]...)
	}
	return rows, nil
}

// fieldReader takes typed values out of one report row and keeps the
// first problem.
type fieldReader struct {
	row map[string]string
	err error
}

func (f *fieldReader) str(k string) string {
	v, ok := f.row[k]
	if !ok && f.err == nil {
		f.err = fmt.Errorf("%w: field %s missing", ErrSyntax, k)
	}
	return v
}

func (f *fieldReader) uint(k string) uint64 {
	v := f.str(k)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("%w: field %s: %q is not a byte count", ErrSyntax, k, v)
	}
	return n
}

func (f *fieldReader) int(k string) int64 {
	v := f.str(k)
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("%w: field %s: %q is not a number", ErrSyntax, k, v)
	}
	return n
}

func (f *fieldReader) tags(k string) []string {
	v := f.str(k)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// ParseVGs decodes the JSON report of vgs -o vgFields.
func ParseVGs(b []byte) ([]VG, error) {
	rows, err := parseRows(b, "vg")
	if err != nil {
		return nil, err
	}
	vgs := make([]VG, 0, len(rows))
	for _, row := range rows {
		f := fieldReader{row: row}
		vg := VG{
			Name: f.str("vg_name"), UUID: f.str("vg_uuid"),
			SizeBytes: f.uint("vg_size"), FreeBytes: f.uint("vg_free"),
			ExtentBytes: f.uint("vg_extent_size"), ExtentCount: f.uint("vg_extent_count"),
			FreeExtents: f.uint("vg_free_count"), LVCount: f.uint("lv_count"),
			SnapshotCount: f.uint("snap_count"), Tags: f.tags("vg_tags"),
		}
		if f.err != nil {
			return nil, fmt.Errorf("vg %q: %w", vg.Name, f.err)
		}
		vgs = append(vgs, vg)
	}
	return vgs, nil
}

// ParseLVs decodes the JSON report of lvs -o lvFields, keeping the first
// row (segment) of each LV.
func ParseLVs(b []byte) ([]LV, error) {
	rows, err := parseRows(b, "lv")
	if err != nil {
		return nil, err
	}
	lvs := []LV{}
	seen := map[string]bool{}
	for _, row := range rows {
		f := fieldReader{row: row}
		lv := LV{
			VG: f.str("vg_name"), Name: f.str("lv_name"), UUID: f.str("lv_uuid"),
			Attr: f.str("lv_attr"), SizeBytes: f.uint("lv_size"),
			ExtentBytes: f.uint("vg_extent_size"), Layout: f.str("lv_layout"),
			SegType: f.str("segtype"), Origin: f.str("origin"),
			OriginSizeBytes: f.uint("origin_size"), SnapPercent: f.str("snap_percent"),
			Monitor: f.str("seg_monitor"), Tags: f.tags("lv_tags"),
			DMPath: f.str("lv_dm_path"), KernelMajor: f.int("lv_kernel_major"),
			KernelMinor: f.int("lv_kernel_minor"), ChunkBytes: f.uint("chunk_size"),
		}
		if f.err != nil {
			return nil, fmt.Errorf("lv %s/%s: %w", lv.VG, lv.Name, f.err)
		}
		if lv.ExtentBytes == 0 || lv.SizeBytes%lv.ExtentBytes != 0 {
			return nil, fmt.Errorf("%w: lv %s/%s: size %d is not a multiple of the extent size %d", ErrSyntax, lv.VG, lv.Name, lv.SizeBytes, lv.ExtentBytes)
		}
		lv.Extents = lv.SizeBytes / lv.ExtentBytes
		if n := lv.Name; len(n) > 2 && n[0] == '[' && n[len(n)-1] == ']' {
			lv.Name, lv.Hidden = n[1:len(n)-1], true
		}
		key := lv.VG + "/" + lv.Name
		if seen[key] {
			continue
		}
		seen[key] = true
		lvs = append(lvs, lv)
	}
	return lvs, nil
}

// VGs lists the named volume groups, or all when names is empty. A
// missing VG is an error wrapping [ErrNotFound].
func (r *Runner) VGs(ctx context.Context, names ...string) ([]VG, error) {
	for _, n := range names {
		if err := ValidateVGName(n); err != nil {
			return nil, err
		}
	}
	args := append(append([]string{}, reportArgs...), "-o", vgFields)
	out, _, err := r.Run(ctx, "vgs", append(args, names...), strings.Join(names, " "))
	if err != nil {
		return nil, err
	}
	return ParseVGs(out)
}

// VG returns one volume group.
func (r *Runner) VG(ctx context.Context, name string) (VG, error) {
	vgs, err := r.VGs(ctx, name)
	if err != nil {
		return VG{}, err
	}
	if len(vgs) != 1 {
		return VG{}, fmt.Errorf("vgs %s: %w", name, ErrNotFound)
	}
	return vgs[0], nil
}

// LVs lists the LVs of the named volume group, or of every VG when vg is
// "", hidden ones included (lvs -a): a merging snapshot is hidden.
func (r *Runner) LVs(ctx context.Context, vg string) ([]LV, error) {
	args := append(append([]string{}, reportArgs...), "-a", "-o", lvFields)
	if vg != "" {
		if err := ValidateVGName(vg); err != nil {
			return nil, err
		}
		args = append(args, vg)
	}
	out, _, err := r.Run(ctx, "lvs", args, vg)
	if err != nil {
		return nil, err
	}
	return ParseLVs(out)
}

// LV returns one logical volume; a missing one is an error wrapping
// [ErrNotFound]. It lists the whole VG ([Runner.LVs]) and picks the LV by
// name, because lvs refuses "VG/LV" for a snapshot whose merge LVM2
// deferred (verified in the VM tier, lvm2 2.03.16).
func (r *Runner) LV(ctx context.Context, p Path) (LV, error) {
	if _, err := ParsePath(p.String()); err != nil {
		return LV{}, err
	}
	lvs, err := r.LVs(ctx, p.VG)
	if err != nil {
		return LV{}, err
	}
	for _, lv := range lvs {
		if lv.Name == p.LV {
			return lv, nil
		}
	}
	return LV{}, &CommandError{Command: "lvs", Object: p.String(), Err: ErrNotFound}
}
