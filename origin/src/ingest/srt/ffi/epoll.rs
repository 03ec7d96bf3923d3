//! libsrt's epoll: waiting on many sockets at once.

#[allow(unused_imports)]
use super::*;

/// What an epoll set watches a socket for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub(super) readable: bool,
    pub(super) errors: bool,
}

impl Interest {
    /// Readable (a message, or for a listener a caller to accept) and errors.
    pub const READ: Interest = Interest {
        readable: true,
        errors: true,
    };

    pub(super) fn bits(self) -> c_int {
        let mut bits = 0;
        if self.readable {
            bits |= sys::SRT_EPOLL_IN;
        }
        if self.errors {
            bits |= sys::SRT_EPOLL_ERR;
        }
        bits
    }
}

/// One ready socket from [`Epoll::wait`].
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Event(sys::SRT_EPOLL_EVENT);

impl Event {
    /// The socket.
    pub fn socket(&self) -> SocketId {
        SocketId(self.0.fd)
    }

    /// Whether it is readable (or, for a listener, has a caller to accept).
    pub fn is_readable(&self) -> bool {
        self.0.events & sys::SRT_EPOLL_IN != 0
    }

    /// Whether it has an error (for a connection: broken or closed).
    pub fn is_error(&self) -> bool {
        self.0.events & sys::SRT_EPOLL_ERR != 0
    }
}

/// A set of SRT sockets to wait on; released on drop.
pub struct Epoll {
    pub(super) id: c_int,
    pub(super) _runtime: Arc<Runtime>,
}

impl Epoll {
    /// Watches `socket` for `interest`.
    pub fn add(&self, socket: SocketId, interest: Interest) -> Result<(), SrtError> {
        let events = interest.bits();
        // SAFETY: `events` is a live `c_int` for the call; libsrt reads it and keeps no pointer.
        let rc = unsafe { sys::srt_epoll_add_usock(self.id, socket.0, &events) };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("add to epoll"));
        }
        Ok(())
    }

    /// Stops watching `socket` (libsrt also forgets closed sockets by itself).
    pub fn remove(&self, socket: SocketId) -> Result<(), SrtError> {
        if sys::srt_epoll_remove_usock(self.id, socket.0) == sys::SRT_ERROR {
            return Err(SrtError::last("remove from epoll"));
        }
        Ok(())
    }

    /// Waits up to `timeout` for ready sockets and returns them, at most `events.len()` (the
    /// others stay ready for the next wait). An empty slice means the time ran out.
    pub fn wait<'e>(
        &self,
        events: &'e mut [Event],
        timeout: Duration,
    ) -> Result<&'e [Event], SrtError> {
        let size = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: `Event` is `repr(transparent)` over the `repr(C)` SRT_EPOLL_EVENT, so `events`
        // is a writable array of `size` SRT_EPOLL_EVENTs for the call; libsrt writes at most `size`
        // entries and keeps no pointer.
        let n = unsafe {
            sys::srt_epoll_uwait(
                self.id,
                events.as_mut_ptr().cast::<sys::SRT_EPOLL_EVENT>(),
                size,
                ms,
            )
        };
        if n < 0 {
            let err = SrtError::last("epoll wait");
            if err.code == sys::SRT_ETIMEOUT {
                return Ok(&events[..0]);
            }
            return Err(err);
        }
        // libsrt answers `size + 1` when more sockets were ready than fit.
        let n = usize::try_from(n).unwrap_or(0).min(events.len());
        Ok(&events[..n])
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        sys::srt_epoll_release(self.id);
    }
}
