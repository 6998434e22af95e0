package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every [Parse] error.
var ErrSyntax = errors.New("schedule syntax")

// Schedule is a calendar or an interval.
type Schedule interface {
	// Next returns the first time strictly after after at which the
	// schedule elapses, or the zero Time if it never does again.
	Next(after time.Time) time.Time
	// String returns the schedule in canonical form; it parses back to
	// the same schedule.
	String() string
}

// Parse parses "every DURATION" as an [Interval] and anything else as a
// [Calendar] (see [ParseCalendar]); local is the time zone of calendars
// that name none (nil: time.Local).
func Parse(s string, local *time.Location) (Schedule, error) {
	f := strings.Fields(s)
	if len(f) > 0 && strings.EqualFold(f[0], "every") {
		return ParseInterval(s)
	}
	return ParseCalendar(s, local)
}

// Due reports whether a run is due at now when the last run started at
// last: the schedule elapsed at least once in (last, now]. However many
// slots were missed (the daemon was down), one run is due, and after it
// (last = now) none is until the next slot. A zero last (never run) is
// due. A last after now (the clock stepped back) is not due until the
// schedule elapses after last.
func Due(s Schedule, last, now time.Time) bool {
	if last.IsZero() {
		return true
	}
	n := s.Next(last)
	return !n.IsZero() && !n.After(now)
}

// Missed counts the slots in (last, now], up to limit, for a log line
// such as "3 runs missed, running once". A zero last counts nothing.
func Missed(s Schedule, last, now time.Time, limit int) int {
	if last.IsZero() {
		return 0
	}
	n := 0
	for t := s.Next(last); n < limit && !t.IsZero() && !t.After(now); t = s.Next(t) {
		n++
	}
	return n
}

// Interval elapses every D after the previous run.
type Interval struct {
	D time.Duration
}

// Next returns after + D.
func (iv Interval) Next(after time.Time) time.Time { return after.Add(iv.D) }

// String returns "every D" with the largest exact unit of d, h, m, s.
func (iv Interval) String() string { return "every " + formatDuration(iv.D) }

// ParseInterval parses "every N UNIT...", units as time.ParseDuration
// plus d (24h) and w (7d): "every 15m", "every 1d12h". The interval is
// at least one second and a whole number of seconds.
func ParseInterval(s string) (Interval, error) {
	f := strings.Fields(s)
	if len(f) != 2 || !strings.EqualFold(f[0], "every") {
		return Interval{}, fmt.Errorf("schedule %q: want \"every DURATION\", e.g. \"every 15m\": %w", s, ErrSyntax)
	}
	d, err := parseDuration(f[1])
	if err != nil {
		return Interval{}, fmt.Errorf("schedule %q: duration %q: %v: %w", s, f[1], err, ErrSyntax)
	}
	if d < time.Second || d%time.Second != 0 {
		return Interval{}, fmt.Errorf("schedule %q: duration %q: want a whole number of seconds, at least 1s: %w", s, f[1], ErrSyntax)
	}
	return Interval{D: d}, nil
}

// parseDuration is time.ParseDuration with d and w units in front.
func parseDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		i := strings.Index(rest, u.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(rest[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q before %s is not a whole number", rest[:i], u.suffix)
		}
		total += time.Duration(n) * u.d
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, errors.New("unknown unit or number (want e.g. 90s, 15m, 2h, 1d, 1w)")
		}
		if d < 0 {
			return 0, errors.New("negative")
		}
		total += d
	}
	return total, nil
}

func formatDuration(d time.Duration) string {
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	if d > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%dns", d)
	}
	return b.String()
}
