#!/usr/bin/env bash
# Builds Gantry's test guest for the qemu driver from Debian packages and
# the repo's own sources, and prints the directory holding it:
#
#   scripts/build-vm-guest.sh [OUT_DIR]     # default: .cache/vm-guest
#
#   OUT_DIR/vmlinuz     the kernel of linux-image-cloud-amd64's current
#                       versioned package (apt-get download + dpkg -x, so
#                       no install hooks run and no root is needed)
#   OUT_DIR/initrd.img  an initramfs: /init is cmd/gantry-guest-init (a
#                       static Go program), plus the virtio network
#                       modules, virtio_blk (the job's disk, /dev/vda),
#                       and the ACPI button and evdev modules for
#                       a graceful power-down, each decompressed if the
#                       package ships them .ko.xz or .ko.zst
#   OUT_DIR/disk.qcow2  a small empty qcow2 disk for the image form of a job
#
# Boot it with: -kernel vmlinuz -initrd initrd.img -append "console=ttyS0"
# and a virtio-net-pci NIC on user-mode networking; the guest is
# 10.0.2.15/24 and serves HTTP on port 8080 (/, /healthz).
#
# Needs go, apt-get (with package lists: run `apt-get update` once),
# dpkg-deb, and qemu-img (qemu-utils). Running it again reuses what is
# built unless the init's sources changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/.cache/vm-guest}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The modules to load, in this order: each one's depends= come before it.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk button evdev)

stamp="$(cd "$root" && cat cmd/gantry-guest-init/*.go cmd/gantry-guest-init/mkinitramfs/*.go scripts/build-vm-guest.sh | sha256sum | cut -c1-16)"
if [[ -s "$out/vmlinuz" && -s "$out/initrd.img" && -s "$out/disk.qcow2" && "$(cat "$out/stamp" 2>/dev/null)" == "$stamp" ]]; then
	echo "$out"
	exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/gantry-vm-guest.XXXXXX")"
trap 'rm -rf "$work"' EXIT

pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
if [[ -z "$pkg" ]]; then
	echo "build-vm-guest: apt does not know linux-image-cloud-amd64; run apt-get update first" >&2
	exit 1
fi
(cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1) || {
	echo "build-vm-guest: apt-get download $pkg failed; run apt-get update and retry" >&2
	exit 1
}
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/pkg"
kver="$(ls "$work/pkg/lib/modules")"

args=()
for m in "${modules[@]}"; do
	f="$(find "$work/pkg/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)"
	if [[ -z "$f" ]]; then
		# Built into this kernel: nothing to load.
		continue
	fi
	case "$f" in
	*.ko.xz) xz -dc "$f" >"$work/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$work/$m.ko" ;;
	*) cp "$f" "$work/$m.ko" ;;
	esac
	echo "$m" >>"$work/modules.order"
	args+=("/lib/modules/$m.ko=$work/$m.ko")
done

(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -buildvcs=false \
	-ldflags='-s -w -buildid=' -o "$work/init" ./cmd/gantry-guest-init)
(cd "$root" && go build -o "$work/mkinitramfs" ./cmd/gantry-guest-init/mkinitramfs)
"$work/mkinitramfs" "$work/initrd.img" "/init=$work/init" "/modules.order=$work/modules.order" "${args[@]}"

cp "$work/pkg/boot/vmlinuz-$kver" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
rm -f "$out/disk.qcow2"
qemu-img create -q -f qcow2 "$out/disk.qcow2" 64M
echo "$pkg" >"$out/kernel-package"
echo "$stamp" >"$out/stamp"
echo "$out"
