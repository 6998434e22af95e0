package lvm

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Pool metadata grows through named extensions and feature flags, as ext4
// and ZFS pools do, so that a pool carries its own policy without a new
// document version per field, and a dmsnap that does not know a feature
// can tell what that means:
//
//   - compat: a reader that does not know the feature may read and write
//     the pool (it keeps the feature's extension as it found it);
//   - ro_compat: it may read the pool but must not write it, since a write
//     could break what the feature maintains;
//   - incompat: it must not even read it.
//
// Extensions are opaque JSON values by name. A dmsnap preserves those it
// does not know on every rewrite, so an older one can never drop a newer
// one's state.

// Features are a pool's feature flags by compatibility class.
type Features struct {
	Compat   []string `json:"compat,omitempty"`
	ROCompat []string `json:"ro_compat,omitempty"`
	Incompat []string `json:"incompat,omitempty"`
}

// FeatureClass is the compatibility class of a feature.
type FeatureClass int

// Feature classes.
const (
	Compat FeatureClass = iota
	ROCompat
	Incompat
)

func (c FeatureClass) String() string {
	switch c {
	case Compat:
		return "compat"
	case ROCompat:
		return "ro_compat"
	case Incompat:
		return "incompat"
	}
	return fmt.Sprintf("FeatureClass(%d)", int(c))
}

// knownFeatures are the features this dmsnap implements, by class. A
// feature joins here in the release that implements it, and never moves
// between classes.
var knownFeatures = [3]map[string]bool{Compat: {}, ROCompat: {}, Incompat: {}}

// Sentinels of features.
var (
	// ErrUnknownFeature: the pool uses an incompat feature this dmsnap does
	// not know. It also wraps ErrUnknownVersion, like any metadata from
	// a newer dmsnap.
	ErrUnknownFeature = errors.New("unknown incompatible pool feature")
	// ErrReadOnlyFeature: the pool uses a ro_compat feature this dmsnap
	// does not know, so it may read the pool but not change it.
	ErrReadOnlyFeature = errors.New("pool feature allows this dmsnap to read only")
)

// Limits that bound what a hostile document can make a reader hold.
const (
	maxFeatures   = 64
	maxExtensions = 64
)

var featureName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,63}$`)

func (f Features) class(c FeatureClass) []string {
	switch c {
	case ROCompat:
		return f.ROCompat
	case Incompat:
		return f.Incompat
	}
	return f.Compat
}

func (f *Features) ptr(c FeatureClass) *[]string {
	switch c {
	case ROCompat:
		return &f.ROCompat
	case Incompat:
		return &f.Incompat
	}
	return &f.Compat
}

// Has reports whether the pool has feature name, in any class.
func (f Features) Has(name string) bool {
	return slices.Contains(f.Compat, name) || slices.Contains(f.ROCompat, name) || slices.Contains(f.Incompat, name)
}

// Empty reports whether no feature is set.
func (f Features) Empty() bool {
	return len(f.Compat) == 0 && len(f.ROCompat) == 0 && len(f.Incompat) == 0
}

// unknown returns the features of class c this dmsnap does not know.
func (f Features) unknown(c FeatureClass) []string {
	var out []string
	for _, n := range f.class(c) {
		if !knownFeatures[c][n] {
			out = append(out, n)
		}
	}
	return out
}

func (f Features) clone() Features {
	return Features{Compat: slices.Clone(f.Compat), ROCompat: slices.Clone(f.ROCompat), Incompat: slices.Clone(f.Incompat)}
}

func (f Features) validate() error {
	seen := map[string]string{}
	n := 0
	for c := Compat; c <= Incompat; c++ {
		for _, name := range f.class(c) {
			if !featureName.MatchString(name) {
				return fmt.Errorf("feature %q: not a feature name ([a-z0-9_.:-], at most 64)", name)
			}
			if prev, dup := seen[name]; dup {
				return fmt.Errorf("feature %q is listed as %s and %s", name, prev, c)
			}
			seen[name] = c.String()
			n++
		}
	}
	if n > maxFeatures {
		return fmt.Errorf("%d features (at most %d)", n, maxFeatures)
	}
	return nil
}

// checkReadable refuses a pool with an incompat feature this dmsnap does
// not know.
func (p *Pool) checkReadable() error {
	if u := p.Features.unknown(Incompat); len(u) > 0 {
		return fmt.Errorf("pool %s uses feature %s, which this dmsnap does not implement; use a newer dmsnap: %w: %w",
			p.Name, strings.Join(u, ", "), ErrUnknownFeature, ErrUnknownVersion)
	}
	return nil
}

// ReadOnlyReason says why this dmsnap must not change the pool (a
// ro_compat feature it does not know), or "" if it may.
func (p *Pool) ReadOnlyReason() string {
	if u := p.Features.unknown(ROCompat); len(u) > 0 {
		return fmt.Sprintf("pool %s uses feature %s, which this dmsnap can read but not write; use a newer dmsnap to change it", p.Name, strings.Join(u, ", "))
	}
	return ""
}

// checkWritable refuses a commit of a pool this dmsnap must not change.
func (p *Pool) checkWritable() error {
	if why := p.ReadOnlyReason(); why != "" {
		return fmt.Errorf("%s: %w", why, ErrReadOnlyFeature)
	}
	return nil
}

// Extension decodes the pool's extension name into v and reports whether
// the pool has it.
func (p *Pool) Extension(name string, v any) (bool, error) {
	raw, ok := p.Extensions[name]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("pool %s: extension %s: %w", p.Name, name, err)
	}
	return true, nil
}

// SetExtension stores v as the pool's extension name and sets feature
// name in class c, so that a dmsnap without the feature knows what it
// may do with the pool. A nil v removes both.
func (p *Pool) SetExtension(name string, c FeatureClass, v any) error {
	if !featureName.MatchString(name) {
		return fmt.Errorf("extension %q: not a feature name", name)
	}
	for k := Compat; k <= Incompat; k++ {
		list := p.Features.ptr(k)
		*list = slices.DeleteFunc(*list, func(s string) bool { return s == name })
		if len(*list) == 0 {
			*list = nil
		}
	}
	if v == nil {
		delete(p.Extensions, name)
		if len(p.Extensions) == 0 {
			p.Extensions = nil
		}
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("extension %s: %w", name, err)
	}
	if p.Extensions == nil {
		p.Extensions = map[string]json.RawMessage{}
	}
	p.Extensions[name] = b
	list := p.Features.ptr(c)
	*list = append(*list, name)
	return nil
}

func validateExtensions(ext map[string]json.RawMessage) error {
	if len(ext) > maxExtensions {
		return fmt.Errorf("%d extensions (at most %d)", len(ext), maxExtensions)
	}
	for _, name := range slices.Sorted(maps.Keys(ext)) {
		if !featureName.MatchString(name) {
			return fmt.Errorf("extension %q: not a feature name", name)
		}
		if !json.Valid(ext[name]) {
			return fmt.Errorf("extension %s: not JSON", name)
		}
	}
	return nil
}
