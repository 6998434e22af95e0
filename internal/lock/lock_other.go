//go:build !unix

package lock

import "os"

func flock(*os.File, Mode) error { return ErrNotSupported }
