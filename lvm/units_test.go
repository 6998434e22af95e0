package lvm

import (
	"errors"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want dm.Sector
	}{
		{"100M", 204800}, {"10G", 20971520}, {"4M", 8192}, {"512K", 1024}, {"1T", 1 << 31},
		{"2048s", 2048}, {"1S", 1}, {"4m", 8192}, {"1.5G", 3145728}, {"0.5K", 1}, {"1MiB", 2048},
		{"1mb", 2048}, {".5M", 1024}, {"1P", 1 << 41},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, msg string }{
		{"", "want a number"}, {"0M", "greater than zero"}, {"0s", "greater than zero"},
		{"0", "greater than zero"}, {"0.0", "greater than zero"}, {"10", "missing unit"},
		{"100", "missing unit"}, {"100X", `unknown unit "X"`}, {"10Mb2", "unknown unit"},
		{"-1M", "negative"}, {"1.2.3M", "malformed"}, {"0.3K", "whole number of bytes"}, {"0.25K", "sectors"}, {"1.5s", "whole"},
		{"100B", "unknown unit"}, {"20000000E", "too large"}, {"99999999999999999999M", "out of range"},
		{"M", "want a number"}, {".M", "malformed"},
	} {
		_, err := ParseSize(tc.in)
		if !errors.Is(err, ErrBadSize) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseSize(%q) error = %v; want ErrBadSize mentioning %q", tc.in, err, tc.msg)
		}
	}
	if n, rel, err := ParseSizeChange("+50M"); err != nil || !rel || n != 102400 {
		t.Errorf("ParseSizeChange(+50M) = %d, %v, %v", n, rel, err)
	}
	if n, rel, err := ParseSizeChange("1G"); err != nil || rel || n != 2097152 {
		t.Errorf("ParseSizeChange(1G) = %d, %v, %v", n, rel, err)
	}
}

// TestParseSizeOverflow: a sector count whose byte size wraps 2^64
// ("36028797018980352s" is 2^64 + 8 MiB bytes: an 8 MiB image before the
// fix) is refused naming the value, as is anything above MaxSize.
func TestParseSizeOverflow(t *testing.T) {
	for _, in := range []string{"36028797018980352s", "18014398509481985s", "18446744073709551615s", "15E", "8.5E", "9007199254740993K"} {
		n, err := ParseSize(in)
		if !errors.Is(err, ErrBadSize) || !strings.Contains(err.Error(), in) || !strings.Contains(err.Error(), "too large") {
			t.Errorf("ParseSize(%q) = %d, %v; want ErrBadSize naming the value and saying too large", in, n, err)
		}
	}
	for _, in := range []string{"18014398509481984s", "8E", "8EiB"} {
		if n, err := ParseSize(in); err != nil || n != MaxSize {
			t.Errorf("ParseSize(%q) = %d, %v; want MaxSize", in, n, err)
		}
	}
}

func TestExtentsFor(t *testing.T) {
	if n, r := ExtentsFor(8192, DefaultExtentSize); n != 1 || r {
		t.Errorf("4M in 4M extents: %d, %v", n, r)
	}
	if n, r := ExtentsFor(8193, DefaultExtentSize); n != 2 || !r {
		t.Errorf("4M+1s: %d, %v", n, r)
	}
	if n, r := ExtentsFor(1, DefaultExtentSize); n != 1 || !r {
		t.Errorf("1s: %d, %v", n, r)
	}
	for _, bad := range []dm.Sector{0, 4, 12, 3 << 20, MaxExtentSize * 2} {
		if err := CheckExtentSize(bad); !errors.Is(err, ErrBadSize) {
			t.Errorf("CheckExtentSize(%d) = %v", bad, err)
		}
	}
	if err := CheckExtentSize(DefaultExtentSize); err != nil {
		t.Error(err)
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[dm.Sector]string{
		1: "1 sector", 3: "1.50 KiB", 2: "1 KiB", 8192: "4 MiB", 3145728: "1.50 GiB", 1 << 31: "1 TiB",
	} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"vg0", "base", "a-b", "x_y.z+1", strings.Repeat("a", 127), "..."} {
		if err := ValidateName("volume", ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, tc := range []struct{ in, msg string }{
		{"", "empty"}, {"a/b", "'/'"}, {"a b", "white space"}, {"-a", "start with '-'"},
		{strings.Repeat("a", 128), "longer than 127"}, {".", "reserved"}, {"..", "reserved"}, {"a:b", "not allowed"},
		{"ä", "not allowed"},
	} {
		err := ValidateName("volume", tc.in)
		if !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ValidateName(%q) = %v; want ErrBadName mentioning %q", tc.in, err, tc.msg)
		}
	}
	if p, v, err := SplitPath("vg0/base"); err != nil || p != "vg0" || v != "base" {
		t.Errorf("SplitPath = %q %q %v", p, v, err)
	}
	if p, v, err := SplitPath("base"); err != nil || p != "" || v != "base" {
		t.Errorf("SplitPath = %q %q %v", p, v, err)
	}
	if _, _, err := SplitPath("vg0/a/b"); !errors.Is(err, ErrBadName) {
		t.Errorf("SplitPath(vg0/a/b) = %v", err)
	}
}

func TestDMNames(t *testing.T) {
	for _, tc := range []struct {
		pool, vol string
		layer     Layer
		want      string
	}{
		{"vg0", "base", LayerNone, "vg0-base"},
		{"my-vg", "my-lv", LayerReal, "my--vg-my--lv-real"},
		{"vg", "snap", LayerCOW, "vg-snap-cow"},
		{"a-", "b-", LayerCOW, "a---b---cow"},
	} {
		if got := DMName(tc.pool, tc.vol, tc.layer); got != tc.want {
			t.Errorf("DMName(%q, %q, %q) = %q, want %q", tc.pool, tc.vol, tc.layer, got, tc.want)
		}
	}
	pool, vol := NewUUID(), NewUUID()
	if pool == vol || len(pool) != UUIDLen {
		t.Fatalf("NewUUID: %q %q", pool, vol)
	}
	for _, layer := range []Layer{LayerNone, LayerReal, LayerCOW} {
		s := DMUUID(pool, vol, layer)
		if len(s) > MaxDMUUIDLen-1 {
			t.Errorf("DM uuid %q longer than the kernel allows", s)
		}
		p, v, l, err := ParseDMUUID(s)
		if err != nil || p != pool || v != vol || l != layer {
			t.Errorf("ParseDMUUID(%q) = %q %q %q %v", s, p, v, l, err)
		}
		if !strings.HasPrefix(s, PoolDMUUIDPrefix(pool)) {
			t.Errorf("%q lacks the pool prefix", s)
		}
	}
	for _, bad := range []string{"", "LVM-" + string(pool) + string(vol), DMUUIDPrefix + string(pool),
		DMUUIDPrefix + string(pool) + string(vol) + "-snap", DMUUIDPrefix + strings.ToUpper(string(pool)) + string(vol)} {
		if _, _, _, err := ParseDMUUID(bad); !errors.Is(err, ErrBadUUID) {
			t.Errorf("ParseDMUUID(%q) = %v, want ErrBadUUID", bad, err)
		}
	}
	p := &Pool{Name: strings.Repeat("p", 60), UUID: NewUUID(), ExtentSize: DefaultExtentSize}
	if err := p.checkNewName(strings.Repeat("v", 62)); !errors.Is(err, ErrBadName) {
		t.Errorf("overlong DM name accepted: %v", err)
	}
	if err := p.checkNewName(strings.Repeat("v", 61)); err != nil {
		t.Errorf("61-char volume in a 60-char pool: %v", err)
	}
}
