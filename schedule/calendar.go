package schedule

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxYear is the last year a calendar is searched in (systemd stops at
// 2199 as well: calendarspec.c MAX_YEAR).
const maxYear = 2199

// comp is one component of a field: the value start, or with repeat > 0
// every start + k*repeat.
type comp struct {
	start, repeat int
}

// field is a sorted list of components; nil matches every value.
type field []comp

func (f field) match(v int) bool {
	if f == nil {
		return true
	}
	for _, c := range f {
		if v == c.start || (c.repeat > 0 && v > c.start && (v-c.start)%c.repeat == 0) {
			return true
		}
	}
	return false
}

func (f field) format(width int) string {
	if f == nil {
		return "*"
	}
	parts := make([]string, len(f))
	for i, c := range f {
		parts[i] = fmt.Sprintf("%0*d", width, c.start)
		if c.repeat > 0 {
			parts[i] += "/" + strconv.Itoa(c.repeat)
		}
	}
	return strings.Join(parts, ",")
}

// Calendar is a parsed OnCalendar= expression: weekdays, year, month,
// day, hour, minute and second fields in one time zone.
type Calendar struct {
	weekdays uint8 // bit 0 = Monday … bit 6 = Sunday; 0 = any
	year, month, day,
	hour, minute, second field
	loc  *time.Location
	zone string // "" (local), "UTC" or an IANA name, as printed
}

var shorthands = map[string]string{
	"minutely":      "*-*-* *:*:00",
	"hourly":        "*-*-* *:00:00",
	"daily":         "*-*-* 00:00:00",
	"monthly":       "*-*-01 00:00:00",
	"weekly":        "Mon *-*-* 00:00:00",
	"yearly":        "*-01-01 00:00:00",
	"annually":      "*-01-01 00:00:00",
	"quarterly":     "*-01,04,07,10-01 00:00:00",
	"semiannually":  "*-01,07-01 00:00:00",
	"semi-annually": "*-01,07-01 00:00:00",
}

var weekdayNames = []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}

var weekdayLong = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}

// ParseCalendar parses the systemd.time(7) calendar subset
//
//	[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [UTC|ZONE]
//
// or one of minutely, hourly, daily, weekly, monthly, quarterly,
// semiannually, yearly (annually) with an optional zone. Weekdays are
// names (Mon or Monday) in lists and ranges (Mon..Fri, Sat,Sun); every
// other field is "*" or a list of values, ranges (9..17) and repetitions
// (0/15: 0, 15, 30, 45; */15 alike). A missing date is *-*-*, a missing
// time 00:00:00, missing seconds :00; a two-digit year is 19xx (70–99) or
// 20xx. ZONE is UTC or an IANA name (Europe/Berlin); without one the
// calendar is in local (nil: time.Local). Refused with an error naming
// the part: the last-day-of-month "~", fractional seconds, "@epoch" and
// anything else systemd accepts beyond this. Errors wrap [ErrSyntax].
func ParseCalendar(s string, local *time.Location) (*Calendar, error) {
	fail := func(format string, args ...any) (*Calendar, error) {
		return nil, fmt.Errorf("calendar %q: %s: %w", s, fmt.Sprintf(format, args...), ErrSyntax)
	}
	if local == nil {
		local = time.Local
	}
	c := &Calendar{loc: local}
	tokens := strings.Fields(s)
	if len(tokens) == 0 {
		return fail("empty")
	}
	if strings.HasPrefix(s, "@") {
		return fail("\"@EPOCH\" timestamps are not supported")
	}
	if last := tokens[len(tokens)-1]; strings.EqualFold(last, "UTC") {
		c.loc, c.zone = time.UTC, "UTC"
		tokens = tokens[:len(tokens)-1]
	} else if strings.Contains(last, "/") && isLetter(last[0]) {
		loc, err := time.LoadLocation(last)
		if err != nil {
			return fail("unknown time zone %q", last)
		}
		c.loc, c.zone = loc, last
		tokens = tokens[:len(tokens)-1]
	}
	if len(tokens) == 0 {
		return fail("a time zone alone is not a calendar")
	}
	if len(tokens) == 1 {
		if exp, ok := shorthands[strings.ToLower(tokens[0])]; ok {
			tokens = strings.Fields(exp)
		}
	}
	if _, ok := shorthands[strings.ToLower(tokens[0])]; ok {
		return fail("%q stands alone (with at most a time zone); write e.g. \"*-*-* 02:00\" for a time of day", tokens[0])
	}
	if isLetter(tokens[0][0]) {
		wd, err := parseWeekdays(tokens[0])
		if err != nil {
			return fail("%v", err)
		}
		c.weekdays = wd
		tokens = tokens[1:]
	}
	var date, clock string
	switch len(tokens) {
	case 0:
	case 1:
		if strings.Contains(tokens[0], ":") {
			clock = tokens[0]
		} else {
			date = tokens[0]
		}
	case 2:
		date, clock = tokens[0], tokens[1]
	default:
		return fail("unexpected %q (want [WEEKDAYS] [DATE] [TIME] [ZONE])", strings.Join(tokens[2:], " "))
	}
	if strings.Contains(s, "~") {
		return fail("the last-day-of-month form \"~\" is not supported")
	}
	if err := c.parseDate(date); err != nil {
		return fail("date %q: %v", date, err)
	}
	if err := c.parseClock(clock); err != nil {
		return fail("time %q: %v", clock, err)
	}
	return c, nil
}

func isLetter(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') }

func parseWeekdays(tok string) (uint8, error) {
	day := func(name string) (int, error) {
		for i := range weekdayNames {
			if strings.EqualFold(name, weekdayNames[i]) || strings.EqualFold(name, weekdayLong[i]) {
				return i, nil
			}
		}
		return 0, fmt.Errorf("unknown weekday %q (want Mon … Sun, Monday … Sunday)", name)
	}
	var mask uint8
	for _, part := range strings.Split(tok, ",") {
		if part == "" {
			continue // "Wed, 17:48" leaves a trailing comma
		}
		lo, hi, isRange := strings.Cut(part, "..")
		if !isRange {
			lo, hi, isRange = strings.Cut(part, "-")
		}
		a, err := day(lo)
		if err != nil {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = day(hi); err != nil {
				return 0, err
			}
			if b < a {
				return 0, fmt.Errorf("weekday range %q runs backwards", part)
			}
		}
		for d := a; d <= b; d++ {
			mask |= 1 << d
		}
	}
	if mask == 0 {
		return 0, fmt.Errorf("no weekday in %q", tok)
	}
	if mask == 0x7f {
		mask = 0
	}
	return mask, nil
}

func (c *Calendar) parseDate(s string) error {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, "-")
	var err error
	switch len(parts) {
	case 3:
		if c.year, err = parseField(parts[0], "year", 1970, maxYear, true); err != nil {
			return err
		}
		parts = parts[1:]
	case 2:
	default:
		return fmt.Errorf("want [YEAR-]MONTH-DAY")
	}
	if c.month, err = parseField(parts[0], "month", 1, 12, false); err != nil {
		return err
	}
	c.day, err = parseField(parts[1], "day", 1, 31, false)
	return err
}

func (c *Calendar) parseClock(s string) error {
	c.hour, c.minute, c.second = field{{0, 0}}, field{{0, 0}}, field{{0, 0}}
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return fmt.Errorf("want HOUR:MINUTE[:SECOND]")
	}
	var err error
	if c.hour, err = parseField(parts[0], "hour", 0, 23, false); err != nil {
		return err
	}
	if c.minute, err = parseField(parts[1], "minute", 0, 59, false); err != nil {
		return err
	}
	if len(parts) == 3 {
		if strings.Contains(parts[2], ".") {
			return fmt.Errorf("fractional seconds %q are not supported", parts[2])
		}
		if c.second, err = parseField(parts[2], "second", 0, 59, false); err != nil {
			return err
		}
	}
	return nil
}

// parseField parses "*", "*/R" or a comma list of V, A..B, A..B/R and
// V/R, each value in [lo, hi]. Values and ranges become single values;
// repetitions stay components. twoDigitYear maps 0–69 to 2000–2069 and
// 70–99 to 1970–1999 when written with at most two digits.
func parseField(s, name string, lo, hi int, year bool) (field, error) {
	if s == "*" {
		return nil, nil
	}
	num := func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || v == "" || v[0] == '+' || v[0] == '-' {
			return 0, fmt.Errorf("%s %q is not a number", name, v)
		}
		if year && len(v) <= 2 {
			if n < 70 {
				n += 2000
			} else {
				n += 1900
			}
		}
		if n < lo || n > hi {
			return 0, fmt.Errorf("%s %d is out of range %d..%d", name, n, lo, hi)
		}
		return n, nil
	}
	var f field
	for _, part := range strings.Split(s, ",") {
		body, rep, hasRep := strings.Cut(part, "/")
		repeat := 0
		if hasRep {
			r, err := strconv.Atoi(rep)
			if err != nil || r < 1 || r > hi {
				return nil, fmt.Errorf("%s repetition %q is not a number from 1 to %d", name, rep, hi)
			}
			repeat = r
		}
		a, b, isRange := strings.Cut(body, "..")
		var start, stop int
		var err error
		if body == "*" && hasRep {
			start, stop = lo, -1
		} else {
			if start, err = num(a); err != nil {
				return nil, err
			}
			stop = -1
			if isRange {
				if stop, err = num(b); err != nil {
					return nil, err
				}
				if stop < start {
					return nil, fmt.Errorf("%s range %q runs backwards", name, body)
				}
			}
		}
		switch {
		case stop >= 0: // a range, with or without a step: values
			step := max(repeat, 1)
			for v := start; v <= stop; v += step {
				f = append(f, comp{v, 0})
			}
		default:
			f = append(f, comp{start, repeat})
		}
	}
	slices.SortFunc(f, func(x, y comp) int {
		if x.start != y.start {
			return x.start - y.start
		}
		return x.repeat - y.repeat
	})
	return slices.Compact(f), nil
}

// String returns the calendar as systemd-analyze calendar normalizes it:
// "Mon..Fri *-*-* 02:30:00", "*-*-01 00:00:00 UTC".
func (c *Calendar) String() string {
	var b strings.Builder
	if c.weekdays != 0 {
		b.WriteString(formatWeekdays(c.weekdays))
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%s-%s-%s %s:%s:%s", c.year.format(4), c.month.format(2), c.day.format(2),
		c.hour.format(2), c.minute.format(2), c.second.format(2))
	if c.zone != "" {
		b.WriteString(" " + c.zone)
	}
	return b.String()
}

// formatWeekdays lists the days, runs of three or more as ranges.
func formatWeekdays(mask uint8) string {
	var parts []string
	for d := 0; d < 7; {
		if mask&(1<<d) == 0 {
			d++
			continue
		}
		e := d
		for e+1 < 7 && mask&(1<<(e+1)) != 0 {
			e++
		}
		if e-d >= 2 {
			parts = append(parts, weekdayNames[d]+".."+weekdayNames[e])
		} else {
			for i := d; i <= e; i++ {
				parts = append(parts, weekdayNames[i])
			}
		}
		d = e + 1
	}
	return strings.Join(parts, ",")
}

// Location returns the time zone the calendar is evaluated in.
func (c *Calendar) Location() *time.Location { return c.loc }

// Next returns the first time strictly after after that matches, or the
// zero Time if none does up to the year 2199. The search runs on the wall
// clock of the calendar's zone: a wall time that does not exist (skipped
// by a spring-forward) never matches, and one that exists twice (repeated
// by a fall-back) matches at its first occurrence only.
func (c *Calendar) Next(after time.Time) time.Time {
	a := after.In(c.loc)
	// w is the wall clock, as a zone-less value in UTC.
	w := time.Date(a.Year(), a.Month(), a.Day(), a.Hour(), a.Minute(), a.Second()+1, 0, time.UTC)
	for w.Year() <= maxYear {
		y, m, d := w.Date()
		switch {
		case !c.year.match(y):
			w = time.Date(y+1, 1, 1, 0, 0, 0, 0, time.UTC)
			continue
		case !c.month.match(int(m)):
			w = time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		case !c.day.match(d) || (c.weekdays != 0 && c.weekdays&(1<<((int(w.Weekday())+6)%7)) == 0):
			w = time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		for h := w.Hour(); h < 24; h++ {
			if !c.hour.match(h) {
				continue
			}
			m0 := 0
			if h == w.Hour() {
				m0 = w.Minute()
			}
			for mi := m0; mi < 60; mi++ {
				if !c.minute.match(mi) {
					continue
				}
				s0 := 0
				if h == w.Hour() && mi == w.Minute() {
					s0 = w.Second()
				}
				for s := s0; s < 60; s++ {
					if !c.second.match(s) {
						continue
					}
					if t, ok := c.instant(time.Date(y, m, d, h, mi, s, 0, time.UTC)); ok && t.After(after) {
						return t
					}
				}
			}
		}
		w = time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

// instant returns the first instant whose wall clock in c.loc is wall
// (a zone-less value in UTC); ok is false if no instant has it.
func (c *Calendar) instant(wall time.Time) (time.Time, bool) {
	var best time.Time
	found := false
	// The offsets in force around the wall time cover both sides of any
	// transition.
	for _, probe := range []time.Duration{-26 * time.Hour, -3 * time.Hour, 0, 3 * time.Hour, 26 * time.Hour} {
		_, off := wall.Add(probe).In(c.loc).Zone()
		t := wall.Add(-time.Duration(off) * time.Second).In(c.loc)
		if t.Year() != wall.Year() || t.YearDay() != wall.YearDay() || t.Hour() != wall.Hour() ||
			t.Minute() != wall.Minute() || t.Second() != wall.Second() {
			continue
		}
		if !found || t.Before(best) {
			best, found = t, true
		}
	}
	return best, found
}
