#!/bin/sh
# Post-image hook of kios_rpi4_defconfig, run before genimage: the card's
# config.txt and cmdline.txt are this directory's, the files
# `cargo kios build --board rpi4` writes, copied as they are to where
# genimage.cfg takes them from (the defconfig keeps the rpi-firmware
# package from installing its own). $1 is the images directory.
set -eu

: "${BR2_EXTERNAL_KIOS_PATH:?is unset: run from Buildroot with BR2_EXTERNAL pointing at kiOS buildroot-overlay/}"
install -D -m 0644 "$BR2_EXTERNAL_KIOS_PATH/board/kios/rpi4/config.txt" "$1/rpi-firmware/config.txt"
install -D -m 0644 "$BR2_EXTERNAL_KIOS_PATH/board/kios/rpi4/cmdline.txt" "$1/rpi-firmware/cmdline.txt"
