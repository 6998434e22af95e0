package retention

import (
	"errors"
	"strings"
	"testing"
)

func TestParseGrid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // canonical form
	}{
		{"keep 24 hourly, 14 daily, 8 weekly, 12 monthly", "keep 24 hourly, 14 daily, 8 weekly, 12 monthly"},
		{"12 monthly,24 hourly", "keep 24 hourly, 12 monthly"},
		{"  KEEP 3 Latest , 2 years ", "keep 3 latest, 2 yearly"},
		{"keep 1 day", "keep 1 daily"},
		{"keep 5 last, 1 annually, 4 weeks", "keep 5 latest, 4 weekly, 1 yearly"},
	} {
		g, err := ParseGrid(tc.in)
		if err != nil {
			t.Errorf("ParseGrid(%q): %v", tc.in, err)
			continue
		}
		if got := g.String(); got != tc.want {
			t.Errorf("ParseGrid(%q) = %q, want %q", tc.in, got, tc.want)
		}
		again, err := ParseGrid(g.String())
		if err != nil || again.String() != g.String() {
			t.Errorf("round trip of %q: %q, %v", g.String(), again.String(), err)
		}
	}
}

func TestParseGridErrors(t *testing.T) {
	for _, tc := range []struct {
		in, mention string
	}{
		{"", "no rules"},
		{"keep", "no rules"},
		{"keep 24 hourlx", `"hourlx"`},
		{"keep 24 hourly, 14", `"14"`},
		{"keep 24 hourly,, 14 daily", "term 2 is empty"},
		{"keep 0 daily", `count "0"`},
		{"keep -3 daily", `count "-3"`},
		{"keep many daily", `count "many"`},
		{"keep 99999999 daily", `count "99999999"`},
		{"keep 24 hourly, 3 hours", `"3 hours": period hourly already given by "24 hourly"`},
		{"keep 24 hourly 14 daily", `"24 hourly 14 daily"`},
		{"1x1h(keep=all) | 24x1h | 14x1d", "zrepl"},
		{"24x1h, 14x1d", "zrepl"},
	} {
		_, err := ParseGrid(tc.in)
		if err == nil {
			t.Errorf("ParseGrid(%q) succeeded", tc.in)
			continue
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseGrid(%q) = %v, want ErrSyntax mentioning %s", tc.in, err, tc.mention)
		}
	}
}

func FuzzParseGrid(f *testing.F) {
	for _, s := range []string{"keep 24 hourly, 14 daily", "3 latest", "24x1h | 1x1d", "keep 1 yearly,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGrid(s)
		if err != nil {
			return
		}
		if err := g.validate("fuzz"); err != nil {
			t.Fatalf("ParseGrid(%q) returned an invalid grid: %v", s, err)
		}
		again, err := ParseGrid(g.String())
		if err != nil || again.String() != g.String() {
			t.Fatalf("round trip of %q: %q, %v", g.String(), again.String(), err)
		}
	})
}
