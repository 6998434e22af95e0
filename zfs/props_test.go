package zfs

import (
	"context"
	"errors"
	"maps"
	"testing"
)

func TestCheckUserProperty(t *testing.T) {
	for _, ok := range []string{"dmsnap:sent-0123456789abcdef", "com.example:x", "a:b_c.d-e"} {
		if err := CheckUserProperty(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "volsize", "-a:b", "Dmsnap:x", "a:b c", "a:b=c", "a:b/c", string(make([]byte, 257))} {
		if err := CheckUserProperty(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestRunnerUserProperties(t *testing.T) {
	f := newFake(t, map[string]reply{
		"zfs get -Hp -s local -o property,value all tank/vol": {stdout: "volsize\t67108864\ndmsnap:sent-aa\t123 backup/vol\n" +
			"dmsnap:sent-bb\t456 host1:backup/vol\ncom.example:x\ty\n"},
		"zfs set dmsnap:sent-aa=789 backup/vol tank/vol": {},
		"zfs inherit dmsnap:sent-bb tank/vol":            {},
	})
	r := &Runner{Exec: f}
	ctx := context.Background()
	m, err := r.UserProperties(ctx, "tank/vol", "dmsnap:sent-")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"dmsnap:sent-aa": "123 backup/vol", "dmsnap:sent-bb": "456 host1:backup/vol"}; !maps.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
	if err := r.SetUserProperty(ctx, "tank/vol", "dmsnap:sent-aa", "789 backup/vol"); err != nil {
		t.Error(err)
	}
	if err := r.SetUserProperty(ctx, "tank/vol", "dmsnap:sent-aa", "a\tb"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("tab in value: %v", err)
	}
	if err := r.SetUserProperty(ctx, "tank/vol", "volsize", "1"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("native property: %v", err)
	}
	if err := r.InheritUserProperty(ctx, "tank/vol", "dmsnap:sent-bb"); err != nil {
		t.Error(err)
	}
	if len(f.calls) != 3 {
		t.Errorf("calls %q", f.calls)
	}
}
