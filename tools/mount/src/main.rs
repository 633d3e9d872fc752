//! `/bin/mount` and `/bin/umount` on a kiOS node (one binary, chosen by
//! argv[0]): the kubelet runs them for every tmpfs volume (Secrets,
//! projected service-account tokens, memory emptyDirs) and bind mount.
//! The library (`kios_mount`) plans the calls and words the outcome;
//! this file only makes the calls and writes the words to stderr.
//!
//! A static musl executable (see .cargo/config.toml); built for the host
//! (`cargo clippy --all-targets`, `cargo test --workspace`) the bin is an
//! empty program, as the init's is.
#![cfg_attr(target_env = "musl", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_env = "musl")]
mini_libc_free::entry!(node::main);

#[cfg(not(target_env = "musl"))]
fn main() {}

#[cfg(target_env = "musl")]
mod node {
    use core::ffi::CStr;

    use kios_mount::mount::MountPlan;
    use kios_mount::umount::UmountPlan;
    use kios_mount::{exit, message, mount, umount, Parsed, Text, Tool};
    use mini_libc_free::{kmsg, process};
    use rustix::io::Errno;
    use rustix::mount::{MountFlags, UnmountFlags};

    pub fn main() -> ! {
        let mut argv: [&CStr; process::MAX_EXEC_ARGS] = [c""; process::MAX_EXEC_ARGS];
        let mut count = 0;
        for arg in process::args() {
            if count == argv.len() {
                break;
            }
            argv[count] = arg;
            count += 1;
        }
        let tool = Tool::from_argv0(argv[0].to_bytes());
        let args = &argv[1.min(count)..count];
        let mut out = Text::new();
        let code = if process::arg_count() > argv.len() {
            message::usage(&mut out, tool, &kios_mount::args::UsageError::BadUsage)
        } else {
            match tool {
                Tool::Mount => match mount::parse(args) {
                    Ok(Parsed::Run(plan)) => run_mount(&plan, &mut out),
                    Ok(asked) => answer(asked, tool, &mut out),
                    Err(error) => message::usage(&mut out, tool, &error),
                },
                Tool::Umount => match umount::parse(args) {
                    Ok(Parsed::Run(plan)) => run_umount(&plan, &mut out),
                    Ok(asked) => answer(asked, tool, &mut out),
                    Err(error) => message::usage(&mut out, tool, &error),
                },
            }
        };
        // Before /dev/kmsg is opened (never, here) kmsg's descriptor is fd 2.
        let _ = rustix::io::write(kmsg::fd(), out.as_bytes());
        process::exit(code)
    }

    fn answer<P>(asked: Parsed<P>, tool: Tool, out: &mut Text) -> i32 {
        match asked {
            Parsed::Help => message::help(out, tool),
            Parsed::Version => message::version(out, tool),
            Parsed::Run(_) => {}
        }
        exit::SUCCESS
    }

    fn run_mount(plan: &MountPlan<'_>, out: &mut Text) -> i32 {
        if plan.fake {
            return exit::SUCCESS;
        }
        for call in plan.calls() {
            if let Err(errno) = rustix::mount::mount(
                call.source,
                call.target,
                call.fstype,
                MountFlags::from_bits_retain(call.flags),
                call.data,
            ) {
                let target_exists = rustix::fs::stat(plan.target).is_ok();
                return message::mount_failed(out, plan, raw(errno), target_exists);
            }
        }
        exit::SUCCESS
    }

    fn run_umount(plan: &UmountPlan<'_>, out: &mut Text) -> i32 {
        let flags = UnmountFlags::from_bits_retain(plan.flags);
        let mut code = exit::SUCCESS;
        for target in plan.targets() {
            if let Err(errno) = rustix::mount::unmount(target, flags) {
                code = message::umount_failed(out, target, raw(errno), plan.quiet);
            }
        }
        code
    }

    fn raw(errno: Errno) -> u32 {
        errno.raw_os_error().unsigned_abs()
    }
}
