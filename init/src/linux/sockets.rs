//! Sockets: the system socket and its clients, the bus socket and its
//! connections (with the inhibitor pipes handed out over it), and the
//! routing netlink.

use core::mem::MaybeUninit;

use kios_init::errno::Errno;
use kios_init::peer;
use kios_init::sys::{BusId, ClientId, ClientList, Event, SysResult};
use mini_libc_free::kmsg;
use rustix::event::epoll;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::Mode;
use rustix::io::Errno as RawErrno;
use rustix::io::IoSlice;
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use super::files::{c_path, PATH_MAX};
use super::{errno, Client, Linux, CLIENTS_MAX, TOKEN_BUS, TOKEN_CLIENT, TOKEN_INHIBITOR};

/// How long the listeners rest after accept ran out of descriptors or memory.
const ACCEPT_BACKOFF_MS: u64 = 1000;

impl Linux {
    pub(super) fn accept_clients(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (fd, uid) = match accept(listener) {
                Ok(accepted) => accepted,
                Err(failure) => return self.accept_failed(failure),
            };
            if !peer::allowed(uid) {
                mini_libc_free::kmsg!(
                    kmsg::Level::Warning,
                    "system socket: refused client uid={}",
                    uid
                );
                continue;
            }
            let registered = register(
                &self.epoll,
                &mut self.next_id,
                &mut self.clients,
                TOKEN_CLIENT,
                fd,
            );
            if registered.is_none() {
                kmsg::write(
                    kmsg::Level::Warning,
                    "system socket: too many clients, refused one",
                );
            }
        }
    }

    /// Accepts bus connections; the policy decides on each peer's uid.
    pub(super) fn accept_bus(&mut self) {
        while !self.pending.is_full() {
            let Some(listener) = &self.bus_listener else {
                return;
            };
            let (fd, uid) = match accept(listener) {
                Ok(accepted) => accepted,
                Err(failure) => return self.accept_failed(failure),
            };
            let registered = register(
                &self.epoll,
                &mut self.next_id,
                &mut self.bus_connections,
                TOKEN_BUS,
                fd,
            );
            match registered {
                Some(id) => {
                    let _ = self.pending.push_back(Event::BusConnected {
                        conn: BusId(id),
                        uid,
                    });
                }
                None => kmsg::write(
                    kmsg::Level::Warning,
                    "bus: too many connections, refused one",
                ),
            }
        }
    }

    /// accept failed: nothing more to take (EAGAIN), or no descriptor or
    /// memory for it (EMFILE, ENFILE, ENOMEM, ...). The listeners stay
    /// readable then, so they leave epoll for ACCEPT_BACKOFF_MS instead of
    /// waking PID 1 in a loop.
    fn accept_failed(&mut self, failure: RawErrno) {
        if matches!(failure, RawErrno::AGAIN | RawErrno::INTR) {
            return;
        }
        self.watch_listeners(epoll::EventFlags::empty());
        self.accept_resume_us =
            Some(mini_libc_free::time::boottime_us() + ACCEPT_BACKOFF_MS * 1000);
        mini_libc_free::kmsg!(
            kmsg::Level::Warning,
            "sockets: accept failed: errno {}, accepting again in {} ms",
            failure.raw_os_error(),
            ACCEPT_BACKOFF_MS
        );
    }

    /// Watches both listeners for `events` (none: paused).
    pub(super) fn watch_listeners(&mut self, events: epoll::EventFlags) {
        for (listener, token) in [
            (&self.listener, super::TOKEN_LISTENER),
            (&self.bus_listener, super::TOKEN_BUS_LISTENER),
        ] {
            if let Some(fd) = listener {
                let _ = epoll::modify(&self.epoll, fd, epoll::EventData::new_u64(token), events);
            }
        }
    }

    /// An inhibitor pipe's read end woke up: its last writer closed it
    /// (nobody ever writes into it).
    pub(super) fn inhibitor_hung_up(&mut self, id: u32) {
        let Some(index) = self.inhibitors.iter().position(|i| i.id == id) else {
            return;
        };
        if self.pending.push_back(Event::InhibitorReleased).is_ok() {
            let released = self.inhibitors.swap_remove(index);
            let _ = epoll::delete(&self.epoll, &released.fd);
        }
    }

    /// Reads one command byte a round: when a command drops its client,
    /// the bytes queued behind it are never read, so never reported.
    pub(super) fn read_client(&mut self, id: u32) {
        let Some(index) = self.clients.iter().position(|client| client.id == id) else {
            return;
        };
        if self.pending.is_full() {
            // Level-triggered: epoll reports the bytes again next round.
            return;
        }
        let mut byte = [0u8; 1];
        match rustix::net::recv(&self.clients[index].fd, &mut byte, RecvFlags::DONTWAIT) {
            Ok((1, _)) => {
                let _ = self.pending.push_back(Event::Request {
                    client: ClientId(id),
                    byte: byte[0],
                });
            }
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => {}
            // Hung up (0 bytes) or failed: gone, and the policy hears so.
            _ => {
                self.remove_client(ClientId(id));
                let _ = self.pending.push_back(Event::ClientClosed(ClientId(id)));
            }
        }
    }

    /// A root-only (0600) non-blocking Unix stream socket at `path`,
    /// registered with `token`.
    pub(super) fn listen_unix(&mut self, path: &str, token: u64) -> SysResult<OwnedFd> {
        let mut buf = [0; PATH_MAX];
        let path = c_path(path, &mut buf)?;
        let _ = rustix::fs::unlink(path);
        let address = SocketAddrUnix::new(path).map_err(errno)?;
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(errno)?;
        rustix::net::bind(&socket, &address).map_err(errno)?;
        rustix::fs::chmod(path, Mode::from_raw_mode(0o600)).map_err(errno)?;
        rustix::net::listen(&socket, 16).map_err(errno)?;
        epoll::add(
            &self.epoll,
            &socket,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .map_err(errno)?;
        Ok(socket)
    }

    pub(super) fn read_bus(&mut self, conn: BusId, buf: &mut [u8]) -> SysResult<usize> {
        let client = self
            .bus_connections
            .iter()
            .find(|c| c.id == conn.0)
            .ok_or(Errno::BADF)?;
        // Plain recv: descriptors a client passes are closed by the kernel.
        match rustix::net::recv(&client.fd, buf, RecvFlags::DONTWAIT) {
            Ok((read, _)) => Ok(read),
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => Err(Errno::AGAIN),
            Err(e) => Err(errno(e)),
        }
    }

    pub(super) fn send_bus(&mut self, conn: BusId, bytes: &[u8], inhibitor: bool) -> SysResult<()> {
        let client = self
            .bus_connections
            .iter()
            .find(|c| c.id == conn.0)
            .ok_or(Errno::BADF)?;
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        let sent = if inhibitor {
            if self.inhibitors.is_full() {
                return Err(Errno::MFILE);
            }
            let (read_end, write_end) =
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(errno)?;
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds = [write_end.as_fd()];
            if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(Errno::NOBUFS);
            }
            let sent =
                rustix::net::sendmsg(&client.fd, &[IoSlice::new(bytes)], &mut control, flags)
                    .map_err(errno)?;
            // The client holds the only write end now.
            drop(write_end);
            let id = self.next_id();
            let token = epoll::EventData::new_u64(TOKEN_INHIBITOR | u64::from(id));
            epoll::add(&self.epoll, &read_end, token, epoll::EventFlags::IN).map_err(errno)?;
            let _ = self.inhibitors.push(Client { id, fd: read_end });
            sent
        } else {
            rustix::net::send(&client.fd, bytes, flags).map_err(errno)?
        };
        // Replies are a few hundred bytes against a socket buffer of
        // hundreds of KiB: a short send means the client stopped reading.
        if sent == bytes.len() {
            Ok(())
        } else {
            Err(Errno::AGAIN)
        }
    }

    pub(super) fn close_bus(&mut self, conn: BusId) {
        if let Some(index) = self.bus_connections.iter().position(|c| c.id == conn.0) {
            let removed = self.bus_connections.swap_remove(index);
            let _ = epoll::delete(&self.epoll, &removed.fd);
        }
    }

    /// Sends `byte` to every system-socket client; how many heard it.
    pub(super) fn tell_clients(&mut self, byte: u8) -> ClientList {
        let mut told = ClientList::new();
        let mut dead: heapless::Vec<u32, CLIENTS_MAX> = heapless::Vec::new();
        for client in &self.clients {
            match rustix::net::send(
                &client.fd,
                &[byte],
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(sent) if peer::heard(sent) => {
                    let _ = told.push(ClientId(client.id));
                }
                // Not listening: dropped once the list is no longer borrowed.
                _ => {
                    let _ = dead.push(client.id);
                }
            }
        }
        for id in dead {
            self.remove_client(ClientId(id));
        }
        told
    }

    pub(super) fn remove_client(&mut self, client: ClientId) {
        drop(self.take_client(client));
    }

    /// Stops watching a client and hands back its connection.
    pub(super) fn take_client(&mut self, client: ClientId) -> Option<OwnedFd> {
        let index = self.clients.iter().position(|c| c.id == client.0)?;
        let removed = self.clients.swap_remove(index);
        let _ = epoll::delete(&self.epoll, removed.fd.as_fd());
        Some(removed.fd)
    }
}

/// The next connection on `listener` and its peer's uid (SO_PEERCRED).
fn accept(listener: &OwnedFd) -> Result<(OwnedFd, u32), RawErrno> {
    loop {
        let fd = rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)?;
        // A peer whose credentials cannot be read is dropped unheard.
        if let Ok(uid) = mini_libc_free::socket::peer_uid(&fd) {
            return Ok((fd, uid));
        }
    }
}

/// Puts an accepted connection in `list` and epoll (token `kind` | id);
/// its id, or None (the connection closed) when the list is full (or
/// epoll has no memory for it).
pub fn register(
    epoll: &OwnedFd,
    next_id: &mut u32,
    list: &mut heapless::Vec<Client, CLIENTS_MAX>,
    kind: u64,
    fd: OwnedFd,
) -> Option<u32> {
    if list.is_full() {
        return None;
    }
    *next_id = next_id.wrapping_add(1);
    let id = *next_id;
    epoll::add(
        epoll,
        &fd,
        epoll::EventData::new_u64(kind | u64::from(id)),
        epoll::EventFlags::IN,
    )
    .ok()?;
    let _ = list.push(Client { id, fd });
    Some(id)
}

/// One request to the kernel's routing netlink and its one reply.
pub fn netlink_route(request: &[u8], reply: &mut [u8]) -> SysResult<usize> {
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        // The default protocol for netlink is NETLINK_ROUTE.
        None,
    )
    .map_err(errno)?;
    rustix::net::send(&socket, request, SendFlags::empty()).map_err(errno)?;
    let (len, _) = rustix::net::recv(&socket, reply, RecvFlags::empty()).map_err(errno)?;
    Ok(len)
}
