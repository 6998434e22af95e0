// Package lock holds advisory file locks that serialise dmsnap processes:
// one writer per pool (exclusive), any number of readers (shared).
//
// Locks are flock(2) locks on files under [DefaultDir], one per pool. The
// kernel drops a lock when its file is closed or the process dies, so a
// crashed dmsnap never leaves a stale lock behind. Lock files are never
// removed: removing one while another process waits on it would let two
// writers in.
//
// Hazard: a lock directory another user can write to lets that user swap
// a lock file for a symbolic link to any file dmsnap would then create or
// lock. Lock files are opened with O_NOFOLLOW, and [CheckDir] (applied by
// TryAcquire, and by the CLI to its config directory) refuses directories
// not owned by root or the effective user, or writable by group or others.
package lock
