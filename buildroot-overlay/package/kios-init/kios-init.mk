################################################################################
#
# kios-init
#
################################################################################

# The cargo workspace is the checkout this external tree lives in.
KIOS_INIT_SITE = $(BR2_EXTERNAL_KIOS_PATH)/..
KIOS_INIT_SITE_METHOD = local
# The checkout's own build output is not source.
KIOS_INIT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = --exclude=/target
# cargo runs in init/, so it still reads the workspace's
# .cargo/config.toml (rust-lld, static, no C runtime) one level up.
KIOS_INIT_SUBDIR = init
KIOS_INIT_CARGO_BUILD_OPTS = --bin kios-init

# Buildroot links the target with its gcc; the init links with the
# linker .cargo/config.toml names. Its size budget needs the workspace's
# release profile (Cargo.toml), which Buildroot's generic one overrides.
KIOS_INIT_CARGO_ENV = \
	CARGO_TARGET_$(call UPPERCASE,$(RUSTC_TARGET_NAME))_LINKER=rust-lld \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
	CARGO_PROFILE_RELEASE_LTO=true \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1

# Buildroot vendors crates in its download step, which a local package
# skips: fetch them into Buildroot's cargo home (under DL_DIR, with the
# other downloads) for the infrastructure's --offline build.
define KIOS_INIT_FETCH_CRATES
	cd $(KIOS_INIT_SRCDIR) && \
		$(TARGET_MAKE_ENV) $(PKG_CARGO_ENV) \
		cargo fetch --locked --manifest-path Cargo.toml
endef
KIOS_INIT_PRE_CONFIGURE_HOOKS += KIOS_INIT_FETCH_CRATES

# The infrastructure builds the dev profile when BR2_ENABLE_DEBUG is set.
KIOS_INIT_PROFILE_DIR = $(if $(BR2_ENABLE_DEBUG),debug,release)

define KIOS_INIT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(KIOS_INIT_PROFILE_DIR)/kios-init \
		$(TARGET_DIR)/bin/init
endef

$(eval $(cargo-package))
