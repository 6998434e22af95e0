// Package sendstream reads the record headers of a `zfs send` stream
// (OpenZFS's DMU replay format, include/sys/zfs_ioctl.h) without zfs(8):
// it walks DRR_BEGIN ... DRR_END, verifies the running fletcher-4
// checksum every record carries, skips every payload through a fixed
// buffer, and returns which byte ranges of each dataset's objects the
// stream writes, frees or redacts. For a zvol the data lives in object 1
// (ZVOL_OBJ, include/sys/zvol.h), so [Substream.Ranges] of [ZvolObject]
// is the set of blocks an incremental stream changes: what a
// differential restore has to copy back.
//
// It owns no process and no file: the caller runs `zfs send` and hands
// the stream in as an io.Reader. Stdlib only.
//
// Hazards: the stream is untrusted input. Every length is bounded before
// it is used (see [Limits] in format.go), nothing is allocated by a length
// the stream claims, and a payload is never held in memory. Byte-swapped
// streams (written on a big-endian host) are refused with
// [ErrByteSwapped]; dedup streams (DRR_WRITE_BYREF, removed from OpenZFS
// 2.2's sender) with [ErrUnsupported]. The ranges of a stream that was
// cut short are not returned: only a stream that reached its final
// DRR_END is a complete description of a change.
package sendstream
