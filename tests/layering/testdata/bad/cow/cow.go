// Package cow breaks two rules: it imports unsafe, and a package of the
// CLI.
package cow

import (
	"unsafe"

	_ "example.com/bad/cmd/tool"
)

var Size = unsafe.Sizeof(0)
