package lvm2

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
)

// Sentinels. Callers branch on them with errors.Is; the *[CommandError]
// that carries one also quotes the command and its standard error.
var (
	// ErrNotInstalled: the lvm program does not exist.
	ErrNotInstalled = errors.New("lvm2 not installed")
	// ErrNotFound: the volume group or logical volume does not exist.
	ErrNotFound = errors.New("volume group or logical volume not found")
	// ErrExists: the logical volume to create or rename to exists.
	ErrExists = errors.New("logical volume already exists")
	// ErrNoSpace: the volume group has too few free extents.
	ErrNoSpace = errors.New("insufficient free space in volume group")
	// ErrBusy: the LV is open or in use.
	ErrBusy = errors.New("logical volume in use")
	// ErrLocked: another lvm process holds the volume group's lock.
	ErrLocked = errors.New("volume group locked by another lvm process")
	// ErrPermission: the command needs root.
	ErrPermission = errors.New("permission denied")
	// ErrInvalidName: a VG or LV name breaks LVM2's naming rules.
	ErrInvalidName = errors.New("invalid lvm2 name")
	// ErrUnsupported: the request cannot be expressed in LVM2 (PO or
	// discard features) or the LV's segment type is not supported.
	ErrUnsupported = errors.New("not supported for lvm2")
	// ErrNotOwned: a snapshot without [CursorTag] was to be changed.
	ErrNotOwned = errors.New("snapshot not made by dmsnap")
	// ErrMerging: the snapshot or its origin is already merging.
	ErrMerging = errors.New("merge already in progress")
	// ErrSyntax: lvm printed something this package cannot parse.
	ErrSyntax = errors.New("unparsable lvm2 output")
)

// CommandError is a failed lvm command. Err is the classified sentinel
// (nil if the text matched none), Cause the executor's error (an
// *exec.ExitError, a lookup error, a context error). Both answer
// errors.Is/As through Unwrap.
type CommandError struct {
	Command string // lvs, lvcreate, ...
	Args    []string
	Object  string // VG or VG/LV the command is about; may be empty
	Stderr  string
	Err     error
	Cause   error
}

// Error prints `lvremove vg0/snap: logical volume in use (stderr: "...")`.
func (e *CommandError) Error() string {
	var b strings.Builder
	b.WriteString(e.Command)
	if e.Object != "" {
		b.WriteString(" " + e.Object)
	}
	b.WriteString(": ")
	switch {
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	case e.Cause != nil:
		b.WriteString(e.Cause.Error())
	default:
		b.WriteString("failed")
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		b.WriteString(" (stderr: " + strconv.Quote(s) + ")")
	}
	return b.String()
}

// Unwrap returns the sentinel and the executor's error.
func (e *CommandError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

type stderrRule struct {
	re  *regexp.Regexp
	err error
}

// stderrRules classify lvm(8)'s standard error; the first match wins.
// Messages are LVM2 2.03's (tools/, lib/metadata/, lib/locking/). Each
// rule says whether the VM tier (lvm2 2.03.16, kernel 6.1) has verified
// it.
var stderrRules = []stderrRule{
	// lib/locking/file_locking.c _do_flock ("Giving up waiting for lock.")
	// and lib/locking/locking.c ("Can't get lock for %s"). To be verified
	// in the VM tier.
	{regexp.MustCompile(`(?m)(Giving up waiting for lock|Can't get lock for )`), ErrLocked},
	// lib/metadata/lv_manip.c _check_lv_merging..., tools/lvconvert.c:
	// "Snapshot %s is already merging." / "... is already merging into
	// the origin." To be verified in the VM tier: Merge refuses a merging
	// snapshot from lv_attr before lvconvert runs.
	{regexp.MustCompile(`(?m)(is already merging|already merging|invalid on LV with properties: lv_is_merging)`), ErrMerging},
	// lib/metadata/lv_manip.c _lv_insufficient_... : "Insufficient free
	// space: %u extents needed, but only %u available" and
	// "Volume group \"%s\" has insufficient free space (%u extents): %u
	// required." The second verified in the VM tier (lvcreate -s with
	// one extent free); the first to be verified.
	{regexp.MustCompile(`(?m)(Insufficient free space|has insufficient free space)`), ErrNoSpace},
	// tools/toollib.c: `Volume group "%s" not found`, lib/metadata:
	// `Failed to find logical volume "%s/%s"`. Both verified in the VM
	// tier (vgs of a missing VG, lvs of a missing LV).
	{regexp.MustCompile(`(?m)(Volume group "[^"]*" not found|Failed to find logical volume|Logical volume [^ ]+ not found)`), ErrNotFound},
	// lib/metadata/lv_manip.c lv_create_single / lvrename: "Logical
	// Volume \"%s\" already exists in volume group \"%s\"". Verified in
	// the VM tier (lvcreate -s of an existing name).
	{regexp.MustCompile(`(?mi)logical volume "[^"]*" already exists`), ErrExists},
	// lib/metadata/lv_manip.c lv_remove_single ("Can't remove open
	// logical volume") and lib/activate ("Logical volume %s in use.",
	// "contains a filesystem in use"). To be verified in the VM tier.
	{regexp.MustCompile(`(?m)(Can't remove open logical volume|in use\.?$|contains a filesystem in use)`), ErrBusy},
	// tools/lvmcmdline.c / lib/locking: "WARNING: Running as a non-root
	// user" is followed by permission-denied lines. To be verified.
	{regexp.MustCompile(`(?m)(Permission denied|must be run as root)`), ErrPermission},
	// tools/toollib.c validate_name checks ("Names starting \"snapshot\"
	// are reserved.", "Logical volume name \"%s\" is invalid."). To be
	// verified: names are checked before any command runs.
	{regexp.MustCompile(`(?m)(are reserved|name "[^"]*" is invalid|Invalid (volume group|logical volume) name)`), ErrInvalidName},
}

func classify(stderr []byte) error {
	for _, r := range stderrRules {
		if r.re.Match(stderr) {
			return r.err
		}
	}
	return nil
}

func newCommandError(command string, args []string, object string, stderr []byte, cause error) *CommandError {
	e := &CommandError{
		Command: command,
		Args:    append([]string(nil), args...),
		Object:  object,
		Stderr:  string(stderr),
		Cause:   cause,
	}
	switch {
	case isNotFound(cause):
		e.Err = ErrNotInstalled
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
	default:
		e.Err = classify(stderr)
	}
	return e
}
