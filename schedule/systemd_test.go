package schedule

import (
	"errors"
	"testing"
	"time"
)

// The tables below are copied from systemd's src/test/test-calendarspec.c
// (systemd/systemd, the version at commit 04773cb50aca, 2017) for the
// subset this package implements: test_one's input and normalized
// output, test_next's expression, TZ, after and expected next elapse (in
// µs since the epoch; -1 = never), and the expressions it refuses.
// Entries using "~", fractional seconds or "/0.42" repetitions of seconds
// are in TestSystemdUnsupported instead.

func TestSystemdNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Sat,Thu,Mon-Wed,Sat-Sun", "Mon..Thu,Sat,Sun *-*-* 00:00:00"},
		{"Sat,Thu,Mon..Wed,Sat..Sun", "Mon..Thu,Sat,Sun *-*-* 00:00:00"},
		{"Mon,Sun 12-*-* 2,1:23", "Mon,Sun 2012-*-* 01,02:23:00"},
		{"Wed *-1", "Wed *-*-01 00:00:00"},
		{"Wed-Wed,Wed *-1", "Wed *-*-01 00:00:00"},
		{"Wed..Wed,Wed *-1", "Wed *-*-01 00:00:00"},
		{"Wed, 17:48", "Wed *-*-* 17:48:00"},
		{"Wed-Sat,Tue 12-10-15 1:2:3", "Tue..Sat 2012-10-15 01:02:03"},
		{"Wed..Sat,Tue 12-10-15 1:2:3", "Tue..Sat 2012-10-15 01:02:03"},
		{"*-*-7 0:0:0", "*-*-07 00:00:00"},
		{"10-15", "*-10-15 00:00:00"},
		{"monday *-12-* 17:00", "Mon *-12-* 17:00:00"},
		{"Mon,Fri *-*-3,1,2 *:30:45", "Mon,Fri *-*-01,02,03 *:30:45"},
		{"12,14,13,12:20,10,30", "*-*-* 12,13,14:10,20,30:00"},
		{"mon,fri *-1/2-1,3 *:30:45", "Mon,Fri *-01/2-01,03 *:30:45"},
		{"03-05 08:05:40", "*-03-05 08:05:40"},
		{"08:05:40", "*-*-* 08:05:40"},
		{"05:40", "*-*-* 05:40:00"},
		{"Sat,Sun 12-05 08:05:40", "Sat,Sun *-12-05 08:05:40"},
		{"Sat,Sun 08:05:40", "Sat,Sun *-*-* 08:05:40"},
		{"2003-03-05 05:40", "2003-03-05 05:40:00"},
		{"2003-03-05", "2003-03-05 00:00:00"},
		{"03-05", "*-03-05 00:00:00"},
		{"hourly", "*-*-* *:00:00"},
		{"daily", "*-*-* 00:00:00"},
		{"monthly", "*-*-01 00:00:00"},
		{"weekly", "Mon *-*-* 00:00:00"},
		{"minutely", "*-*-* *:*:00"},
		{"quarterly", "*-01,04,07,10-01 00:00:00"},
		{"semi-annually", "*-01,07-01 00:00:00"},
		{"annually", "*-01-01 00:00:00"},
		{"*:2/3", "*-*-* *:02/3:00"},
		{"2015-10-25 01:00:00 uTc", "2015-10-25 01:00:00 UTC"},
		{"9..11,13:00,30", "*-*-* 09,10,11,13:00,30:00"},
		{"1..3-1..3 1..3:1..3", "*-01,02,03-01,02,03 01,02,03:01,02,03:00"},
		{"Monday", "Mon *-*-* 00:00:00"},
		{"Monday *-*-*", "Mon *-*-* 00:00:00"},
		{"*-*-*", "*-*-* 00:00:00"},
	} {
		c, err := ParseCalendar(tc.in, time.UTC)
		if err != nil {
			t.Errorf("ParseCalendar(%q): %v", tc.in, err)
			continue
		}
		if got := c.String(); got != tc.want {
			t.Errorf("ParseCalendar(%q) = %q, want %q", tc.in, got, tc.want)
		}
		again, err := ParseCalendar(c.String(), time.UTC)
		if err != nil || again.String() != c.String() {
			t.Errorf("round trip of %q: %v, %v", c.String(), again, err)
		}
	}
}

func TestSystemdNext(t *testing.T) {
	for _, tc := range []struct {
		in, tz        string
		after, expect int64 // µs since the epoch; expect -1: never
	}{
		{"2016-03-27 03:17:00", "", 12345, 1459048620000000},
		{"2016-03-27 03:17:00", "CET", 12345, 1459041420000000},
		{"2016-03-27 03:17:00", "EET", 12345, -1}, // 03:17 does not exist that day in EET
		{"2016-03-27 03:17:00 UTC", "", 12345, 1459048620000000},
		{"2016-03-27 03:17:00 UTC", "CET", 12345, 1459048620000000},
		{"2016-03-27 03:17:00 UTC", "EET", 12345, 1459048620000000},
		{"Sun 16:00:00", "CET", 1456041600123456, 1456066800000000},
		{"*-04-31", "", 12345, -1},
	} {
		loc := time.UTC // TZ="" is UTC for glibc
		if tc.tz != "" {
			var err error
			if loc, err = time.LoadLocation(tc.tz); err != nil {
				t.Skipf("time zone %s: %v", tc.tz, err)
			}
		}
		c, err := ParseCalendar(tc.in, loc)
		if err != nil {
			t.Errorf("ParseCalendar(%q): %v", tc.in, err)
			continue
		}
		got := c.Next(time.UnixMicro(tc.after))
		if tc.expect < 0 {
			if !got.IsZero() {
				t.Errorf("%q in %q: Next = %v, want never", tc.in, tc.tz, got)
			}
			continue
		}
		if got.UnixMicro() != tc.expect {
			t.Errorf("%q in %q: Next = %v (%d), want %v", tc.in, tc.tz, got, got.UnixMicro(), time.UnixMicro(tc.expect).UTC())
		}
	}
}

// TestSystemdRefused: what systemd refuses, and what systemd accepts but
// this subset does not.
func TestSystemdRefused(t *testing.T) {
	for _, in := range []string{
		// systemd refuses these too.
		"test", " utc", "    ", "", "7", "121212:1:2", "2000-03-05.23 00:00:00", "2000-03-05 00:00.1:00",
		"00:00:00/0.00000001", "00:00:00.0..00.9", "2016~11-22", "*-*~5/5",
		// systemd accepts these; this subset does not.
		"2016-03-27 03:17:00.4200005", "2016-03-27 03:17:00/0.42", "00:00:1.125..2.125", "*-*~1 Utc",
		"*-*~05,3 ", "2016-02~01 UTC", "Mon 2017-05~01..07 UTC", "@1459048620",
	} {
		if c, err := ParseCalendar(in, time.UTC); err == nil {
			t.Errorf("ParseCalendar(%q) = %q, want an error", in, c)
		} else if !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseCalendar(%q): %v does not wrap ErrSyntax", in, err)
		}
	}
}

// test_hourly_bug_4031: hourly elapses within the hour, twice in a row.
func TestSystemdHourly4031(t *testing.T) {
	c, err := ParseCalendar("hourly", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []time.Time{time.Now(), time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC), time.Date(2026, 12, 31, 23, 59, 59, 999, time.UTC)} {
		u := c.Next(n)
		w := c.Next(u)
		if !(n.Before(u) && !u.After(n.Add(time.Hour)) && u.Before(w) && !w.After(u.Add(time.Hour))) {
			t.Errorf("after %v: next %v, then %v", n, u, w)
		}
	}
}
