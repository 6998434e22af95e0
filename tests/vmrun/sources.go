package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// errNoSource reports that the machine's apt sources name no usable Debian
// archive for a suite the runner needs.
var errNoSource = errors.New("no apt source")

// sourceEntry is one apt source: a deb822 stanza, or one line of the
// classic one-line format.
type sourceEntry struct {
	Types      []string
	URIs       []string
	Suites     []string
	Components []string
	SignedBy   string // keyring path(s) or an inline key block, verbatim
}

// parseDeb822Sources parses a deb822 .sources file. Stanzas are separated
// by blank lines; lines starting with '#' are comments; a line starting
// with white space continues the previous field (a lone "." stands for an
// empty line, as in inline Signed-By keys). Stanzas with "Enabled: no" are
// dropped.
func parseDeb822Sources(text string) ([]sourceEntry, error) {
	var (
		out    []sourceEntry
		fields = map[string]string{}
		last   string
	)
	flush := func() {
		if len(fields) == 0 {
			return
		}
		if !strings.EqualFold(strings.TrimSpace(fields["enabled"]), "no") {
			out = append(out, sourceEntry{
				Types:      strings.Fields(fields["types"]),
				URIs:       strings.Fields(fields["uris"]),
				Suites:     strings.Fields(fields["suites"]),
				Components: strings.Fields(fields["components"]),
				SignedBy:   strings.TrimSpace(fields["signed-by"]),
			})
		}
		fields, last = map[string]string{}, ""
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation without a field", n)
			}
			fields[last] += "\n" + line
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("line %d: want Field: value, got %q", n, line)
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	flush()
	return out, nil
}

// parseOneLineSources parses the classic sources.list format:
//
//	deb [opt=val ...] URI SUITE [COMPONENT...]
func parseOneLineSources(text string) ([]sourceEntry, error) {
	var out []sourceEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var e sourceEntry
		typ, rest, _ := strings.Cut(line, " ")
		e.Types = []string{typ}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated [options]", n)
			}
			for _, opt := range strings.Fields(rest[1:end]) {
				if k, v, ok := strings.Cut(opt, "="); ok && strings.EqualFold(k, "signed-by") {
					e.SignedBy = v
				}
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want URI and suite", n)
		}
		e.URIs, e.Suites, e.Components = f[:1], f[1:2], f[2:]
		out = append(out, e)
	}
	return out, sc.Err()
}

// has reports whether list contains s.
func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// findSource returns the URI and Signed-By value of the first binary
// ("deb") source serving suite.
func findSource(entries []sourceEntry, suite string) (uri, signedBy string, err error) {
	for _, e := range entries {
		if has(e.Types, "deb") && has(e.Suites, suite) && len(e.URIs) > 0 {
			return e.URIs[0], e.SignedBy, nil
		}
	}
	return "", "", fmt.Errorf("%w for suite %s", errNoSource, suite)
}

// privateSources renders the deb822 sources file of the runner's private
// apt configuration for release (e.g. "bookworm"): the release, -updates and
// -backports from the machine's main archive URI and -security from its
// security URI, components main and contrib. URIs and keyrings are taken
// from the machine's own sources, never hard-coded.
func privateSources(entries []sourceEntry, release string) (string, error) {
	mainURI, mainKey, err := findSource(entries, release)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	stanza := func(uri, key string, suites ...string) {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Types: deb\nURIs: %s\nSuites: %s\nComponents: main contrib\n", uri, strings.Join(suites, " "))
		if key != "" {
			fmt.Fprintf(&b, "Signed-By: %s\n", key)
		}
	}
	stanza(mainURI, mainKey, release, release+"-updates", release+"-backports")
	secURI, secKey, err := findSource(entries, release+"-security")
	if err == nil {
		stanza(secURI, secKey, release+"-security")
	}
	return b.String(), nil
}

// readMachineSources reads the machine's apt sources: the deb822
// /etc/apt/sources.list.d/debian.sources, then the one-line
// /etc/apt/sources.list as a fallback.
func readMachineSources() ([]sourceEntry, error) {
	var all []sourceEntry
	var errs []error
	if data, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		e, err := parseDeb822Sources(string(data))
		if err != nil {
			errs = append(errs, fmt.Errorf("debian.sources: %w", err))
		}
		all = append(all, e...)
	}
	if data, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		e, err := parseOneLineSources(string(data))
		if err != nil {
			errs = append(errs, fmt.Errorf("sources.list: %w", err))
		}
		all = append(all, e...)
	}
	if len(all) == 0 {
		return nil, errors.Join(append(errs, fmt.Errorf("%w in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list", errNoSource))...)
	}
	return all, nil
}
