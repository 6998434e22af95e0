// Package loop attaches regular files as loop block devices and detaches
// them again. A [Device] owns one open descriptor of its /dev/loopN and
// detaches on Close; with AutoClear the kernel also detaches at the last
// close, so a crashed process does not leak the binding.
//
// The package sits below dm: it reports device numbers as plain major and
// minor numbers and never builds tables.
package loop
