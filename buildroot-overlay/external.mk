# Every kiOS package: package/<name>/<name>.mk.
include $(sort $(wildcard $(BR2_EXTERNAL_KIOS_PATH)/package/*/*.mk))

# The kiOS pod network (etc/cni/net.d/10-kios.conflist) takes its
# addresses from the host-local IPAM plugin, which Buildroot's cni-plugins
# package does not build. Buildroot reads this file after its own
# packages, and the package's commands expand the list when they run.
ifeq ($(filter plugins/ipam/host-local,$(CNI_PLUGINS_BUILD_TARGETS)),)
CNI_PLUGINS_BUILD_TARGETS += plugins/ipam/host-local
endif
