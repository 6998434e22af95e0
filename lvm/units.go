package lvm

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// ExtentIndex is the index of a physical extent on a PV, counted from the
// PV's first extent at PEStart.
type ExtentIndex uint64

// ExtentCount is a number of extents.
type ExtentCount uint64

// Extent sizes. Like LVM2, an extent is a power of two; dmsnap requires at
// least 4 KiB so that every extent is a whole number of pages and of any
// logical block size.
const (
	DefaultExtentSize dm.Sector = 8192 // 4 MiB
	MinExtentSize     dm.Sector = 8    // 4 KiB
	MaxExtentSize     dm.Sector = 1 << 25
)

// MaxSize is the largest size dmsnap handles: 2^54 sectors (8 EiB), so
// that a size in bytes fits an int64 (file offsets) and sums of two sizes
// cannot wrap. The PV label's size fields are bounded by it too.
const MaxSize dm.Sector = 1 << 54

// ErrBadSize is wrapped by every size parsing and validation error.
var ErrBadSize = errors.New("invalid size")

// CheckExtentSize checks that size is a power of two from [MinExtentSize]
// to [MaxExtentSize]. The error wraps [ErrBadSize].
func CheckExtentSize(size dm.Sector) error {
	if size < MinExtentSize || size > MaxExtentSize || bits.OnesCount64(uint64(size)) != 1 {
		return fmt.Errorf("extent size %s: must be a power of two from %s to %s: %w",
			FormatSize(size), FormatSize(MinExtentSize), FormatSize(MaxExtentSize), ErrBadSize)
	}
	return nil
}

// ExtentsFor returns the number of extents of extentSize needed to hold
// size, and whether size had to be rounded up to get there.
func ExtentsFor(size, extentSize dm.Sector) (n ExtentCount, rounded bool) {
	n = ExtentCount(size / extentSize)
	if size%extentSize != 0 {
		n++
		rounded = true
	}
	return n, rounded
}

var unitShift = map[byte]uint{'k': 10, 'm': 20, 'g': 30, 't': 40, 'p': 50, 'e': 60}

// ParseSize parses a size as the CLI accepts it: a decimal number with a
// unit. Units are "s" (512-byte sectors) and K, M, G, T, P, E (powers of
// 1024, either case, optionally followed by "iB" or "B"): "100M", "10G",
// "512K", "1.5G", "2048s". The result must be a whole, nonzero number of
// sectors, at most [MaxSize]. Errors wrap [ErrBadSize] and say what is
// wrong.
func ParseSize(s string) (dm.Sector, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q: must be greater than zero: %w", s, ErrBadSize)
	}
	return n, nil
}

// ParseSizeChange parses an absolute size ("10G") or a growth ("+1G"), as
// extend commands take them. Errors wrap [ErrBadSize].
func ParseSizeChange(s string) (size dm.Sector, relative bool, err error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		size, err = ParseSize(rest)
		return size, true, err
	}
	size, err = ParseSize(s)
	return size, false, err
}

func parseSize(s string) (dm.Sector, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("size %q: %s: %w", s, fmt.Sprintf(format, args...), ErrBadSize)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], s[i:]
	if num == "" {
		if strings.HasPrefix(s, "-") {
			return 0, bad("must not be negative")
		}
		return 0, bad("want a number followed by a unit, e.g. 100M")
	}
	intPart, fracPart, _ := strings.Cut(num, ".")
	if strings.Contains(fracPart, ".") || intPart == "" && fracPart == "" {
		return 0, bad("malformed number %q", num)
	}
	if unit == "" {
		// "0" is wrong for being zero whatever its unit would be.
		if strings.Trim(num, "0.") == "" {
			return 0, bad("must be greater than zero")
		}
		return 0, bad("missing unit (use s, K, M, G, T or P)")
	}
	var shift uint // bytes = number << shift, or sectors for "s"
	sectors := false
	switch {
	case unit == "s" || unit == "S":
		sectors = true
	default:
		u := strings.ToLower(unit)
		sh, ok := unitShift[u[0]]
		if !ok || !(len(u) == 1 || u[1:] == "ib" || u[1:] == "b") {
			return 0, bad("unknown unit %q (use s, K, M, G, T or P)", unit)
		}
		shift = sh
	}
	// value = (intPart + fracPart/10^len(fracPart)) * mult, computed exactly
	// in 128-bit-free arithmetic: integers up to 2^64, fractions up to 18
	// digits.
	if len(fracPart) > 18 {
		return 0, bad("too many decimal places")
	}
	var ip uint64
	if intPart != "" {
		v, err := strconv.ParseUint(intPart, 10, 64)
		if err != nil {
			return 0, bad("number out of range")
		}
		ip = v
	}
	var fp, den uint64 = 0, 1
	if fracPart != "" {
		v, err := strconv.ParseUint(fracPart, 10, 64)
		if err != nil {
			return 0, bad("malformed number %q", num)
		}
		fp = v
		for range len(fracPart) {
			den *= 10
		}
	}
	tooLarge := func() error { return bad("too large: the limit is %s (%d sectors)", FormatSize(MaxSize), MaxSize) }
	if sectors {
		if fp != 0 {
			return 0, bad("sector counts must be whole numbers")
		}
		// Checked before any conversion to bytes, which would wrap.
		if ip > uint64(MaxSize) {
			return 0, tooLarge()
		}
		return dm.Sector(ip), nil
	}
	// bytes = ip<<shift + fp<<shift/den; must divide into sectors.
	if ip > math.MaxUint64>>shift {
		return 0, bad("too large")
	}
	b := ip << shift
	if fp != 0 {
		hi, lo := bits.Mul64(fp, 1<<shift)
		if hi >= den {
			return 0, bad("too large")
		}
		q, r := bits.Div64(hi, lo, den)
		if r != 0 {
			return 0, bad("not a whole number of bytes")
		}
		if b+q < b {
			return 0, bad("too large")
		}
		b += q
	}
	if b%dm.SectorSize != 0 {
		return 0, bad("not a whole number of %d-byte sectors", dm.SectorSize)
	}
	if b/dm.SectorSize > uint64(MaxSize) {
		return 0, tooLarge()
	}
	return dm.Sector(b / dm.SectorSize), nil
}

// FormatSize formats s for people: whole multiples of a binary unit
// exactly ("4 MiB"), anything else with two decimals ("1.50 GiB"), and
// sizes under 1 KiB in sectors ("3 sectors").
func FormatSize(s dm.Sector) string {
	b := s.Bytes()
	if b < 1<<10 {
		if s == 1 {
			return "1 sector"
		}
		return fmt.Sprintf("%d sectors", s)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for i+1 < len(units) && b >= 1<<(10*(i+2)) {
		i++
	}
	div := uint64(1) << (10 * (i + 1))
	if b%div == 0 {
		return fmt.Sprintf("%d %s", b/div, units[i])
	}
	return fmt.Sprintf("%.2f %s", float64(b)/float64(div), units[i])
}
