#!/bin/sh
# Post-build hook of kios_aarch64_uefi_defconfig and kios_rpi4_defconfig
# (nothing in it depends on the board). $1 is the target directory (the
# genimage arguments that follow are for post-image).
set -eu

target_dir=$1
: "${BR2_EXTERNAL_KIOS_PATH:?is unset: run from Buildroot with BR2_EXTERNAL pointing at kiOS buildroot-overlay/}"

fail() {
	echo "kiOS post-build: $*" >&2
	exit 1
}

# The kiOS /etc, the same files `cargo kios` puts into its images. rsync
# replaces the skeleton's symlinks (resolv.conf) instead of writing
# through them.
rsync -a --chmod=u=rwX,go=rX "$BR2_EXTERNAL_KIOS_PATH/etc/" "$target_dir/etc/"

# Buildroot has no kubelet package: the kubelet is a prebuilt binary.
if [ -z "${KIOS_KUBELET:-}" ]; then
	fail "set KIOS_KUBELET to a static arm64 kubelet (see $BR2_EXTERNAL_KIOS_PATH/README.md)"
fi
if ! readelf -h "$KIOS_KUBELET" 2>/dev/null | grep -q 'Machine:.*AArch64'; then
	fail "KIOS_KUBELET=$KIOS_KUBELET is not an arm64 ELF executable"
fi
# The image's only C library is musl: a kubelet linked against glibc
# would not start.
if readelf -l "$KIOS_KUBELET" | grep -q 'program interpreter'; then
	fail "KIOS_KUBELET=$KIOS_KUBELET is dynamically linked; build it static (CGO_ENABLED=0)"
fi
install -D -m 0755 "$KIOS_KUBELET" "$target_dir/bin/kubelet"

# Every CNI plugin the shipped network configuration names.
for plugin in $(grep -ho '"type": *"[^"]*"' "$BR2_EXTERNAL_KIOS_PATH/etc/cni/net.d/"*.conflist | cut -d'"' -f4); do
	if [ ! -x "$target_dir/opt/cni/bin/$plugin" ]; then
		fail "the CNI configuration needs plugin $plugin, which is not in /opt/cni/bin"
	fi
done

# The kernel runs /init from an initramfs. Pointing it at the kiOS init
# also keeps Buildroot from adding its shell-script /init: the node has
# no shell.
ln -sfn bin/init "$target_dir/init"
