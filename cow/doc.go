// Package cow reads and writes the on-disk format of dm-snapshot's
// persistent exception store (table store types P and PO) in user space,
// and turns a store into maps of changed origin chunks.
//
// It owns the format only: it works on io.ReaderAt and io.WriterAt, uses
// the standard library alone and makes no system calls. Opening devices,
// sizing them and bypassing the page cache are the caller's job.
//
// # Format
//
// The format is defined by drivers/md/dm-snap-persistent.c. With a chunk
// size of C sectors (B = 512*C bytes) and E = B/16 records per area:
//
//	chunk 0                 header: magic "SnAp", valid, version 1, C; rest zero
//	chunk 1 + (E+1)*i       metadata area i: E records {old_chunk, new_chunk},
//	                        16 bytes each, little-endian
//	the E chunks after it   data chunks allocated while area i was current
//
// The table ends at the first record whose new_chunk is 0; a full area
// continues in the next one. All integers are little-endian. [Decoder]
// follows the kernel's read_exceptions exactly, so [State.Usage] equals the
// "<allocated>/<total> <metadata>" numbers of the kernel's status line for
// the same store, and [Writer] allocates and commits exactly as
// persistent_prepare_exception and persistent_commit_exception do, so the
// kernel accepts what it writes and [Encode] reproduces kernel-written
// metadata byte for byte.
//
// The tests check the status numbers seen on real kernels (6.1 and 6.12)
// for a 16 MiB COW with C=8: fresh, and after 1 MiB and 8 MiB of
// sequential origin writes (16/32768 16, 2072/32768 24, 16464/32768 80).
// Golden images captured from real kernels live in
// testdata/ as <kernel>-<scenario>.img.gz with a .json expectation.
//
// # Reading a store that is in use
//
// Reading a COW device while its snapshot is active gives a prefix-consistent
// view. For each commit the kernel writes the copied data chunks first and
// then the area chunk with REQ_PREFLUSH|REQ_FUA (zeroing the next area
// before writing one that became full), and releases the held origin writes
// only after that. So every record a reader sees has its data on disk and
// maps an origin chunk whose old contents are in that data chunk. Records
// committed after the read are missed: the result is a subset of the
// changes made by the time the read ends, never a superset. To get every
// change, read after the snapshot is frozen (its origin suspended or the
// snapshot deactivated), or re-read and take the union. During a
// snapshot-merge the kernel clears records from the end once their data is
// copied back, so a live read then sees fewer records than the store had.
//
// The reader must not see stale page-cache contents: the kernel writes the
// COW through dm-bufio and dm-io below the page cache of the COW block
// device. Open the device with O_DIRECT, or flush its buffers (BLKFLSBUF)
// before reading.
//
// # Writing
//
// [Format], [Zero], [Invalidate], [Writer] and [Encode] write a COW device
// offline. They must never be used on a COW device that a loaded table
// uses: the kernel keeps the current area in memory and would overwrite
// them, or they would corrupt the kernel's view.
package cow
