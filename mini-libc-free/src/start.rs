//! `_start`: the first instruction the kernel runs in our process.

use crate::process;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    // Mark the outermost frame for debuggers and unwinders.
    "xor ebp, ebp",
    // The kernel leaves argc at the stack pointer, then argv, NULL, envp, NULL, auxv.
    "mov rdi, rsp",
    // The SysV ABI wants a 16-byte aligned stack before `call`.
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym start_rust,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start,%function",
    "_start:",
    // Mark the outermost frame: no caller, no return address.
    "mov x29, xzr",
    "mov x30, xzr",
    // argc sits at the stack pointer, which the kernel leaves 16-byte aligned.
    "mov x0, sp",
    "bl {entry}",
    "udf #0",
    entry = sym start_rust,
);

extern "Rust" {
    /// Defined by the binary through `mini_libc_free::entry!`.
    fn __mini_libc_free_main() -> !;
}

/// Records argv and envp, hands auxv to rustix, then runs the binary's main.
///
/// # Safety
/// Called once, from `_start`, with the stack pointer the kernel set up.
unsafe extern "C" fn start_rust(stack: *mut usize) -> ! {
    // SAFETY: the process-start ABI puts argc at the initial stack pointer,
    // followed by argc argv pointers, a NULL, the envp pointers, a NULL and
    // the auxv; all of it stays valid for the life of the process.
    let (argc, argv, envp) = unsafe {
        let argc = *stack;
        let argv = stack.add(1).cast::<*mut u8>();
        (argc, argv, argv.add(argc + 1))
    };
    // SAFETY: envp is the original environment block from the kernel, and no
    // rustix function has been called yet.
    unsafe { rustix::param::init(envp) };
    process::record_start(argc, argv, envp);
    // SAFETY: `entry!` defines this symbol with exactly this signature.
    unsafe { __mini_libc_free_main() }
}
