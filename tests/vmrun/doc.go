// Command vmrun runs a program inside a QEMU guest booting a stock Debian
// kernel, so that tests can use a real device-mapper on hosts that have
// none. It is the engine of the kernel test tier:
//
//	go build -o .cache/bin/vmrun ./tests/vmrun
//	go test -exec ".cache/bin/vmrun --kernel bookworm --timeout 300s" ./dm/
//
// Usage: vmrun [flags] PROGRAM [ARGS...]. Flag parsing stops at the first
// non-flag argument, so go test's -test.* flags reach the program. Flags:
// --kernel bookworm|backports (default $DMSNAP_VM_KERNEL, else bookworm),
// --timeout (600s; accepts "300" or "5m"), --mem MiB (1024), --smp (1;
// more is slower under TCG), --env K=V (repeatable), --modules (extra
// modules by name, or .ko paths such as dkms-built spl.ko/zfs.ko; their
// dependencies are added), --tools zfs,lvm2 (Debian's OpenZFS userland with
// its module built for the kernel, LVM2's tools: unpacked under the cache,
// first in the guest's PATH and LD_LIBRARY_PATH), --share DIR (extra
// read-write share), --setup (prepare the cache, print the kernel release,
// no boot), --cached (exit 0 if kernel and tools are prepared, else 1),
// --kvm auto|on|off, --console FILE (keep the kernel console log), -v.
// --timeout bounds the guest's run, not the preparation.
//
// Exit status: the program's; 2 usage; 124 --timeout expired (qemu is
// killed, the console tail goes to stderr); 125 runner failure or a guest
// that reported no status (panic, OOM, /init failure; the last 60 console
// lines go to stderr); 130 interrupted.
//
// # Machine
//
// qemu-system-x86_64 with TCG (-cpu max), qboot firmware, -nodefaults, no
// display, -no-reboot, stdin /dev/null. The kernel is the uncompressed
// vmlinux booted through PVH, which saves the ~5 s the bzImage decompressor
// takes under TCG. --kvm auto uses KVM only when /dev/kvm opens and
// /proc/cpuinfo lists vmx or svm: a PVM-only KVM (no such flags) hangs
// stock kernels. Command line: console=ttyS0 panic=-1 loglevel=4
// cryptomgr.notests.
//
// # Guest protocol
//
// The initramfs is base.cpio (cached) followed by a per-run archive holding
// /init (busybox sh, generated), /vmrun/run.sh and any extra modules.
// /init mounts devtmpfs, proc and sysfs; insmods the modules in dependency
// order; mounts the host root (9p tag "hostroot", read-only, cache=loose,
// msize=512000) at /lower and an overlay of it with a tmpfs upper layer at
// /newroot; mounts a fresh devtmpfs (+devpts, shm), proc, sysfs and a
// fresh tmpfs /run in it (/tmp is the host's, through the overlay, so go
// test binaries are found, and writes stay in the guest); mounts each
// read-write share (tags share0..N) at its host path; then runs
// `chroot /newroot /bin/sh /run/vmrun/run.sh` with stdin /dev/null and
// stdout+stderr on /dev/ttyS1 (stty raw). run.sh cds to the caller's
// working directory and execs the program through `env -i` with exactly
// the guest environment: PATH (the host's), HOME=/root,
// DMSNAP_VM_KERNEL, GOCOVERDIR/GOFLAGS/GOTRACEBACK when set on the host,
// the --env values, and DMSNAP_IN_VM=1 (cannot be overridden).
//
// ttyS1 is connected to qemu's stdout; the runner copies it to its own
// stdout, dropping a '\r' that precedes '\n'. ttyS0, the kernel console,
// goes to the console file. When the program exits, /init writes
// "<2>@@VMRUN_EXIT=N@@" to /dev/kmsg (level 2 reaches the console
// synchronously), syncs and runs `poweroff -f`; the runner takes the last
// such marker from the console file as its exit status. An /init step that
// fails writes "@@VMRUN_FAIL=<step>@@" and powers off instead.
//
// Shared read-write at the same path: the working directory, the module
// root above it (the directory holding go.mod), $GOCOVERDIR if it is a
// directory, and each --share; nested duplicates are dropped.
//
// # Kernel cache
//
// The cache root is $DMSNAP_CACHE, else .cache/vm in the Go module holding
// the vmrun executable, else in the module holding the working directory:
//
//	lock                   flock(2) held while preparing
//	kernel-<flavour>       release last resolved for bookworm/backports
//	apt/                   private apt configuration and state
//	<release>/ready        "vmrun-cache-2" + package and version; written last
//	<release>/vmlinux      ELF kernel extracted from the bzImage (xz or zstd)
//	<release>/base.cpio    dirs, /dev/console, static busybox + applet links,
//	                       base modules under /modules
//	<release>/base.modules base module load order
//	<release>/root/        the unpacked linux-image package; .ko.xz are
//	                       decompressed, lib/modules/<release>/modules.dep
//	                       and vmrun.softdep are generated from .modinfo
//	tool-<name>            tools/ directory last prepared for zfs or lvm2
//	tools/<name>-<ver>/    ready (format, version, packages) and root/,
//	                       the unpacked packages (tools.go)
//	zfs/<release>-<ver>/   spl.ko, zfs.ko built from zfs-dkms for release
//	zfs/build-*.log        the last module build's configure and make output
//
// Preparation runs, as root, in a child in a private mount namespace where
// the host's /etc, /usr, /var, /opt and /boot are read-only (sandbox.go):
// it can write the cache, temporary files and Go's caches, nothing else.
// After preparing, what no pointer file names any more (an old kernel ABI,
// an old tool version, modules built for either) is pruned.
//
// A prepared kernel is reused through kernel-<flavour> without running apt,
// unless DMSNAP_VM_REFRESH=1. Preparation takes the lock, re-checks, then
// resolves linux-image-amd64 with apt-cache (bookworm: the newest of
// bookworm, -updates and -security; backports: Default-Release
// bookworm-backports) to its ABI package (linux-image-6.1.0-NN-amd64),
// runs `apt-get download` (after one apt-get update on failure), unpacks it
// with dpkg-deb -x into a temporary directory and renames that into place,
// so concurrent runners never see a partial kernel.
//
// The private apt configuration (Dir::Etc::SourceList/SourceParts,
// Dir::State::Lists/Status, Dir::Cache, preferences under apt/) leaves the
// machine's apt state alone. Its deb822 sources are written at run time
// from the URIs and Signed-By keyrings of the machine's own
// /etc/apt/sources.list.d/debian.sources (fallback /etc/apt/sources.list):
// suites bookworm, bookworm-updates and bookworm-backports from the main
// archive and bookworm-security from the security archive, components main
// and contrib. No mirror name is written in this repository.
//
// Base modules: dm-mod dm-bufio dm-snapshot dm-zero loop, then virtio_pci
// 9pnet_virtio 9p overlay; their dependencies (virtio_ring, netfs,
// fscache, ...) come from modules.dep because they differ between 6.1 and
// 6.12. The Debian package ships no modules.dep (its postinst runs depmod),
// so the runner generates it, in depmod's format, from each module's
// .modinfo "depends", and resolves "softdep pre:" names through module
// aliases (libcrc32c needs crc32c_generic; the guest has no modprobe).
//
// Host requirements: qemu-system-x86, busybox-static, apt, dpkg-deb, xz,
// zstd (6.12 kernels), gzip; for --tools zfs, gcc-12, make and strip.
package main
