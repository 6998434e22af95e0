package schedule_test

import (
	"fmt"
	"time"

	"github.com/dmsnap/dmsnap/schedule"
)

func ExampleParse() {
	s, err := schedule.Parse("Mon..Fri 02:30 UTC", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(s)
	fmt.Println(s.Next(time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC))) // a Friday, after the slot
	_, err = schedule.Parse("*-*~1", nil)
	fmt.Println(err)
	// Output:
	// Mon..Fri *-*-* 02:30:00 UTC
	// 2026-12-07 02:30:00 +0000 UTC
	// calendar "*-*~1": the last-day-of-month form "~" is not supported: schedule syntax
}

func ExampleDue() {
	s, _ := schedule.Parse("hourly UTC", nil)
	last := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	now := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC) // down since 01:00
	fmt.Println(schedule.Due(s, last, now), schedule.Missed(s, last, now, 100))
	fmt.Println(schedule.Due(s, now, now)) // right after the catch-up run
	// Output:
	// true 8
	// false
}
