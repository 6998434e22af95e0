package zfs

import (
	"errors"
	"testing"
)

func TestClassifyStderr(t *testing.T) {
	for _, tc := range []struct {
		file string
		want error
	}{
		{"zfs-2.3.2-stderr-list-missing.txt", ErrDatasetNotFound},
		{"zfs-2.3.2-stderr-get-missing.txt", ErrDatasetNotFound},
		{"zfs-2.3.2-stderr-create-nopool.txt", ErrDatasetNotFound},
		// A cut stream: the caller reads receive_resume_token instead.
		{"zfs-2.3.2-stderr-receive-cut.txt", nil},
		{"zfs-2.3.2-stderr-zpool-missing.txt", ErrDatasetNotFound},
		{"zfs-2.3.2-stderr-destroy-missing-snapshot.txt", ErrDatasetNotFound},
		{"zfs-2.3.2-stderr-destroy-missing-bookmark.txt", ErrDatasetNotFound},
		{"zfs-2.3.2-stderr-send-base-missing.txt", ErrDatasetNotFound},
		{"zfs-2.3.2-stderr-create-exists.txt", ErrExists},
		{"zfs-2.3.2-stderr-snapshot-exists.txt", ErrExists},
		{"zfs-2.3.2-stderr-bookmark-exists.txt", ErrExists},
		{"zfs-2.3.2-stderr-receive-exists.txt", ErrExists},
		{"zfs-2.3.2-stderr-receive-has-snapshots.txt", ErrExists},
		{"zfs-2.3.2-stderr-destroy-busy.txt", ErrBusy},
		{"zfs-2.3.2-stderr-receive-mismatch.txt", ErrIncrementalMismatch},
		{"zfs-2.3.2-stderr-receive-modified.txt", ErrDestinationModified},
		{"zfs-2.3.2-stderr-send-t-corrupt.txt", ErrResumeTokenInvalid},
		{"zfs-2.3.2-stderr-send-t-gone.txt", ErrResumeTokenInvalid},
		{"zfs-2.3.2-stderr-not-root.txt", ErrPermission},
		{"zfs-2.3.2-stderr-create-permission.txt", ErrPermission},
		{"zfs-2.3.2-version-nomodule-stderr.txt", ErrNoModule},
		{"zfs-2.3.2-V-nomodule-stderr.txt", ErrNoModule},
		{"zfs-2.1.11-version-j-stderr.txt", nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got := classify([]byte(readTestdata(t, tc.file)))
			if got != tc.want {
				t.Errorf("classify = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestClassifyNoFalsePositives: texts that mention the key phrases in a
// different role must not be classified.
func TestClassifyNoFalsePositives(t *testing.T) {
	for _, s := range []string{
		"",
		"internal error: unable to open /dev/zfs?\n",
		"cannot open 'tank/dataset does not exist': invalid character\n",
		"warning: pool is busy resilvering, this is fine\n",
	} {
		if got := classify([]byte(s)); got != nil {
			t.Errorf("classify(%q) = %v, want nil", s, got)
		}
	}
}

func TestCommandErrorUnwrap(t *testing.T) {
	e := newCommandError("zfs", []string{"destroy", "x@y"}, "x@y", []byte("cannot destroy 'x@y': dataset is busy\n"), errExit1)
	if !errors.Is(e, ErrBusy) || !errors.Is(e, errExit1) || errors.Is(e, ErrDatasetNotFound) {
		t.Errorf("errors.Is wrong for %v", e)
	}
	e = newCommandError("zfs", []string{"list"}, "", nil, errExit1)
	if e.Err != nil || e.Error() != "zfs list: exit status 1" {
		t.Errorf("unclassified error %q (Err %v)", e.Error(), e.Err)
	}
}
