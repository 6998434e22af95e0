//go:build !linux

package sys

import "os"

// PunchHole is not supported outside Linux.
func PunchHole(*os.File, int64, int64) (supported bool, err error) { return false, nil }
