package lvm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest pool or volume name, as in LVM2.
const MaxNameLen = 127

// ErrBadName is wrapped by every name validation error.
var ErrBadName = errors.New("invalid name")

// ErrBadUUID is wrapped by UUID and DM UUID parsing errors.
var ErrBadUUID = errors.New("invalid uuid")

// ValidateName checks a pool or volume name: 1 to [MaxNameLen] characters
// from [a-zA-Z0-9+_.-], not starting with '-', and not "." or "..". what
// ("pool", "volume") prefixes the message. The error wraps [ErrBadName].
func ValidateName(what, name string) error {
	bad := func(reason string) error {
		return fmt.Errorf("%s name %q: %s: %w", what, name, reason, ErrBadName)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("longer than %d characters", MaxNameLen))
	case name[0] == '-':
		return bad("must not start with '-'")
	case name == "." || name == "..":
		return bad("reserved")
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '+', c == '_', c == '.', c == '-':
		case c == '/':
			return bad("must not contain '/'")
		case c == ' ' || c == '\t' || c == '\n':
			return bad("must not contain white space")
		default:
			return bad(fmt.Sprintf("character %q not allowed (use a-z A-Z 0-9 + _ . -)", c))
		}
	}
	return nil
}

// SplitPath splits "pool/volume" into its parts and validates both. A path
// without '/' returns pool "" and the name as the volume.
func SplitPath(path string) (pool, volume string, err error) {
	pool, volume, ok := strings.Cut(path, "/")
	if !ok {
		pool, volume = "", path
	} else if err := ValidateName("pool", pool); err != nil {
		return "", "", err
	}
	if err := ValidateName("volume", volume); err != nil {
		return "", "", err
	}
	return pool, volume, nil
}

// UUID identifies a pool, PV or volume: 32 lowercase hex digits (128
// random bits), the same length as LVM2's IDs.
type UUID string

// UUIDLen is the length of a UUID in characters.
const UUIDLen = 32

// NewUUID returns a random UUID from crypto/rand.
func NewUUID() UUID { return uuidSource() }

// uuidSource makes UUIDs; tests replace it to get repeatable ones.
var uuidSource = func() UUID {
	var b [UUIDLen / 2]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return UUID(hex.EncodeToString(b[:]))
}

// ParseUUID checks that s is a UUID. The error wraps [ErrBadUUID].
func ParseUUID(s string) (UUID, error) {
	if len(s) != UUIDLen {
		return "", fmt.Errorf("uuid %q: want %d hex digits: %w", s, UUIDLen, ErrBadUUID)
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("uuid %q: want lowercase hex digits: %w", s, ErrBadUUID)
		}
	}
	return UUID(s), nil
}

// Short returns the first 8 characters of u, for messages.
func (u UUID) Short() string {
	if len(u) > 8 {
		return string(u[:8])
	}
	return string(u)
}

// Layer names a device stacked below a volume's own DM device, as LVM2's
// layers: the origin's "-real" and the snapshot's "-cow".
type Layer string

// Layers.
const (
	LayerNone Layer = ""
	LayerReal Layer = "real"
	LayerCOW  Layer = "cow"
)

// Device-mapper limits (include/uapi/linux/dm-ioctl.h DM_NAME_LEN,
// DM_UUID_LEN, both counting the terminating NUL).
const (
	MaxDMNameLen = 127
	MaxDMUUIDLen = 128
)

// DMUUIDPrefix starts the DM UUID of every device dmsnap creates.
const DMUUIDPrefix = "DMSNAP-"

// DMName returns the device-mapper name of a volume's device, built like
// LVM2's dm_build_dm_name: "<pool>-<volume>[-<layer>]" with every '-'
// inside a component doubled, so that the name splits back unambiguously.
func DMName(pool, volume string, layer Layer) string {
	var b strings.Builder
	b.WriteString(strings.ReplaceAll(pool, "-", "--"))
	b.WriteByte('-')
	b.WriteString(strings.ReplaceAll(volume, "-", "--"))
	if layer != LayerNone {
		b.WriteByte('-')
		b.WriteString(strings.ReplaceAll(string(layer), "-", "--"))
	}
	return b.String()
}

// DMUUID returns the device-mapper UUID of a volume's device:
// "DMSNAP-" + pool UUID + volume UUID [+ "-" + layer], LVM2's scheme with
// its own prefix. It is at most 76 characters, well under the kernel's 127.
func DMUUID(pool, volume UUID, layer Layer) string {
	s := DMUUIDPrefix + string(pool) + string(volume)
	if layer != LayerNone {
		s += "-" + string(layer)
	}
	return s
}

// PoolDMUUIDPrefix returns the prefix shared by the DM UUIDs of every device
// of the pool.
func PoolDMUUIDPrefix(pool UUID) string { return DMUUIDPrefix + string(pool) }

// ParseDMUUID splits a DM UUID built by [DMUUID]. The error wraps
// [ErrBadUUID]; a UUID of a device dmsnap did not create (another prefix)
// is such an error too.
func ParseDMUUID(s string) (pool, volume UUID, layer Layer, err error) {
	rest, ok := strings.CutPrefix(s, DMUUIDPrefix)
	if !ok || len(rest) < 2*UUIDLen {
		return "", "", "", fmt.Errorf("dm uuid %q: not a dmsnap device: %w", s, ErrBadUUID)
	}
	if pool, err = ParseUUID(rest[:UUIDLen]); err != nil {
		return "", "", "", fmt.Errorf("dm uuid %q: pool: %w", s, err)
	}
	if volume, err = ParseUUID(rest[UUIDLen : 2*UUIDLen]); err != nil {
		return "", "", "", fmt.Errorf("dm uuid %q: volume: %w", s, err)
	}
	switch suffix := rest[2*UUIDLen:]; suffix {
	case "":
		layer = LayerNone
	case "-real":
		layer = LayerReal
	case "-cow":
		layer = LayerCOW
	default:
		return "", "", "", fmt.Errorf("dm uuid %q: unknown layer %q: %w", s, suffix, ErrBadUUID)
	}
	return pool, volume, layer, nil
}

// checkDMName checks that the longest DM name a volume can get fits the
// kernel's limit. The error wraps [ErrBadName].
func checkDMName(pool, volume string) error {
	if n := len(DMName(pool, volume, LayerReal)); n > MaxDMNameLen {
		return fmt.Errorf("volume name %q: device-mapper name %q would be %d characters, the kernel allows %d: %w",
			volume, DMName(pool, volume, LayerReal), n, MaxDMNameLen, ErrBadName)
	}
	return nil
}
