// Package lock holds advisory file locks that serialise dmsnap processes:
// one writer per pool (exclusive), any number of readers (shared).
//
// Locks are flock(2) locks on files under [DefaultDir], one per pool. The
// kernel drops a lock when its file is closed or the process dies, so a
// crashed dmsnap never leaves a stale lock behind. Lock files are never
// removed: removing one while another process waits on it would let two
// writers in.
package lock
