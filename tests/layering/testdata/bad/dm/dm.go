// Package dm imports lvm, which sits above it.
package dm

import _ "example.com/bad/lvm"
