//! The kiOS kernel's config fragments (`kernel/`): each option explained,
//! and (with the source package) every option honoured by Kconfig and the
//! committed resolved configs current. CI runs the second through
//! `cargo kios test`; it unpacks the kernel source but builds nothing.

use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::kernel::build::check_config;
use kios_tools::kernel::config::{arch_fragment, kernel_dir, read_requests};

#[test]
fn every_fragment_option_has_a_reason() {
    let workspace = Workspace::locate().expect("workspace");
    for arch in Arch::ALL {
        let fragments = [
            kernel_dir(&workspace).join("common.config"),
            arch_fragment(&workspace, arch),
        ];
        let requests = read_requests(&fragments).expect("reading the fragments");
        assert!(
            requests.contains_key("CONFIG_SMP"),
            "{arch}: the fragments do not ask for CONFIG_SMP"
        );
    }
}

#[test]
#[ignore = "unpacks the kernel source: run by cargo kios test"]
fn fragments_resolve_as_committed_for_both_arches() {
    let workspace = Workspace::locate().expect("workspace");
    let failures: Vec<String> = Arch::ALL
        .into_iter()
        .filter_map(|arch| {
            check_config(&workspace, arch)
                .err()
                .map(|error| format!("{arch}: {error:#}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
