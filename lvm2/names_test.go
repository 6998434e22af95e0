package lvm2

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	p, err := ParsePath("vg-0/lv_1")
	if err != nil || p != (Path{VG: "vg-0", LV: "lv_1"}) {
		t.Fatalf("ParsePath: %+v, %v", p, err)
	}
	if got, want := p.DMName(), "vg--0-lv_1"; got != want {
		t.Errorf("DMName %q, want %q", got, want)
	}
	if got, want := (Path{VG: "a-b", LV: "c-d"}).DMName("cow"), "a--b-c--d-cow"; got != want {
		t.Errorf("DMName(cow) %q, want %q", got, want)
	}
	for _, bad := range []string{"", "vg", "vg/", "/lv", "vg/lv/x", "/dev/vg/lv", "v g/lv", "vg/-lv", "vg/snapshot1",
		"vg/a_tmeta", "vg/..", "-vg/lv", "vg/" + strings.Repeat("x", 128), "vg/lv\x00"} {
		if _, err := ParsePath(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ParsePath(%q): %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestValidateNames(t *testing.T) {
	for _, ok := range []string{"a", "A+b_c.d-e", strings.Repeat("x", 127), "lv-snapshot"} {
		if err := ValidateLVName(ok); err != nil {
			t.Errorf("ValidateLVName(%q): %v", ok, err)
		}
		if err := ValidateVGName(ok); err != nil {
			t.Errorf("ValidateVGName(%q): %v", ok, err)
		}
	}
	// Reserved LV names are fine as VG names.
	if err := ValidateVGName("snapshot"); err != nil {
		t.Errorf("ValidateVGName(snapshot): %v", err)
	}
	err := ValidateLVName("pvmove0")
	if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), `"pvmove"`) {
		t.Errorf("ValidateLVName(pvmove0): %v", err)
	}
	err = ValidateVGName("vg/x")
	if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), `'/'`) {
		t.Errorf("ValidateVGName(vg/x): %v", err)
	}
}
