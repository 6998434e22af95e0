// Package schedule says when a job runs next: a subset of systemd's
// OnCalendar= syntax (systemd.time(7)) or a plain interval ("every 15m").
// Pure logic over time.Time; no clock of its own, no timers.
//
// It owns:
//
//   - [Parse]: calendar expressions ("daily", "Mon..Fri *-*-* 02:30",
//     "*-*-1,15 03:00 UTC", "*:0/15") and intervals, refusing the parts of
//     systemd's syntax it does not implement with an error naming them;
//   - [Calendar.Next], tested against systemd's own test-calendarspec.c
//     table for the subset;
//   - catch-up: [Due] says whether one run is due given the last run, so a
//     daemon that was down runs once, not once per missed slot.
//
// Hazards: a calendar in local time meets daylight saving changes. A wall
// time skipped by a spring-forward never fires that day (as in systemd);
// a wall time repeated by a fall-back fires at its first occurrence only.
package schedule
