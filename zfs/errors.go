package zfs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Sentinels. Callers branch on them with errors.Is; the *[CommandError]
// that carries one also quotes the command and its standard error.
var (
	// ErrZFSNotInstalled: the zfs or zpool program does not exist.
	ErrZFSNotInstalled = errors.New("zfs not installed")
	// ErrNoModule: the userland exists but the zfs kernel module is not
	// loaded (or /dev/zfs is missing).
	ErrNoModule = errors.New("zfs kernel module not loaded")
	// ErrPermission: the command needs root or a delegated permission.
	ErrPermission = errors.New("permission denied")
	// ErrDatasetNotFound: the pool, dataset, snapshot or bookmark does not
	// exist.
	ErrDatasetNotFound = errors.New("dataset does not exist")
	// ErrExists: the dataset, snapshot or bookmark to create exists.
	ErrExists = errors.New("dataset already exists")
	// ErrNotAZvol: the dataset exists but is not a volume.
	ErrNotAZvol = errors.New("dataset is not a zvol")
	// ErrBusy: the pool or dataset is busy.
	ErrBusy = errors.New("dataset is busy")
	// ErrResumeTokenInvalid: a receive_resume_token is corrupt or belongs
	// to another dataset.
	ErrResumeTokenInvalid = errors.New("invalid resume token")
	// ErrIncrementalMismatch: the receiver's most recent snapshot is not
	// the incremental stream's source.
	ErrIncrementalMismatch = errors.New("receiver's most recent snapshot does not match incremental source")
	// ErrDestinationModified: the receiver was written to after its most
	// recent snapshot (receive would need -F).
	ErrDestinationModified = errors.New("destination modified since most recent snapshot")
	// ErrSyntax: zfs printed something this package cannot parse.
	ErrSyntax = errors.New("unparsable zfs output")
	// ErrVersion: `zfs version` printed something unrecognisable.
	ErrVersion = errors.New("unrecognised zfs version")
	// ErrNoCommonBase: sender and receiver share no snapshot by GUID
	// while the receiver has snapshots (unrelated history).
	ErrNoCommonBase = errors.New("target has unrelated history: GUID mismatch")
	// ErrReceiverDiverged: the receiver has snapshots newer than the
	// common base; only `receive -F` (which destroys them) could proceed.
	ErrReceiverDiverged = errors.New("target has snapshots newer than the common base")
	// ErrInvalidName: a dataset, snapshot or bookmark name is malformed.
	ErrInvalidName = errors.New("invalid zfs name")
)

// CommandError is a failed zfs or zpool command. Err is the classified
// sentinel (nil if the text matched none), Cause the executor's error
// (an *exec.ExitError, a lookup error, a context error). Both answer
// errors.Is/As through Unwrap.
type CommandError struct {
	Binary  string
	Args    []string
	Dataset string
	Stderr  string
	Err     error
	Cause   error
}

// Error prints "zfs destroy pool/vol@s: dataset does not exist (stderr:
// "cannot destroy ...")".
func (e *CommandError) Error() string {
	var b strings.Builder
	b.WriteString(e.Binary)
	if len(e.Args) > 0 {
		b.WriteString(" " + e.Args[0])
	}
	if e.Dataset != "" {
		b.WriteString(" " + e.Dataset)
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

// stderrRule maps a stderr pattern to a sentinel.
type stderrRule struct {
	re  *regexp.Regexp
	err error
}

// stderrRules classify zfs(8)/zpool(8) standard error. Patterns are tried
// in order; the first match wins. (?m) anchors at line starts because
// libzfs prints "<action>: <reason>" per line and some reasons span
// lines.
var stderrRules = []stderrRule{
	// From OpenZFS 2.3.2 lib/libzfs/os/linux/libzfs_util_os.c
	// libzfs_error_init (ENXIO, ENOENT, ENOEXEC), printed by cmd/zfs main
	// when libzfs_init fails; and lib/libzfs/libzfs_util.c
	// zfs_version_print ("zfs_version_kernel() failed", no
	// /sys/module/zfs/version). "The ZFS modules cannot be auto-loaded"
	// (zfs version, version -j, list) and "zfs_version_kernel() failed"
	// (zfs -V) verified with zfs 2.3.2 userland on a host without the
	// module (vmrun --tools zfs unpacks it under .cache); the others are to
	// be verified in tests/loopback.
	{regexp.MustCompile(`(?m)^(The ZFS modules cannot be auto-loaded|The ZFS modules are not loaded|/dev/zfs and /proc/self/mounts are required|zfs_version_kernel\(\) failed)`), ErrNoModule},
	// From OpenZFS 2.3.2 libzfs_error_init (EACCES) and libzfs_util.c
	// EZFS_PERM ("permission denied"); to be verified in tests/loopback.
	{regexp.MustCompile(`(?m)(^Permission denied the ZFS utilities must be run as root|: permission denied$)`), ErrPermission},
	// From OpenZFS 2.3.2 lib/libzfs/libzfs_sendrecv.c
	// zfs_send_resume_token_to_nvlist (corrupt), zfs_send_resume_impl
	// (the token's snapshots are gone or replaced) and zfs_receive_one
	// (token of another dataset). Abort with `receive -A` and plan again.
	// "resume token is corrupt" verified in the VM tier (zfs 2.3.2,
	// kernel 6.1); the others are to be verified in tests/loopback.
	{regexp.MustCompile(`(?m)(resume token is corrupt|provided resume token does not match dataset|used in the initial send no longer exists|is no longer the same snapshot used in the initial send|incremental source 0x[0-9a-f]+ no longer exists|^cannot resume send: dataset to be sent no longer exists)`), ErrResumeTokenInvalid},
	// From OpenZFS 2.3.2 libzfs_sendrecv.c zfs_receive_one (ENODEV);
	// the reason spans two lines. Verified in the VM tier (zfs 2.3.2,
	// kernel 6.1).
	{regexp.MustCompile(`most recent snapshot of \S+ does not\s+match incremental source`), ErrIncrementalMismatch},
	// From OpenZFS 2.3.2 libzfs_sendrecv.c zfs_receive_one (ETXTBSY).
	// Verified in the VM tier (zfs 2.3.2, kernel 6.1).
	{regexp.MustCompile(`destination \S+ has been modified\s+since most recent snapshot`), ErrDestinationModified},
	// From OpenZFS 2.3.2 libzfs_util.c zfs_standard_error (ENOENT →
	// "dataset does not exist"), EZFS_NOENT ("no such pool or dataset"),
	// cmd/zfs/zfs_main.c ("bookmark '%s' does not exist."),
	// libzfs_sendrecv.c ("incremental source (%s) does not exist",
	// "destination '%s' does not exist"). "dataset does not exist" (list,
	// get, send from a destroyed base), "no such pool" (zpool list,
	// create under a missing pool), the bookmark line and "could not
	// find any snapshots to destroy" are verified in the VM tier (zfs
	// 2.3.2, kernel 6.1); the others are to be verified in tests/loopback.
	{regexp.MustCompile(`(?m)(: dataset does not exist$|: no such pool or dataset$|: no such pool$|^bookmark '[^']*' does not exist|incremental source \([^)]*\) does not exist|destination '[^']*' does not exist|could not find any snapshots to destroy)`), ErrDatasetNotFound},
	// From OpenZFS 2.3.2 libzfs_util.c zfs_standard_error (EEXIST →
	// "dataset already exists"), EZFS_EXISTS ("pool or dataset exists"),
	// zfs_main.c zfs_do_bookmark ("bookmark exists"), libzfs_sendrecv.c
	// ("destination already exists", "destination '%s' exists",
	// "destination has snapshots (eg. %s) must destroy them to overwrite
	// it"). "dataset already exists" (create, snapshot), "bookmark
	// exists" and "destination '%s' exists" are verified in the VM tier
	// (zfs 2.3.2, kernel 6.1); the others are to be verified in
	// tests/loopback.
	{regexp.MustCompile(`(?m)(: dataset already exists$|: pool or dataset exists$|: bookmark exists$|destination already exists|destination '[^']*' exists$|destination has snapshots \(eg\. [^)]*\)\s+must destroy them)`), ErrExists},
	// From OpenZFS 2.3.2 libzfs_util.c zfs_standard_error (EBUSY →
	// "dataset is busy"), EZFS_BUSY ("pool or dataset is busy"),
	// "pool is busy"; to be verified in tests/loopback. And
	// cmd/zfs/zfs_main.c zfs_do_destroy, destroying a held snapshot
	// (EBUSY): "cannot destroy snapshot %s: it's being held. Run 'zfs
	// holds -r %s' to see holders." Verified in the VM tier (zfs 2.3.2,
	// kernel 6.1): this, not "dataset is busy", is what a hold gives.
	{regexp.MustCompile(`(?m)(: dataset is busy$|: pool or dataset is busy$|: pool is busy$|^cannot destroy snapshot \S+: it's being held\.)`), ErrBusy},
}

// classify returns the sentinel stderr implies, or nil.
func classify(stderr []byte) error {
	for _, r := range stderrRules {
		if r.re.Match(stderr) {
			return r.err
		}
	}
	return nil
}

func newCommandError(binary string, args []string, dataset string, stderr []byte, cause error) *CommandError {
	e := &CommandError{
		Binary:  binary,
		Args:    append([]string(nil), args...),
		Dataset: dataset,
		Stderr:  string(stderr),
		Cause:   cause,
	}
	switch {
	case isNotFound(cause):
		e.Err = ErrZFSNotInstalled
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		// The cause already answers errors.Is for the context error.
	default:
		e.Err = classify(stderr)
	}
	return e
}

// Explain says what to do about environment failures of zfs(8)
// ([ErrZFSNotInstalled], [ErrNoModule], [ErrPermission]); side ("",
// "receiver host1: ") says where it happened and prefixes any error.
func Explain(side string, err error) error {
	switch {
	case errors.Is(err, ErrZFSNotInstalled):
		return fmt.Errorf("%szfs is not installed (no zfs program; install the OpenZFS userland, zfsutils-linux on Debian): %w", side, err)
	case errors.Is(err, ErrNoModule):
		return fmt.Errorf("%sthe zfs kernel module is not loaded (modprobe zfs, as root): %w", side, err)
	case errors.Is(err, ErrPermission):
		return fmt.Errorf("%szfs needs root or delegated permissions (zfs allow): %w", side, err)
	}
	if side != "" {
		return fmt.Errorf("%s%w", side, err)
	}
	return err
}
