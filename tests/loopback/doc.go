// Package loopback holds end-to-end tests of the dmsnap binary on real
// kernels: host-side Go tests that boot the test VM (tests/vmrun) with
// scripts driving bin/dmsnap, and check what survives a reboot. They run
// only with DMSNAP_VM_TESTS=1 (make test-vm builds bin/dmsnap and
// .cache/bin/vmrun first). Image files live under the repository's
// .cache/loopback/, which the runner shares read-write with every boot,
// so the second boot sees exactly what the first one wrote.
package loopback
