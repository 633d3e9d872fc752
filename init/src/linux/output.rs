//! Child output capture: each started child's stdout and stderr go into a
//! pipe the init reads; the lines (cut by `kios_init::log::child_output`)
//! go to kmsg as `<service>: line` and to the service's log file.

use kios_init::log::child_output::{self, LINE_MAX};
use kios_init::log::service_file;
use mini_libc_free::kmsg::Line;
use rustix::event::epoll;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno as RawErrno;

use super::files::{c_path, PATH_MAX};
use super::{Linux, TOKEN_OUTPUT};

/// A pipe this large absorbs bursts, so a child never waits on the init.
const OUTPUT_PIPE_BYTES: usize = 1 << 20;

pub struct Output {
    id: u32,
    name: &'static str,
    fd: OwnedFd,
    line: heapless::Vec<u8, LINE_MAX>,
}

/// Services with a log file: the runtime, the kubelet, the first boot.
pub const LOG_FILES_MAX: usize = 4;

/// A service's log file (`kios_init::log::service_file`), appended to line
/// by line. One per service, shared by all its pipes (a restarted service's
/// old pipe can outlive it), so the size bound holds for the service.
/// Logging must never stop PID 1: a file that cannot be opened or written
/// is skipped, and kmsg still gets the line.
pub struct LogFile {
    service: &'static str,
    fd: Option<OwnedFd>,
    size: service_file::Size,
}

impl LogFile {
    fn open(service: &'static str) -> LogFile {
        let fd = c_path(
            service_file::path(service, false).as_str(),
            &mut [0; PATH_MAX],
        )
        .ok()
        .and_then(|path| {
            rustix::fs::open(
                path,
                OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::from_raw_mode(0o640),
            )
            .ok()
        });
        let bytes = fd
            .as_ref()
            .and_then(|fd| rustix::fs::fstat(fd).ok())
            .map_or(0, |stat| stat.st_size as u64);
        LogFile {
            service,
            fd,
            size: service_file::Size::opened(bytes),
        }
    }

    fn append(&mut self, line: &[u8]) {
        let service = self.service;
        if self.size.must_rotate_before(line) {
            let (current, rotated) = (&mut [0; PATH_MAX], &mut [0; PATH_MAX]);
            if let (Ok(current), Ok(rotated)) = (
                c_path(service_file::path(service, false).as_str(), current),
                c_path(service_file::path(service, true).as_str(), rotated),
            ) {
                let _ = rustix::fs::rename(current, rotated);
            }
            *self = LogFile::open(service);
        }
        if let Some(fd) = &self.fd {
            for part in [line, b"\n"] {
                if let Ok(written) = rustix::io::write(fd, part) {
                    self.size.wrote(written);
                }
            }
        }
    }
}

impl Output {
    /// Logs the open line, if it has anything in it.
    fn flush(&mut self, log: Option<&mut LogFile>) {
        if !self.line.is_empty() {
            let mut line = Line::with_ident(super::level(child_output::LEVEL), self.name);
            line.push_bytes(&self.line);
            line.emit();
            if let Some(log) = log {
                log.append(&self.line);
            }
            self.line.clear();
        }
    }

    /// Logs each line `bytes` completes; the start of the next stays open.
    fn take(&mut self, bytes: &[u8], mut log: Option<&mut LogFile>) {
        let mut rest = bytes;
        while let Some(end) = child_output::line_end(self.line.len(), rest, LINE_MAX) {
            let _ = self
                .line
                .extend_from_slice(rest.get(..end).unwrap_or_default());
            self.flush(log.as_deref_mut());
            rest = match rest.get(end..).unwrap_or_default() {
                // The newline that ended the line starts no other.
                [b'\n', after @ ..] => after,
                after => after,
            };
        }
        let _ = self.line.extend_from_slice(rest);
    }
}

impl Linux {
    pub(super) fn read_output(&mut self, id: u32) {
        let Some(index) = self.outputs.iter().position(|output| output.id == id) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let output = &mut self.outputs[index];
        let log = self.logs.iter_mut().find(|log| log.service == output.name);
        match rustix::io::read(&output.fd, &mut buf) {
            Ok(n @ 1..) => return output.take(buf.get(..n).unwrap_or_default(), log),
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => return,
            // Every writer closed it (0 bytes), or it failed.
            _ => output.flush(log),
        }
        let _ = epoll::delete(&self.epoll, &output.fd);
        let name = self.outputs.swap_remove(index).name;
        // The service's last pipe: its log file closes too, so no open file
        // keeps /var busy at shutdown.
        if !self.outputs.iter().any(|output| output.name == name) {
            self.logs.retain(|log| log.service != name);
        }
    }

    /// A close-on-exec pipe for a child's stdout and stderr, already read
    /// (non-blocking) as `name`'s output; its write end is the child's.
    /// None when all OUTPUTS_MAX pipes are in use or a new one fails: a
    /// pipe nobody reads would block the child once full.
    pub(super) fn output_pipe(&mut self, name: &'static str) -> Option<OwnedFd> {
        if self.outputs.is_full() {
            return None;
        }
        let (read_end, write_end) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
        rustix::fs::fcntl_setfl(&read_end, OFlags::NONBLOCK).ok()?;
        // Best effort: the default 64 KiB still works, with less slack.
        let _ = rustix::pipe::fcntl_setpipe_size(&read_end, OUTPUT_PIPE_BYTES);
        let id = self.next_id();
        let token = epoll::EventData::new_u64(TOKEN_OUTPUT | u64::from(id));
        epoll::add(&self.epoll, &read_end, token, epoll::EventFlags::IN).ok()?;
        let _ = self.outputs.push(Output {
            id,
            name,
            fd: read_end,
            line: heapless::Vec::new(),
        });
        if !self.logs.iter().any(|log| log.service == name) {
            let _ = self.logs.push(LogFile::open(name));
        }
        Some(write_end)
    }
}
