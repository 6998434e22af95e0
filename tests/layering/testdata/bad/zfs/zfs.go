// Package zfs breaks the stdlib-only rule and points upwards.
package zfs

import _ "example.com/bad/dm"
