// Package blockdev reads and writes block devices the way dmsnap must:
// reads past the page cache (O_DIRECT, which a COW store or a frozen
// snapshot needs, since the kernel writes them behind a stale cache),
// writes that deallocate zero ranges, and the sysfs facts about a device
// (its number, whether it is a device-mapper device, what holds it).
//
// Hazards: a block device opened strictly never falls back to buffered
// reads, because a buffered read can silently miss what the kernel wrote;
// a lax one falls back and says so in [Reader.Direct].
//
// Imports internal/sys only.
package blockdev
