// Package bench is the comparison harness of `make bench-compare`: one VM
// boot per kernel drives the real dmsnap binary (bin/dmsnap, `make build`)
// and the reference tools (LVM2 from vmrun --tools lvm2, dd) side by side
// and prints one table of ratios, figure | dmsnap | anchor | ratio, which
// it also writes as Markdown to $DMSNAP_BENCH_OUT (docs/perf.md keeps the
// latest one). The absolute times under QEMU TCG on a shared host mean
// little; the ratios, measured in the same boot, are the figures.
//
// The table code is plain Go, unit-tested on the host; the measurements
// are BenchmarkCompare in compare_kernel_test.go, which runs only in the
// guest.
package bench
