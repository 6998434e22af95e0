package lvm

import "github.com/dmsnap/dmsnap/dm"

// *dm.Client is the production Kernel.
var _ Kernel = (*dm.Client)(nil)
