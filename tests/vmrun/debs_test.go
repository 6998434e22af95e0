package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseDepends(t *testing.T) {
	got := parseDepends("libnvpair3linux (= 2.3.2-2~bpo12+2), python3, libc6 (>= 2.34), libc6-dev | libc-dev, debconf:any")
	want := [][]depAlt{
		{{Name: "libnvpair3linux", Pin: "2.3.2-2~bpo12+2"}},
		{{Name: "python3"}},
		{{Name: "libc6", Min: "2.34"}},
		{{Name: "libc6-dev"}, {Name: "libc-dev"}},
		{{Name: "debconf"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestParseRecord(t *testing.T) {
	rec, err := parseRecord("Package: zfsutils-linux\nVersion: 2.3.2-2~bpo12+2\nPre-Depends: init-system-helpers (>= 1.54~)\nDepends: libzfs6linux (= 2.3.2-2~bpo12+2)\nDescription: x\n continued: no\n\nPackage: other\nVersion: 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Package != "zfsutils-linux" || rec.Version != "2.3.2-2~bpo12+2" || len(rec.Depends) != 2 {
		t.Fatalf("got %+v", rec)
	}
	if _, err := parseRecord("Description: nothing\n"); err == nil {
		t.Fatal("a record without Package/Version parsed")
	}
}

func TestHostInstalled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	status := "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: deinstall ok config-files\n\nPackage: c\nStatus: install ok installed\n"
	if err := os.WriteFile(p, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := hostInstalled(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"a": true, "c": true}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestPruneCache: kernels, tools and module builds that no pointer file
// names are removed; the current ones stay.
func TestPruneCache(t *testing.T) {
	c := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(c, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{
		"6.1.0-56-amd64/vmlinux", "6.1.0-57-amd64/vmlinux", "6.12.9-amd64/vmlinux", "apt/status",
		"tools/zfs-2.3.1-1/ready", "tools/zfs-2.3.2-2/ready", "tools/lvm2-2.03.16-2/ready",
		"zfs/6.1.0-56-amd64-2.3.2-2/ready", "zfs/6.1.0-57-amd64-2.3.2-2/ready", "zfs/6.1.0-57-amd64-2.3.1-1/ready",
	} {
		mk(p)
	}
	for name, v := range map[string]string{"kernel-bookworm": "6.1.0-57-amd64", "kernel-backports": "6.12.9-amd64", "tool-zfs": "zfs-2.3.2-2", "tool-lvm2": "lvm2-2.03.16-2"} {
		if err := os.WriteFile(filepath.Join(c, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneCache(c, os.Stderr); err != nil {
		t.Fatal(err)
	}
	for p, keep := range map[string]bool{
		"6.1.0-56-amd64": false, "6.1.0-57-amd64": true, "6.12.9-amd64": true, "apt": true,
		"tools/zfs-2.3.1-1": false, "tools/zfs-2.3.2-2": true, "tools/lvm2-2.03.16-2": true,
		"zfs/6.1.0-56-amd64-2.3.2-2": false, "zfs/6.1.0-57-amd64-2.3.2-2": true, "zfs/6.1.0-57-amd64-2.3.1-1": false,
	} {
		_, err := os.Stat(filepath.Join(c, p))
		if keep && err != nil {
			t.Errorf("%s was pruned: %v", p, err)
		}
		if !keep && err == nil {
			t.Errorf("%s was kept", p)
		}
	}
}

func TestAptCause(t *testing.T) {
	stderr := "Get:1 http://x bookworm InRelease\nErr:2 http://x bookworm/main amd64 linux-headers-6.1.0-56-amd64 amd64 6.1.192-2\n  404  Not Found\nE: Failed to fetch http://x/pool/linux-headers-6.1.0-56-amd64.deb  404  Not Found\nE: Unable to fetch some archives\n"
	if got, want := aptCause(stderr), "Failed to fetch http://x/pool/linux-headers-6.1.0-56-amd64.deb  404  Not Found; Unable to fetch some archives"; got != want {
		t.Errorf("aptCause: %q, want %q", got, want)
	}
	if got := aptCause("W: something\nlast line\n"); got != "last line" {
		t.Errorf("aptCause without E: lines: %q", got)
	}
}
