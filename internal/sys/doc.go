// Package sys is the raw kernel ABI of dmsnap: device-mapper ioctl buffers
// (struct dm_ioctl, dm_target_spec, dm_name_list, ...), loop-device ioctls,
// device-node helpers and errno wrapping. It is the only package that
// imports golang.org/x/sys/unix and unsafe; everything above it works with
// typed Go values.
//
// Layout: the pure encoders and decoders of the DM payloads (dm.go) work on
// []byte and run on every OS, so they are unit-tested on any host. The
// ioctl calls themselves live in *_linux.go; *_other.go returns
// [errors.ErrUnsupported].
//
// Errors: every failed system call returns an error whose only useful
// operation is errors.Is against a syscall.Errno (or the E* values
// re-exported here). Callers never compare errors with ==.
//
// Lifecycle hazards: [Control] owns an open /dev/mapper/control descriptor
// and must be closed; its Close is idempotent. A DM reply buffer is only
// valid until the next call that reuses it; [Control.Do] therefore
// allocates a new buffer per call.
package sys
