package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func loadLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s: %v", name, err)
	}
	return loc
}

func at(t testing.TB, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCalendarNext(t *testing.T) {
	for _, tc := range []struct {
		expr, after, want string // times in UTC; want "" = never
	}{
		{"Mon..Fri *-*-* 02:30", "2026-12-04 03:00:00", "2026-12-07 02:30:00"}, // Friday → Monday
		{"Mon..Fri *-*-* 02:30", "2026-12-02 01:00:00", "2026-12-02 02:30:00"},
		{"*:0/15", "2026-12-02 10:07:30", "2026-12-02 10:15:00"},
		{"*:0/15", "2026-12-02 10:15:00", "2026-12-02 10:30:00"}, // strictly after
		{"*:0/15", "2026-12-02 23:59:00", "2026-12-03 00:00:00"},
		{"*:*/20", "2026-12-02 10:41:00", "2026-12-02 11:00:00"},
		{"*-*-1,15 03:00", "2026-12-15 03:00:00", "2027-01-01 03:00:00"},
		{"*-*-1,15 03:00", "2026-12-02 00:00:00", "2026-12-15 03:00:00"},
		{"*-02-29", "2026-03-01 00:00:00", "2028-02-29 00:00:00"},
		{"daily", "2026-12-31 23:59:59", "2027-01-01 00:00:00"},
		{"weekly", "2026-12-02 12:00:00", "2026-12-07 00:00:00"},
		{"monthly", "2026-12-02 12:00:00", "2027-01-01 00:00:00"},
		{"quarterly", "2026-12-02 12:00:00", "2027-01-01 00:00:00"},
		{"yearly", "2026-01-01 00:00:00", "2027-01-01 00:00:00"},
		{"hourly", "2026-12-02 12:00:00", "2026-12-02 13:00:00"},
		{"9..17/4:00", "2026-12-02 13:00:00", "2026-12-02 17:00:00"},
		{"9..17/4:00", "2026-12-02 17:00:00", "2026-12-03 09:00:00"},
		{"Sat,Sun 10:00", "2026-12-02 12:00:00", "2026-12-05 10:00:00"},
		{"Fri *-*-13", "2026-12-02 12:00:00", "2027-08-13 00:00:00"},
		{"2020-01-01", "2026-12-02 12:00:00", ""},
		{"2199-12-31 23:59:59", "2026-12-02 12:00:00", "2199-12-31 23:59:59"},
		{"*-02-30", "2026-12-02 12:00:00", ""},
	} {
		c, err := ParseCalendar(tc.expr, time.UTC)
		if err != nil {
			t.Errorf("ParseCalendar(%q): %v", tc.expr, err)
			continue
		}
		got := c.Next(at(t, time.UTC, tc.after))
		if tc.want == "" {
			if !got.IsZero() {
				t.Errorf("%q after %s: %v, want never", tc.expr, tc.after, got)
			}
			continue
		}
		if want := at(t, time.UTC, tc.want); !got.Equal(want) {
			t.Errorf("%q after %s: %v, want %v", tc.expr, tc.after, got, want)
		}
	}
	// Sub-second after: the slot at the same second is in the past.
	c, _ := ParseCalendar("*:*:*", time.UTC)
	if got, want := c.Next(at(t, time.UTC, "2026-12-02 10:00:00").Add(500*time.Millisecond)), at(t, time.UTC, "2026-12-02 10:00:01"); !got.Equal(want) {
		t.Errorf("every second: %v, want %v", got, want)
	}
}

func TestCalendarZones(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	// A calendar naming UTC ignores the local zone.
	c, err := ParseCalendar("*-*-* 02:00:00 UTC", berlin)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Next(at(t, time.UTC, "2026-12-02 00:00:00")), at(t, time.UTC, "2026-12-02 02:00:00"); !got.Equal(want) {
		t.Errorf("UTC calendar: %v, want %v", got, want)
	}
	// Without a zone the local one applies: 02:00 CET is 01:00 UTC.
	c, err = ParseCalendar("*-*-* 02:00:00", berlin)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Next(at(t, time.UTC, "2026-12-02 00:00:00")), at(t, time.UTC, "2026-12-02 01:00:00"); !got.Equal(want) {
		t.Errorf("local calendar: %v, want %v", got, want)
	}
	// An IANA zone named in the expression wins over local.
	c, err = ParseCalendar("Mon 09:00 America/New_York", berlin)
	if err != nil {
		t.Fatal(err)
	}
	if c.String() != "Mon *-*-* 09:00:00 America/New_York" {
		t.Errorf("String = %q", c.String())
	}
	if got, want := c.Next(at(t, time.UTC, "2026-12-02 00:00:00")), at(t, time.UTC, "2026-12-07 14:00:00"); !got.Equal(want) {
		t.Errorf("New York calendar: %v, want %v", got, want)
	}
}

// chain returns the first n elapses after start.
func chain(c Schedule, start time.Time, n int) []time.Time {
	var out []time.Time
	for t := start; len(out) < n; {
		t = c.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

func TestCalendarDST(t *testing.T) {
	ny := loadLoc(t, "America/New_York")
	berlin := loadLoc(t, "Europe/Berlin")
	utc := func(s string) time.Time { return at(t, time.UTC, s) }
	for _, tc := range []struct {
		name, expr string
		loc        *time.Location
		start      time.Time
		want       []time.Time
	}{
		// New York springs forward on 2026-03-08 02:00 EST → 03:00 EDT:
		// 02:30 does not exist that day.
		{"skipped wall time never fires", "*-*-* 02:30:00", ny, utc("2026-03-07 17:00:00"),
			[]time.Time{utc("2026-03-09 06:30:00"), utc("2026-03-10 06:30:00")}},
		{"repetition across spring-forward", "*:0/30", ny, utc("2026-03-08 06:15:00"),
			[]time.Time{utc("2026-03-08 06:30:00"), utc("2026-03-08 07:00:00"), utc("2026-03-08 07:30:00")}},
		// New York falls back on 2026-11-01 02:00 EDT → 01:00 EST: 01:30
		// exists twice and fires at the first (EDT, 05:30 UTC).
		{"repeated wall time fires once", "*-*-* 01:30:00", ny, utc("2026-10-31 16:00:00"),
			[]time.Time{utc("2026-11-01 05:30:00"), utc("2026-11-02 06:30:00")}},
		{"repetition across fall-back", "*:0/30", ny, utc("2026-11-01 04:45:00"),
			[]time.Time{utc("2026-11-01 05:00:00"), utc("2026-11-01 05:30:00"), utc("2026-11-01 07:00:00"), utc("2026-11-01 07:30:00")}},
		// Berlin: daily over the 23-hour and the 25-hour day.
		{"daily over spring-forward", "daily", berlin, utc("2026-03-28 12:00:00"),
			[]time.Time{utc("2026-03-28 23:00:00"), utc("2026-03-29 22:00:00"), utc("2026-03-30 22:00:00")}},
		{"daily over fall-back", "daily", berlin, utc("2026-10-24 12:00:00"),
			[]time.Time{utc("2026-10-24 22:00:00"), utc("2026-10-25 23:00:00")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCalendar(tc.expr, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			got := chain(c, tc.start, len(tc.want))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("elapse %d: %v, want %v", i, got[i].UTC(), tc.want[i])
				}
			}
		})
	}
}

// TestCalendarOracle compares Next with a minute-by-minute scan over two
// weeks around each DST change: an instant elapses if its wall clock
// matches and it is that wall clock's first occurrence.
func TestCalendarOracle(t *testing.T) {
	zones := []*time.Location{time.UTC, loadLoc(t, "Europe/Berlin"), loadLoc(t, "America/New_York"), loadLoc(t, "Australia/Lord_Howe")}
	exprs := []string{"*:0/15", "Mon..Fri *-*-* 02,03:30", "*-*-* 01..03:00", "Sun *-*-* *:00", "*-*-1,15,29..31 02:30", "hourly"}
	starts := []time.Time{time.Date(2026, 3, 24, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	for _, loc := range zones {
		for _, expr := range exprs {
			c, err := ParseCalendar(expr, loc)
			if err != nil {
				t.Fatal(err)
			}
			for _, start := range starts {
				end := start.Add(14 * 24 * time.Hour)
				var want []time.Time
				for m := start.Add(time.Minute); m.Before(end); m = m.Add(time.Minute) {
					w := m.In(loc)
					wd := (int(w.Weekday()) + 6) % 7
					if !(c.year.match(w.Year()) && c.month.match(int(w.Month())) && c.day.match(w.Day()) &&
						c.hour.match(w.Hour()) && c.minute.match(w.Minute()) && c.second.match(0) &&
						(c.weekdays == 0 || c.weekdays&(1<<wd) != 0)) {
						continue
					}
					first := true
					for _, back := range []time.Duration{30 * time.Minute, time.Hour} {
						if e := m.Add(-back).In(loc); e.Format(time.DateTime) == w.Format(time.DateTime) {
							first = false
						}
					}
					if first {
						want = append(want, m)
					}
				}
				var got []time.Time
				for tt := c.Next(start); !tt.IsZero() && tt.Before(end); tt = c.Next(tt) {
					got = append(got, tt)
				}
				if len(got) != len(want) {
					t.Fatalf("%q in %s from %v: %d elapses, oracle %d", expr, loc, start, len(got), len(want))
				}
				for i := range got {
					if !got[i].Equal(want[i]) {
						t.Fatalf("%q in %s from %v: elapse %d at %v, oracle %v", expr, loc, start, i, got[i], want[i])
					}
				}
			}
		}
	}
}

func TestInterval(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		d        time.Duration
	}{
		{"every 15m", "every 15m", 15 * time.Minute},
		{"EVERY 90s", "every 1m30s", 90 * time.Second},
		{"every 1d12h", "every 1d12h", 36 * time.Hour},
		{"every 2w", "every 14d", 14 * 24 * time.Hour},
		{"every 1h30m", "every 1h30m", 90 * time.Minute},
	} {
		s, err := Parse(tc.in, time.UTC)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		iv, ok := s.(Interval)
		if !ok || iv.D != tc.d || s.String() != tc.want {
			t.Errorf("Parse(%q) = %#v %q, want %v %q", tc.in, s, s.String(), tc.d, tc.want)
		}
		now := at(t, time.UTC, "2026-12-02 10:00:00")
		if got := s.Next(now); !got.Equal(now.Add(tc.d)) {
			t.Errorf("%q: Next = %v", tc.in, got)
		}
	}
	for _, in := range []string{"every", "every 0s", "every -5m", "every 1.5s", "every 500ms", "every 15 minutes", "every xd", "every 1d 2h"} {
		if _, err := Parse(in, time.UTC); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), in) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax quoting it", in, err)
		}
	}
	if _, err := Parse("daily 02:00", time.UTC); err == nil || !strings.Contains(err.Error(), `"daily" stands alone`) {
		t.Errorf("Parse(daily 02:00) = %v", err)
	}
	if s, err := Parse("daily", time.UTC); err != nil || s.String() != "*-*-* 00:00:00" {
		t.Errorf("Parse(daily) = %v, %v", s, err)
	}
}

// TestDue drives a fake clock through downtime: one run is due however
// many slots were missed, and none right after it.
func TestDue(t *testing.T) {
	daily, err := Parse("*-*-* 02:00 UTC", nil)
	if err != nil {
		t.Fatal(err)
	}
	last := at(t, time.UTC, "2026-12-01 02:00:00")
	now := at(t, time.UTC, "2026-12-05 10:00:00") // down for four slots
	if !Due(daily, last, now) {
		t.Fatal("not due after downtime")
	}
	if n := Missed(daily, last, now, 100); n != 4 {
		t.Errorf("missed %d, want 4", n)
	}
	if n := Missed(daily, last, now, 2); n != 2 {
		t.Errorf("missed with limit 2: %d", n)
	}
	last = now // the catch-up run
	for _, tc := range []struct {
		now string
		due bool
	}{
		{"2026-12-05 10:00:00", false},
		{"2026-12-06 01:59:59", false},
		{"2026-12-06 02:00:00", true},
		{"2026-12-09 00:00:00", true},
	} {
		if got := Due(daily, last, at(t, time.UTC, tc.now)); got != tc.due {
			t.Errorf("last %v, now %s: due %v, want %v", last, tc.now, got, tc.due)
		}
	}
	if !Due(daily, time.Time{}, now) || Missed(daily, time.Time{}, now, 10) != 0 {
		t.Error("a job never run is due, with nothing counted as missed")
	}
	if Due(daily, now.Add(48*time.Hour), now) {
		t.Error("due although the last run is in the future (clock stepped back)")
	}
	once, _ := Parse("2020-01-01 UTC", nil)
	if Due(once, at(t, time.UTC, "2021-01-01 00:00:00"), now) {
		t.Error("a calendar that never elapses again is due")
	}
	every, _ := Parse("every 15m", nil)
	last = at(t, time.UTC, "2026-12-02 10:00:00")
	if Due(every, last, last.Add(15*time.Minute-time.Second)) || !Due(every, last, last.Add(15*time.Minute)) {
		t.Error("interval due at the wrong time")
	}
	if n := Missed(every, last, last.Add(time.Hour), 100); n != 4 {
		t.Errorf("interval missed %d, want 4", n)
	}
}

func FuzzParseCalendar(f *testing.F) {
	for _, s := range []string{"daily", "Mon..Fri *-*-* 02:30", "*:0/15", "*-*-1,15 03:00 UTC", "12-10-15 1:2:3", "9..17/4:00"} {
		f.Add(s)
	}
	after := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCalendar(s, time.UTC)
		if err != nil {
			return
		}
		again, err := ParseCalendar(c.String(), time.UTC)
		if err != nil || again.String() != c.String() {
			t.Fatalf("round trip of %q (from %q): %v, %v", c.String(), s, again, err)
		}
		if n := c.Next(after); !n.IsZero() && (!n.After(after) || !again.Next(after).Equal(n)) {
			t.Fatalf("%q: Next(%v) = %v", s, after, n)
		}
	})
}
