package lvm2

import (
	"fmt"
	"strings"
)

// Path is a logical volume named as LVM2 names it, "VG/LV".
type Path struct {
	VG, LV string
}

// String returns "VG/LV".
func (p Path) String() string { return p.VG + "/" + p.LV }

// DMName returns LVM2's device-mapper name of the LV: VG and LV joined by
// '-', with every '-' inside either name doubled
// (lib/misc/lvm-string.c build_dm_name). layer, if given, is appended
// after another '-' ("real", "cow").
func (p Path) DMName(layer ...string) string {
	n := strings.ReplaceAll(p.VG, "-", "--") + "-" + strings.ReplaceAll(p.LV, "-", "--")
	for _, l := range layer {
		n += "-" + l
	}
	return n
}

// ParsePath parses "VG/LV" (an optional "/dev/" prefix is refused: give
// the name, not the device). Both parts are checked with
// [ValidateVGName] and [ValidateLVName]; errors wrap [ErrInvalidName].
func ParsePath(s string) (Path, error) {
	vg, lv, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(lv, "/") {
		return Path{}, fmt.Errorf("%w: %q: want VG/LV", ErrInvalidName, s)
	}
	if err := ValidateVGName(vg); err != nil {
		return Path{}, err
	}
	if err := ValidateLVName(lv); err != nil {
		return Path{}, err
	}
	return Path{VG: vg, LV: lv}, nil
}

// nameLen is LVM2's NAME_LEN (lib/metadata/metadata-exported.h) minus
// the terminating NUL.
const nameLen = 127

// validateName applies LVM2's common rule (lib/misc/lvm-string.c
// _validate_name): 1..127 characters from [a-zA-Z0-9+_.-], not starting
// with '-', and not "." or "..".
func validateName(kind, n string) error {
	switch {
	case n == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalidName, kind)
	case len(n) > nameLen:
		return fmt.Errorf("%w: %s name %q is longer than %d characters", ErrInvalidName, kind, n, nameLen)
	case n == "." || n == "..":
		return fmt.Errorf("%w: %s name %q is reserved", ErrInvalidName, kind, n)
	case n[0] == '-':
		return fmt.Errorf("%w: %s name %q starts with '-'", ErrInvalidName, kind, n)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("%w: %s name %q contains %q (allowed: a-z A-Z 0-9 + _ . -)", ErrInvalidName, kind, n, c)
		}
	}
	return nil
}

// ValidateVGName checks a volume group name by LVM2's rules
// (lib/metadata/metadata.c validate_new_vg_name); errors wrap
// [ErrInvalidName].
func ValidateVGName(n string) error { return validateName("volume group", n) }

// reservedLVPrefixes and reservedLVSubstrings are LVM2's
// (lib/misc/lvm-string.c apply_lvname_restrictions, 2.03.16): names
// LVM2 keeps for its hidden sub-LVs.
var (
	reservedLVPrefixes   = []string{"snapshot", "pvmove"}
	reservedLVSubstrings = []string{
		"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig",
		"_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta", "_tdata",
		"_tmeta", "_vdata", "_vorigin", "_wcorig",
	}
)

// ValidateLVName checks a logical volume name by LVM2's rules: the common
// rule plus the reserved prefixes and substrings of
// apply_lvname_restrictions. Errors wrap [ErrInvalidName].
func ValidateLVName(n string) error {
	if err := validateName("logical volume", n); err != nil {
		return err
	}
	for _, p := range reservedLVPrefixes {
		if strings.HasPrefix(n, p) {
			return fmt.Errorf("%w: logical volume name %q: names starting %q are reserved by LVM2", ErrInvalidName, n, p)
		}
	}
	for _, s := range reservedLVSubstrings {
		if strings.Contains(n, s) {
			return fmt.Errorf("%w: logical volume name %q: names containing %q are reserved by LVM2", ErrInvalidName, n, s)
		}
	}
	return nil
}
