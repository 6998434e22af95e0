package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Units as lvs(8) takes them: h/H pick a unit per value; b, s (512-byte
// sectors), k, m, g, t, p, e are powers of 1024, upper case powers of 1000
// (B and S are the same as b and s).
const unitLetters = "hbskmgtpe"

// ValidUnits reports whether u is a --units value.
func ValidUnits(u string) error {
	if u == "" {
		return nil
	}
	if len(u) != 1 || !strings.ContainsAny(strings.ToLower(u), unitLetters) {
		return fmt.Errorf("--units %q: want one of h, b, s, k, m, g, t, p, e (lower case: powers of 1024, upper case: of 1000)", u)
	}
	return nil
}

func unitSize(letter byte) float64 {
	base := 1024.0
	if letter >= 'A' && letter <= 'Z' {
		base = 1000
	}
	switch letter | 0x20 {
	case 'b':
		return 1
	case 's':
		return 512
	}
	i := strings.IndexByte("kmgtpe", letter|0x20)
	return math.Pow(base, float64(i+1))
}

// FormatSize prints bytes in units (default "h"), with two decimals as lvs
// does. A value the two decimals round up is marked "<" (lvs's "<1.00g"), so
// a printed size is never more than the real one without saying so.
// noSuffix drops the unit letter.
func FormatSize(bytes uint64, units string, noSuffix bool) string {
	if units == "" {
		units = "h"
	}
	letter := units[0]
	if letter == 'h' || letter == 'H' {
		letter = humanUnit(bytes, letter == 'H')
	}
	if letter == 'B' || letter == 'S' {
		letter |= 0x20
	}
	suffix := string(rune(letter))
	if noSuffix {
		suffix = ""
	}
	size := unitSize(letter)
	if letter == 'b' || letter == 's' {
		v := bytes / uint64(size)
		prefix := ""
		if v*uint64(size) != bytes {
			// A partial sector: rounded up, like the decimals below.
			v++
			prefix = "<"
		}
		return prefix + strconv.FormatUint(v, 10) + suffix
	}
	v := float64(bytes) / size
	shown := math.Round(v*100) / 100
	prefix := ""
	if shown > v && (shown-v)*size >= 0.5 {
		prefix = "<"
	}
	return prefix + strconv.FormatFloat(shown, 'f', 2, 64) + suffix
}

// humanUnit is the largest unit in which bytes, rounded to two decimals,
// is at least 1: 1 GiB less a byte is "<1.00g", as lvs prints it.
func humanUnit(bytes uint64, si bool) byte {
	letters := "kmgtpe"
	unit := byte('b')
	if si {
		letters, unit = "KMGTPE", 'B'
	}
	for i := 0; i < len(letters); i++ {
		if math.Round(float64(bytes)/unitSize(letters[i])*100) < 100 {
			break
		}
		unit = letters[i]
	}
	return unit
}

// ParseSize reads a size in a selection (-S): a number with an optional unit
// letter as --units names them; a bare number is MiB, as LVM2 reads sizes.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := unitSize('m')
	if c := t[len(t)-1]; c < '0' || c > '9' {
		if c == 'h' || c == 'H' || !strings.ContainsRune(unitLetters, rune(c|0x20)) {
			return 0, fmt.Errorf("size %q: unknown unit %q", s, c)
		}
		mult = unitSize(c)
		t = t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: not a non-negative number", s)
	}
	b := v * mult
	if b >= math.MaxUint64 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return uint64(math.Round(b)), nil
}
