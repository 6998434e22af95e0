package retention

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every [ParseGrid] error.
var ErrSyntax = errors.New("retention grid syntax")

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type Period -linecomment -output period_string.go

// Period is the bucket size of a [Rule]. Its String is the word the grid
// syntax uses.
type Period uint8

// Periods, finest first. Latest is not a calendar period: every point is
// its own bucket, so "keep 5 latest" keeps the five newest points.
const (
	Latest  Period = iota + 1 // latest
	Hourly                    // hourly
	Daily                     // daily
	Weekly                    // weekly
	Monthly                   // monthly
	Yearly                    // yearly
)

// Rule keeps the newest point of each of the Count newest periods that
// hold a point.
type Rule struct {
	Period Period
	Count  int
}

// Grid is a set of rules, at most one per period, finest period first. A
// point is kept if any rule keeps it.
type Grid struct {
	Rules []Rule
}

// String returns the canonical grid: "keep 24 hourly, 14 daily". It parses
// back to the same grid.
func (g Grid) String() string {
	terms := make([]string, len(g.Rules))
	for i, r := range g.Rules {
		terms[i] = fmt.Sprintf("%d %s", r.Count, r.Period)
	}
	return "keep " + strings.Join(terms, ", ")
}

// maxCount bounds a rule's count: far more than anyone keeps, small
// enough that a typo of extra digits is caught.
const maxCount = 1_000_000

// ParseGrid parses "keep N PERIOD, N PERIOD, ...". The leading "keep" is
// optional; PERIOD is latest, hourly, daily, weekly, monthly or yearly
// (also hour(s), day(s), ...); N is a whole number from 1 to 1000000; each
// period appears once. zrepl's "24x1h | 14x1d" grid is refused with a
// pointer to the equivalent. Errors wrap [ErrSyntax] and quote the term at
// fault.
func ParseGrid(s string) (Grid, error) {
	fail := func(format string, args ...any) (Grid, error) {
		return Grid{}, fmt.Errorf("retention grid %q: %s: %w", s, fmt.Sprintf(format, args...), ErrSyntax)
	}
	body := strings.TrimSpace(s)
	if strings.Contains(body, "|") || zreplTerm(body) {
		return fail("zrepl's grid syntax (24x1h | 14x1d) is not supported; write e.g. \"keep 24 hourly, 14 daily\"")
	}
	if f := strings.Fields(body); len(f) > 0 && strings.EqualFold(f[0], "keep") {
		body = strings.TrimSpace(body[len(f[0]):])
	}
	if body == "" {
		return fail("no rules (want e.g. \"keep 24 hourly, 14 daily\")")
	}
	var g Grid
	seen := map[Period]string{}
	for i, term := range strings.Split(body, ",") {
		term = strings.TrimSpace(term)
		f := strings.Fields(term)
		if len(f) != 2 {
			if term == "" {
				return fail("term %d is empty", i+1)
			}
			return fail("term %q: want a count and a period, e.g. \"24 hourly\"", term)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 || n > maxCount {
			return fail("term %q: count %q is not a whole number from 1 to %d", term, f[0], maxCount)
		}
		p, ok := parsePeriod(f[1])
		if !ok {
			return fail("term %q: unknown period %q (want latest, hourly, daily, weekly, monthly or yearly)", term, f[1])
		}
		if prev, dup := seen[p]; dup {
			return fail("term %q: period %s already given by %q", term, p, prev)
		}
		seen[p] = term
		g.Rules = append(g.Rules, Rule{Period: p, Count: n})
	}
	sortRules(g.Rules)
	return g, nil
}

func parsePeriod(s string) (Period, bool) {
	switch strings.ToLower(s) {
	case "latest", "last", "newest":
		return Latest, true
	case "hourly", "hour", "hours":
		return Hourly, true
	case "daily", "day", "days":
		return Daily, true
	case "weekly", "week", "weeks":
		return Weekly, true
	case "monthly", "month", "months":
		return Monthly, true
	case "yearly", "year", "years", "annually":
		return Yearly, true
	}
	return 0, false
}

// zreplTerm reports whether s holds a term like "24x1h".
func zreplTerm(s string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		n, rest, ok := strings.Cut(strings.ToLower(f), "x")
		if !ok || n == "" || rest == "" {
			continue
		}
		if _, err := strconv.Atoi(n); err == nil && rest[0] >= '0' && rest[0] <= '9' {
			return true
		}
	}
	return false
}

func sortRules(rs []Rule) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Period < rs[j-1].Period; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// bucket returns the key and label of the period of p that t falls in, in
// loc. For Latest the caller supplies the key (each point its own bucket).
func bucket(p Period, t time.Time, loc *time.Location) (int64, string) {
	t = t.In(loc)
	y, m, d := t.Date()
	days := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	switch p {
	case Hourly:
		return days*24 + int64(t.Hour()), t.Format("2006-01-02 15h")
	case Daily:
		return days, t.Format("2006-01-02")
	case Weekly:
		wy, w := t.ISOWeek()
		return int64(wy)*100 + int64(w), fmt.Sprintf("%04d-W%02d", wy, w)
	case Monthly:
		return int64(y)*12 + int64(m), t.Format("2006-01")
	case Yearly:
		return int64(y), t.Format("2006")
	}
	return 0, ""
}

// validate checks a grid built without [ParseGrid].
func (g Grid) validate(what string) error {
	if len(g.Rules) == 0 {
		return fmt.Errorf("retention: the %s grid has no rules: %w", what, ErrSyntax)
	}
	seen := map[Period]bool{}
	for _, r := range g.Rules {
		if r.Period < Latest || r.Period > Yearly || seen[r.Period] || r.Count < 1 || r.Count > maxCount {
			return fmt.Errorf("retention: %s grid rule %d %s: %w", what, r.Count, r.Period, ErrSyntax)
		}
		seen[r.Period] = true
	}
	return nil
}
