//! argv and envp, the standard streams, fork, execve and exit.

use core::ffi::CStr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use linux_raw_sys::general::{__NR_clone, __NR_execve, __NR_exit_group, __NR_kill, SIGCHLD};
use rustix::io::Errno;
use rustix::process::Pid;

use crate::syscall::{check, syscall4};

static ARGC: AtomicUsize = AtomicUsize::new(0);
static ARGV: AtomicPtr<*mut u8> = AtomicPtr::new(core::ptr::null_mut());
static ENVP: AtomicPtr<*mut u8> = AtomicPtr::new(core::ptr::null_mut());

/// A standard stream's descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    In = 0,
    Out = 1,
    Err = 2,
}

/// A descriptor of its own (close-on-exec, above 2) for a standard
/// stream: what a binary that was handed a socket or a pipe as stdin or
/// stdout reads and writes through. EBADF when the stream was not open.
pub fn dup_stdio(stream: Stdio) -> Result<rustix::fd::OwnedFd, Errno> {
    // SAFETY: the borrow lasts for this one fcntl and nothing here closes
    // the descriptor meanwhile; one that is not open makes the kernel
    // answer EBADF, which is returned.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(stream as i32) };
    rustix::io::fcntl_dupfd_cloexec(fd, 3)
}

/// The most argv (or envp) entries `execve` passes on.
pub const MAX_EXEC_ARGS: usize = 64;

// Called by `_start`, which only the static musl executables have.
#[cfg_attr(any(test, not(target_env = "musl")), allow(dead_code))]
pub(crate) fn record_start(argc: usize, argv: *mut *mut u8, envp: *mut *mut u8) {
    ARGC.store(argc, Ordering::Relaxed);
    ARGV.store(argv, Ordering::Relaxed);
    ENVP.store(envp, Ordering::Relaxed);
}

/// A NULL-terminated array of C strings from the process-start block.
pub struct CStrArray {
    next: *const *mut u8,
}

impl Iterator for CStrArray {
    type Item = &'static CStr;

    fn next(&mut self) -> Option<&'static CStr> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: `next` points into the argv or envp array the kernel laid out
        // at process start (recorded by `_start`), which ends with NULL and is
        // never freed; each entry is a NUL-terminated string.
        unsafe {
            let entry = *self.next;
            if entry.is_null() {
                self.next = core::ptr::null();
                return None;
            }
            self.next = self.next.add(1);
            Some(CStr::from_ptr(entry.cast()))
        }
    }
}

/// The program's arguments, argv[0] first.
pub fn args() -> CStrArray {
    CStrArray {
        next: ARGV.load(Ordering::Relaxed),
    }
}

/// The environment the kernel (or the parent) passed.
pub fn env() -> CStrArray {
    CStrArray {
        next: ENVP.load(Ordering::Relaxed),
    }
}

/// The number of arguments.
pub fn arg_count() -> usize {
    ARGC.load(Ordering::Relaxed)
}

pub enum Fork {
    Child,
    Parent(Pid),
}

/// Forks the calling process.
///
/// kiOS's binaries are single-threaded, so the child is a complete copy
/// with no lock held by a vanished thread.
pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: clone with only SIGCHLD as flags and no new stack is fork(2):
    // the child resumes here on a copy of our stack and memory.
    let ret = check(unsafe { syscall4(__NR_clone, SIGCHLD as usize, 0, 0, 0) })?;
    Ok(match Pid::from_raw(ret as i32) {
        None => Fork::Child,
        Some(pid) => Fork::Parent(pid),
    })
}

/// Replaces the process image; returns only on failure, with the errno.
pub fn execve(path: &CStr, argv: &[&CStr], envp: &[&CStr]) -> Errno {
    let mut argv_ptrs = [core::ptr::null::<u8>(); MAX_EXEC_ARGS + 1];
    let mut envp_ptrs = [core::ptr::null::<u8>(); MAX_EXEC_ARGS + 1];
    if argv.len() > MAX_EXEC_ARGS || envp.len() > MAX_EXEC_ARGS {
        return Errno::TOOBIG;
    }
    for (slot, arg) in argv_ptrs.iter_mut().zip(argv) {
        *slot = arg.as_ptr().cast();
    }
    for (slot, var) in envp_ptrs.iter_mut().zip(envp) {
        *slot = var.as_ptr().cast();
    }
    // SAFETY: path and every entry are NUL-terminated strings that outlive the
    // call, and both pointer arrays end with a NULL entry (the arrays are one
    // longer than the most entries copied in).
    let ret = unsafe {
        syscall4(
            __NR_execve,
            path.as_ptr() as usize,
            argv_ptrs.as_ptr() as usize,
            envp_ptrs.as_ptr() as usize,
            0,
        )
    };
    match check(ret) {
        Err(errno) => errno,
        Ok(_) => Errno::INVAL,
    }
}

/// Sends `signal` to every process except PID 1 itself (kill(-1, signal)),
/// which rustix's `Pid` type cannot express.
pub fn kill_all(signal: u32) -> Result<(), Errno> {
    // SAFETY: kill takes two integers; pid -1 means "every process we may signal".
    check(unsafe { syscall4(__NR_kill, -1isize as usize, signal as usize, 0, 0) }).map(drop)
}

/// Ends the process (all threads) with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group takes one integer and does not return.
    unsafe {
        syscall4(__NR_exit_group, code as usize, 0, 0, 0);
    }
    // exit_group cannot fail; this only satisfies the `!` type.
    loop {
        rustix::event::pause();
    }
}
