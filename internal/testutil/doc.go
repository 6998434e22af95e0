// Package testutil holds helpers shared by tests only: kernel-tier skips and
// scratch devices.
package testutil
