// Package torture is the randomized crash test of the VM tier: random
// mutating dmsnap commands (lv create/remove/extend/rename, snapshot
// create/remove/extend/rename, merge) on a pool of two image files, each
// SIGKILLed at a random moment of its run. After half of the kills the VM
// is powered off at once (sysrq o: the kernel's device-mapper state is
// lost) and a fresh boot continues on the same images; after the other
// half recovery happens in the same boot. After each kill `activate` must
// exit 0 and then: no device is suspended, the pool is exactly the old or
// the new state of the command (its volumes and snapshots with their sizes
// and origins), every volume and snapshot holds its modelled content
// (sha256 kept by the test), `cow verify` passes for every snapshot, and
// free plus used extents equal the total.
//
// TestTorture (host side) boots the VM again and again, running this
// package's test binary as the guest (TestTortureGuest), which keeps its
// model and the iteration it is at in a state file beside the images, so
// a powered-off boot continues where it stopped. DMSNAP_TORTURE_ITERATIONS
// (default 20; `make torture` runs 200) and DMSNAP_TORTURE_SEED (printed at
// the start and on failure) replay a run: iteration i draws everything from
// a generator seeded by (seed, i). The kill moments still depend on how
// fast the VM runs, so a replay takes the same commands and delays, not
// necessarily the same interleaving.
package torture
