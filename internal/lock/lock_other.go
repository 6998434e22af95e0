//go:build !unix

package lock

import "os"

func flock(*os.File, Mode) error { return ErrNotSupported }

const oNoFollow = 0

func isSymlinkErr(error) bool { return false }

func fileOwner(os.FileInfo) (int, bool) { return 0, false }
