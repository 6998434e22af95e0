package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const sampleDeb822 = `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main non-free-firmware
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NlOEZ4ogbU
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
`

func TestParseDeb822Sources(t *testing.T) {
	got, err := parseDeb822Sources(sampleDeb822)
	if err != nil {
		t.Fatal(err)
	}
	want := []sourceEntry{
		{
			Types: []string{"deb"}, URIs: []string{"http://mirror.example/debian"},
			Suites: []string{"bookworm", "bookworm-updates"}, Components: []string{"main"},
			SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg",
		},
		{
			Types: []string{"deb", "deb-src"}, URIs: []string{"http://mirror.example/debian-security"},
			Suites: []string{"bookworm-security"}, Components: []string{"main", "non-free-firmware"},
			SignedBy: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL0BUBEADmW5NlOEZ4ogbU\n -----END PGP PUBLIC KEY BLOCK-----",
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestParseDeb822SourcesErrors(t *testing.T) {
	for _, in := range []string{" continuation first\n", "Types deb\n"} {
		if _, err := parseDeb822Sources(in); err == nil {
			t.Errorf("parseDeb822Sources(%q) succeeded", in)
		}
	}
}

func TestParseOneLineSources(t *testing.T) {
	in := `# comment
deb [arch=amd64 signed-by=/etc/apt/keyrings/d.gpg] http://mirror.example/debian bookworm main contrib # trailing
deb-src http://mirror.example/debian bookworm main

deb http://mirror.example/debian-security bookworm-security main
`
	got, err := parseOneLineSources(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []sourceEntry{
		{Types: []string{"deb"}, URIs: []string{"http://mirror.example/debian"}, Suites: []string{"bookworm"},
			Components: []string{"main", "contrib"}, SignedBy: "/etc/apt/keyrings/d.gpg"},
		{Types: []string{"deb-src"}, URIs: []string{"http://mirror.example/debian"}, Suites: []string{"bookworm"},
			Components: []string{"main"}},
		{Types: []string{"deb"}, URIs: []string{"http://mirror.example/debian-security"}, Suites: []string{"bookworm-security"},
			Components: []string{"main"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	if _, err := parseOneLineSources("deb [signed-by=x http://m bookworm\n"); err == nil {
		t.Error("unterminated options accepted")
	}
	if _, err := parseOneLineSources("deb http://m\n"); err == nil {
		t.Error("line without suite accepted")
	}
}

func TestPrivateSources(t *testing.T) {
	entries, err := parseDeb822Sources(sampleDeb822)
	if err != nil {
		t.Fatal(err)
	}
	got, err := privateSources(entries, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	want := `Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NlOEZ4ogbU
 -----END PGP PUBLIC KEY BLOCK-----
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// The rendered file must parse back to the same URIs and keys.
	back, err := parseDeb822Sources(got)
	if err != nil || len(back) != 2 || back[1].SignedBy != entries[1].SignedBy {
		t.Errorf("round trip: %#v, %v", back, err)
	}

	// Without a security source, only the main stanza is written.
	got, err = privateSources(entries[:1], "bookworm")
	if err != nil || strings.Contains(got, "security") {
		t.Errorf("without security: %q, %v", got, err)
	}
	if _, err := privateSources(entries[1:], "bookworm"); !errors.Is(err, errNoSource) {
		t.Errorf("without main: err = %v, want errNoSource", err)
	}
}
