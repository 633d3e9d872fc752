#!/bin/sh
# Post-image hook of kios_aarch64_uefi_defconfig, run before genimage: the
# kiOS GRUB configuration replaces Buildroot's default one on the ESP.
# $1 is the images directory.
set -eu

: "${BR2_EXTERNAL_KIOS_PATH:?is unset: run from Buildroot with BR2_EXTERNAL pointing at kiOS buildroot-overlay/}"
install -m 0644 "$BR2_EXTERNAL_KIOS_PATH/board/kios/aarch64-uefi/grub.cfg" \
	"$1/efi-part/EFI/BOOT/grub.cfg"
