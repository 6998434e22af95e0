#!/usr/bin/env bash
# Builds the OpenZFS kernel modules for the VM kernel of the ZFS test tier
# and caches them as .cache/zfs/<kernel release>-<zfs version>/{spl,zfs}.ko.
#
# Steps (each timed; idempotent, run as root):
#  1. the VM kernel release ($KV) from `vmrun --kernel bookworm --setup`;
#  2. a private apt sources entry, /etc/apt/sources.list.d/dmsnap-zfs.sources,
#     for bookworm contrib and bookworm-backports main contrib, written at
#     run time from the URI and Signed-By of the machine's own
#     debian.sources (this repository names no mirror);
#  3. apt-get install --no-install-recommends of zfs-dkms, zfsutils-linux and
#     its libraries from bookworm-backports, dkms and linux-headers-$KV
#     (skipped when all are installed at the wanted versions);
#  4. dkms build + install of zfs for $KV (about 6-7 min on 2 cores),
#     skipped when the cache directory for $KV and the zfs version exists.
#
# Prints the module directory on the last line of stdout. The userland
# binaries installed here are the ones the guest runs (vmrun shares the host
# root read-only). See docs/zfs.md, "Real-ZFS tier".
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD
cache=$root/.cache/zfs
vmrun=${VMRUN:-$root/.cache/bin/vmrun}
sources_out=/etc/apt/sources.list.d/dmsnap-zfs.sources
zfs_pkgs=(zfs-dkms zfsutils-linux libzfs6linux libzpool6linux libnvpair3linux libuutil3linux)

die() { echo "zfs-setup: $*" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$2" -v b="$(now)" -v s="$1" 'BEGIN { printf "zfs-setup: %s took %.1fs\n", s, b - a }'; }
installed() { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3 == "installed" { print $4 }'; }

[ -x "$vmrun" ] || die "$vmrun missing: run 'make vmrun' first"

# 1. VM kernel release.
t=$(now)
KV=$("$vmrun" --kernel bookworm --setup) || die "vmrun --kernel bookworm --setup failed"
[ -n "$KV" ] || die "vmrun printed no kernel release"
took "kernel release $KV" "$t"

# Fast path (no root, no network): modules cached for this kernel and the
# installed zfs-dkms version, and the userland at that version.
# DMSNAP_ZFS_REFRESH=1 looks for a newer bookworm-backports version.
have=$(installed zfs-dkms)
if [ "${DMSNAP_ZFS_REFRESH:-0}" != 1 ] && [ -n "$have" ] && [ "$(installed zfsutils-linux)" = "$have" ] &&
	[ -s "$cache/$KV-$have/spl.ko" ] && [ -s "$cache/$KV-$have/zfs.ko" ]; then
	echo "zfs-setup: cached $cache/$KV-$have"
	echo "$cache/$KV-$have"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || die "modules for $KV not cached; run as root (apt-get install, dkms)"

# 2. Private sources entry derived from the machine's Debian sources.
# Reads the first deb822 stanza whose Suites list plain "bookworm".
machine_sources() {
	local f=/etc/apt/sources.list.d/debian.sources
	if [ -r "$f" ]; then
		awk '
			function flush() { if (suites ~ /(^| )bookworm( |$)/ && uri != "" && !done) { print uri; print key; done = 1 } uri = ""; key = ""; suites = "" }
			/^[ \t]*$/ { flush(); next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { $1 = ""; suites = $0 " " }
			/^Signed-By:/ { key = $2 }
			END { flush() }
		' "$f"
		return
	fi
	# One-line format fallback: deb [signed-by=KEY] URI bookworm main.
	awk '$1 == "deb" {
		key = ""; i = 2
		if ($2 ~ /^\[/) { for (; i <= NF && $i !~ /\]$/; i++) if ($i ~ /signed-by=/) key = $i; if ($i ~ /signed-by=/) key = $i; i++ }
		if ($(i + 1) == "bookworm") { sub(/.*signed-by=/, "", key); sub(/\]$/, "", key); print $i; print key; exit }
	}' /etc/apt/sources.list 2>/dev/null
}

t=$(now)
mapfile -t src < <(machine_sources)
uri=${src[0]:-}
key=${src[1]:-/usr/share/keyrings/debian-archive-keyring.gpg}
[ -n "$uri" ] || die "no bookworm entry in the machine's apt sources"
want=$(printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: contrib\nSigned-By: %s\n\nTypes: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main contrib\nSigned-By: %s\n' \
	"$uri" "$key" "$uri" "$key")
fresh=0
if [ "$(cat "$sources_out" 2>/dev/null)" != "$want" ]; then
	printf '%s\n' "$want" >"$sources_out.tmp" && mv "$sources_out.tmp" "$sources_out"
	fresh=1
fi
took "apt sources ($sources_out)" "$t"

# 3. Packages. The candidate from bookworm-backports decides the version.
export DEBIAN_FRONTEND=noninteractive
t=$(now)
if [ "$fresh" -eq 1 ] || ! apt-cache policy zfs-dkms 2>/dev/null | grep -q backports; then
	apt-get update -qq -o DPkg::Lock::Timeout=600 || die "apt-get update failed"
fi
bpo_version() { apt-cache madison "$1" | awk -F'|' '$3 ~ /bookworm-backports/ { gsub(/ /, "", $2); print $2; exit }'; }
zver_full=$(bpo_version zfs-dkms)
[ -n "$zver_full" ] || die "zfs-dkms not found in bookworm-backports"
need=()
for p in "${zfs_pkgs[@]}"; do
	[ "$(installed "$p")" = "$zver_full" ] || need+=("$p/bookworm-backports")
done
[ -n "$(installed dkms)" ] || need+=(dkms)
[ -n "$(installed "linux-headers-$KV")" ] || need+=("linux-headers-$KV")
if [ ${#need[@]} -gt 0 ]; then
	echo "zfs-setup: installing ${need[*]}"
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null ||
		die "apt-get install ${need[*]} failed"
fi
took "packages (zfs $zver_full)" "$t"

# 4. Modules, cached by kernel release and zfs version.
zver=${zver_full%%-*} # 2.3.2-2~bpo12+2 -> 2.3.2 (the dkms module version)
out=$cache/$KV-$zver_full
if [ -s "$out/spl.ko" ] && [ -s "$out/zfs.ko" ]; then
	echo "zfs-setup: cached $out"
else
	t=$(now)
	# zfs-dkms's postinst may already have built it (headers installed in
	# the same transaction); dkms status then says built or installed.
	state=$(dkms status -m zfs -v "$zver" -k "$KV" 2>/dev/null || true)
	case $state in
	*installed*) echo "zfs-setup: dkms: $state" ;;
	*built*) dkms install -m zfs -v "$zver" -k "$KV" >/dev/null || die "dkms install -m zfs -v $zver -k $KV failed" ;;
	*)
		dkms build -m zfs -v "$zver" -k "$KV" >/dev/null || die "dkms build -m zfs -v $zver -k $KV failed (see /var/lib/dkms/zfs/$zver/build/make.log)"
		took "dkms build zfs $zver for $KV" "$t"
		t=$(now)
		dkms install -m zfs -v "$zver" -k "$KV" >/dev/null || die "dkms install -m zfs -v $zver -k $KV failed"
		;;
	esac
	took "dkms install" "$t"
	mods=/lib/modules/$KV/updates/dkms
	for m in spl zfs; do
		[ -s "$mods/$m.ko" ] || die "$mods/$m.ko missing after dkms install"
	done
	mkdir -p "$out.tmp"
	cp "$mods/spl.ko" "$mods/zfs.ko" "$out.tmp/"
	rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
