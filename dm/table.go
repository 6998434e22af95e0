package dm

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Segment maps Length sectors starting at Start (in the mapped device) to
// Target.
type Segment struct {
	Start  Sector
	Length Sector
	Target Target
}

// Line returns s as a raw target line, without validating it. A nil Target
// gives an empty Type.
func (s Segment) Line() TargetLine {
	l := TargetLine{Start: s.Start, Length: s.Length}
	if s.Target != nil {
		l.Type, l.Params = s.Target.Type(), s.Target.Params()
	}
	return l
}

// Table is a typed device-mapper table: a pure description that can be
// built, printed, parsed and compared without a kernel. The Client loads it
// into a Device.
type Table []Segment

// Validate checks the rules the kernel enforces when loading t: at least one
// segment, segments contiguous from sector 0 with nonzero lengths and no
// overflow, and each target valid. The error wraps [ErrInvalidTable].
func (t Table) Validate() error {
	if len(t) == 0 {
		return invalidf("table has no targets")
	}
	var next Sector
	for i, s := range t {
		switch {
		case s.Start != next:
			return invalidf("segment %d starts at sector %d, want %d", i, s.Start, next)
		case s.Length == 0:
			return invalidf("segment %d has length 0", i)
		case s.Length > math.MaxUint64-s.Start:
			return invalidf("segment %d ends past the last sector", i)
		case s.Target == nil:
			return invalidf("segment %d has no target", i)
		}
		if err := s.Target.Validate(); err != nil {
			return fmt.Errorf("segment %d: %w", i, err)
		}
		next = s.Start + s.Length
	}
	return nil
}

// Lines validates t and returns the target lines to load. See
// [Table.Validate] for the errors.
func (t Table) Lines() ([]TargetLine, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	lines := make([]TargetLine, len(t))
	for i, s := range t {
		lines[i] = s.Line()
	}
	return lines, nil
}

// Len returns the size of the mapped device: the sum of segment lengths.
func (t Table) Len() Sector {
	var n Sector
	for _, s := range t {
		n += s.Length
	}
	return n
}

// String formats t as dmsetup prints a table, one "<start> <length> <type>
// <params>" line per segment, lines separated by newlines. It does not
// validate t.
func (t Table) String() string {
	var b []byte
	for i, s := range t {
		if i > 0 {
			b = append(b, '\n')
		}
		l := s.Line()
		b = strconv.AppendUint(b, uint64(l.Start), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(l.Length), 10)
		b = append(b, ' ')
		b = append(b, l.Type...)
		if l.Params != "" {
			b = append(b, ' ')
			b = append(b, l.Params...)
		}
	}
	return string(b)
}

// Equal reports whether t and u map the same ranges to the same targets.
// Targets compare by type and printed parameters.
func (t Table) Equal(u Table) bool {
	if len(t) != len(u) {
		return false
	}
	for i := range t {
		a, b := t[i], u[i]
		if a.Start != b.Start || a.Length != b.Length {
			return false
		}
		if (a.Target == nil) != (b.Target == nil) {
			return false
		}
		if a.Target != nil && (a.Target.Type() != b.Target.Type() || a.Target.Params() != b.Target.Params()) {
			return false
		}
	}
	return true
}

// ParseTargetLine parses one line of dmsetup table or status output in the
// plain form "<start> <length> <type> [<params>]" (no "name: " prefix).
// Params keeps its inner spacing; surrounding blanks are trimmed. The error
// wraps [ErrSyntax] and quotes s.
func ParseTargetLine(s string) (TargetLine, error) {
	rest := strings.TrimSpace(s)
	var f [3]string
	for i := range f {
		f[i], rest = nextField(rest)
	}
	if f[2] == "" {
		return TargetLine{}, syntaxErrorf("target line %q: want <start> <length> <type> [<params>]", s)
	}
	start, err := parseSector("start", f[0])
	if err != nil {
		return TargetLine{}, fmt.Errorf("target line %q: %w", s, err)
	}
	length, err := parseSector("length", f[1])
	if err != nil {
		return TargetLine{}, fmt.Errorf("target line %q: %w", s, err)
	}
	return TargetLine{Start: start, Length: length, Type: f[2], Params: rest}, nil
}

// nextField splits s, which has no leading blanks, at its first run of
// blanks.
func nextField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// ParseTarget parses one raw target line into a validated segment. Unknown
// target types give an error wrapping [ErrUnknownTarget]; malformed
// parameters wrap [ErrSyntax], and parameters the kernel would refuse wrap
// [ErrInvalidTable]. Errors quote the parameters.
func ParseTarget(l TargetLine) (Segment, error) {
	parse, ok := targetParsers[l.Type]
	if !ok {
		return Segment{}, fmt.Errorf("target type %q: %w", l.Type, ErrUnknownTarget)
	}
	t, err := parse(strings.Fields(l.Params))
	if err == nil {
		err = t.Validate()
	}
	if err != nil {
		return Segment{}, fmt.Errorf("parse %s %q: %w", l.Type, l.Params, err)
	}
	return Segment{Start: l.Start, Length: l.Length, Target: t}, nil
}

// ParseTable parses the target lines of a table, as the kernel returns them,
// and validates the result (see [ParseTarget] and [Table.Validate] for the
// errors).
func ParseTable(lines []TargetLine) (Table, error) {
	t := make(Table, len(lines))
	for i, l := range lines {
		s, err := ParseTarget(l)
		if err != nil {
			return nil, err
		}
		t[i] = s
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseTableText parses dmsetup table output in the plain form, one
// "<start> <length> <type> <params>" line per segment. Blank lines and lines
// starting with '#' are skipped, as libdevmapper does for table files. The
// result is validated; see [ParseTable].
func ParseTableText(text string) (Table, error) {
	var lines []TargetLine
	for n, raw := range strings.Split(text, "\n") {
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			continue
		}
		l, err := ParseTargetLine(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		lines = append(lines, l)
	}
	return ParseTable(lines)
}
