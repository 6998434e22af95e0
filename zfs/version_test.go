package zfs

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseVersionGolden(t *testing.T) {
	for _, file := range []string{"zfs-2.3.2-version.txt", "zfs-2.3.2-version-j.json"} {
		vs, err := ParseVersion([]byte(readTestdata(t, file)))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		want := Version{2, 3, 2, "2~bpo12+2", "zfs-2.3.2-2~bpo12+2"}
		if vs.Userland != want {
			t.Errorf("%s: userland %+v", file, vs.Userland)
		}
		want.Raw = "zfs-kmod-2.3.2-2~bpo12+2"
		if vs.Kernel != want {
			t.Errorf("%s: kernel %+v", file, vs.Kernel)
		}
	}
	vs, err := ParseVersion([]byte(readTestdata(t, "zfs-2.1.11-version.txt")))
	if err != nil || !vs.Userland.Is(2, 1, 11) || vs.Kernel.Release != "1" {
		t.Errorf("2.1.11: %+v %v", vs, err)
	}
}

func TestParseVersionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      error
	}{
		{"zfs -V without module", readTestdata(t, "zfs-2.3.2-V-nomodule-stdout.txt"), ErrNoModule},
		{"json without kernel", `{"zfs_version":{"userland":"zfs-2.3.2-1"}}`, ErrNoModule},
		{"json empty kernel", `{"zfs_version":{"userland":"zfs-2.3.2-1","kernel":""}}`, ErrNoModule},
		{"empty", "", ErrVersion},
		{"blank lines", "\n\n", ErrVersion},
		{"garbage", "hello world\n", ErrVersion},
		{"lines swapped", "zfs-kmod-2.3.2-1\nzfs-2.3.2-1\n", ErrVersion},
		{"two userland lines", "zfs-2.3.2-1\nzfs-2.3.2-1\n", ErrVersion},
		{"three lines", "zfs-2.3.2-1\nzfs-kmod-2.3.2-1\nextra\n", ErrVersion},
		{"no patch", "zfs-2.3-1\nzfs-kmod-2.3-1\n", ErrVersion},
		{"release with space", "zfs-2.3.2-1 x\nzfs-kmod-2.3.2-1\n", ErrVersion},
		{"bad json", `{"zfs_version":`, ErrVersion},
		{"json no userland", `{"zfs_version":{"kernel":"zfs-kmod-2.3.2-1"}}`, ErrVersion},
		{"json garbage kernel", `{"zfs_version":{"userland":"zfs-2.3.2-1","kernel":"2.3.2"}}`, ErrVersion},
		{"json number", `{"zfs_version":{"userland":2.3}}`, ErrVersion},
	} {
		_, err := ParseVersion([]byte(tc.out))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
			continue
		}
		// The error names what was printed (first token at least).
		if first := strings.Fields(tc.out); len(first) > 0 && tc.want == ErrVersion && !strings.HasPrefix(tc.out, "{") && !strings.Contains(err.Error(), first[0]) {
			t.Errorf("%s: error %q does not quote the output", tc.name, err)
		}
	}
	// Top-level keys (as the reference describes) are accepted too.
	if _, err := ParseVersion([]byte(`{"userland":"zfs-2.3.2-1","kernel":"zfs-kmod-2.3.2-1"}`)); err != nil {
		t.Errorf("top-level keys: %v", err)
	}
}

func mustVersions(t *testing.T, user, kmod string) Versions {
	t.Helper()
	vs, err := ParseVersion([]byte(user + "\n" + kmod + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestCheckVersionsDecisionTable is the version guard's decision table.
func TestCheckVersionsDecisionTable(t *testing.T) {
	for _, tc := range []struct {
		user, kmod string
		compat     Compat
		sendI      bool
		warn       string // substring of the warning; "" means none
	}{
		{"zfs-2.3.2-2~bpo12+2", "zfs-kmod-2.3.2-2~bpo12+2", CompatOK, true, ""},
		{"zfs-2.3.1-1", "zfs-kmod-2.3.1-1", CompatOK, true, ""},
		{"zfs-2.1.11-1", "zfs-kmod-2.1.11-1", CompatOK, true, ""},
		// The known-bad pair, any release suffix.
		{"zfs-2.3.2-2~bpo12+2", "zfs-kmod-2.3.1-1", CompatKnownBad, false, "send -I"},
		{"zfs-2.3.2-1", "zfs-kmod-2.3.1-2~bpo12+1", CompatKnownBad, false, "chain of -i"},
		// The reverse pair is not known to be bad.
		{"zfs-2.3.1-1", "zfs-kmod-2.3.2-1", CompatMismatch, true, "differs"},
		{"zfs-2.3.3-1", "zfs-kmod-2.3.1-1", CompatMismatch, true, "differs"},
		{"zfs-2.3.2-1", "zfs-kmod-2.2.7-1", CompatMismatch, true, "differs"},
		// Same version, different release: warn.
		{"zfs-2.3.2-1", "zfs-kmod-2.3.2-2", CompatMismatch, true, "2.3.2-2"},
		{"zfs-2.3.2", "zfs-kmod-2.3.2", CompatOK, true, ""},
	} {
		g := CheckVersions(mustVersions(t, tc.user, tc.kmod))
		if g.Compat != tc.compat || g.SendIncrementalPackage != tc.sendI {
			t.Errorf("%s / %s: %v sendI=%v, want %v sendI=%v", tc.user, tc.kmod, g.Compat, g.SendIncrementalPackage, tc.compat, tc.sendI)
		}
		if (tc.warn == "") != (g.Warning == "") || !strings.Contains(g.Warning, tc.warn) {
			t.Errorf("%s / %s: warning %q, want containing %q", tc.user, tc.kmod, g.Warning, tc.warn)
		}
	}
	if CompatKnownBad.String() != "known-bad" {
		t.Errorf("Compat string %q", CompatKnownBad)
	}
}

func TestRunnerVersion(t *testing.T) {
	jsonOut := readTestdata(t, "zfs-2.3.2-kmod-2.3.1-version-j.json")
	r := &Runner{Exec: newFake(t, map[string]reply{"zfs version -j": {stdout: jsonOut}})}
	vs, err := r.Version(context.Background())
	if err != nil || CheckVersions(vs).Compat != CompatKnownBad {
		t.Fatalf("2.3.2/2.3.1: %+v %v", vs, err)
	}

	// 2.1 rejects -j: fall back to text.
	f := newFake(t, map[string]reply{
		"zfs version -j": {stderr: readTestdata(t, "zfs-2.1.11-version-j-stderr.txt"), err: errExit1},
		"zfs version":    {stdout: readTestdata(t, "zfs-2.1.11-version.txt")},
	})
	r = &Runner{Exec: f}
	if vs, err = r.Version(context.Background()); err != nil || !vs.Kernel.Is(2, 1, 11) {
		t.Fatalf("2.1.11 fallback: %+v %v", vs, err)
	}

	// No module: stop at the first command, say so.
	f = newFake(t, map[string]reply{
		"zfs version -j": {stderr: readTestdata(t, "zfs-2.3.2-version-nomodule-stderr.txt"), err: errExit1},
	})
	r = &Runner{Exec: f}
	if _, err = r.Version(context.Background()); !errors.Is(err, ErrNoModule) || !strings.Contains(err.Error(), "cannot be auto-loaded") {
		t.Fatalf("no module: %v", err)
	}
	if len(f.calls) != 1 {
		t.Errorf("ran %d commands after ErrNoModule", len(f.calls))
	}
}
