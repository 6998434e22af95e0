#!/usr/bin/env bash
# Runs scripts/demo.sh natively when this host has device-mapper and we are
# root, otherwise inside the test VM (tests/vmrun) on Debian's kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
if [ "$(id -u)" -eq 0 ] && [ -e /dev/mapper/control ]; then
	echo "demo: running natively (this host has device-mapper)" >&2
	exec bash scripts/demo.sh
fi
echo "demo: this host has no device-mapper; running inside a QEMU VM with Debian's kernel" >&2
exec .cache/bin/vmrun --kernel "${DMSNAP_VM_KERNEL:-bookworm}" --timeout 600s --env "PATH=$PATH" bash scripts/demo.sh
