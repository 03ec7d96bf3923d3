//! Listening sockets and the listen callback that decides on each caller during the handshake.

#[allow(unused_imports)]
use super::*;

/// Why the listen callback refuses a caller; sent to the caller in the handshake rejection.
/// Only reasons an application may set (`access_control.h`, 1000 and up) exist here; libsrt
/// itself reports a wrong or missing passphrase (`SRT_REJ_BADSECRET`, `SRT_REJ_UNSECURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `SRT_REJX_BAD_REQUEST`: the stream id cannot be read.
    BadRequest,
    /// `SRT_REJX_UNAUTHORIZED`: the caller's credentials are wrong.
    Unauthorized,
    /// `SRT_REJX_OVERLOAD`: too many connections or handshakes.
    Overload,
    /// `SRT_REJX_FORBIDDEN`: the caller may not publish here (unknown key).
    Forbidden,
    /// `SRT_REJX_BAD_MODE`: `m=` other than publish.
    BadMode,
    /// `SRT_REJX_CONFLICT`: the stream already has a publisher.
    Conflict,
    /// `SRT_REJX_NOTSUP_MEDIA`: `t=` other than stream.
    UnsupportedMedia,
    /// `SRT_REJX_ISE`: the server failed.
    InternalError,
}

impl RejectReason {
    /// The code libsrt sends.
    pub fn code(self) -> i32 {
        match self {
            RejectReason::BadRequest => sys::SRT_REJX_BAD_REQUEST,
            RejectReason::Unauthorized => sys::SRT_REJX_UNAUTHORIZED,
            RejectReason::Overload => sys::SRT_REJX_OVERLOAD,
            RejectReason::Forbidden => sys::SRT_REJX_FORBIDDEN,
            RejectReason::BadMode => sys::SRT_REJX_BAD_MODE,
            RejectReason::Conflict => sys::SRT_REJX_CONFLICT,
            RejectReason::UnsupportedMedia => sys::SRT_REJX_NOTSUP_MEDIA,
            RejectReason::InternalError => sys::SRT_REJX_ISE,
        }
    }
}

/// A caller's handshake, as the listen callback sees it.
pub struct HandshakeRequest<'a> {
    /// The socket libsrt created for the caller; valid only during the callback.
    pub socket: PendingSocket<'a>,
    /// The caller's address, when libsrt gave a readable one.
    pub peer: Option<SocketAddr>,
    /// The stream id the caller sent (empty when none).
    pub stream_id: &'a [u8],
}

/// The socket of a handshake in progress: the callback may set its passphrase.
pub struct PendingSocket<'a> {
    pub(super) id: i32,
    pub(super) _callback: std::marker::PhantomData<&'a ()>,
}

impl PendingSocket<'_> {
    /// The id the socket will have once accepted.
    pub fn id(&self) -> SocketId {
        SocketId(self.id)
    }

    /// Requires this passphrase (10 to 79 characters) of the caller: the handshake fails with a
    /// wrong or missing one.
    pub fn set_passphrase(&self, passphrase: &str) -> Result<(), SrtError> {
        set_passphrase(self.id, passphrase)
    }
}

/// The hook behind the listen callback's opaque pointer (a thin pointer to a fat closure).
type Hook = dyn Fn(&HandshakeRequest<'_>) -> Result<(), RejectReason> + Send + Sync;
pub(super) struct HookState(pub(super) Box<Hook>);

/// The listen callback libsrt calls on its receive thread for each caller's conclusion
/// handshake. Returns 0 to go on with the handshake, -1 to reject it.
pub(super) unsafe extern "C" fn on_handshake(
    opaque: *mut c_void,
    ns: sys::SRTSOCKET,
    _hs_version: c_int,
    peer: *const sockaddr,
    stream_id: *const c_char,
) -> c_int {
    if opaque.is_null() {
        return -1;
    }
    // SAFETY: `opaque` is the pointer `Socket::listen` registered: a `HookState` that outlives
    // every call (see there); the hook is only read, and it is `Sync`.
    let hook = unsafe { &*opaque.cast_const().cast::<HookState>() };
    // SAFETY: libsrt passes the caller's address as a `sockaddr_any`, a union large enough for
    // a sockaddr_in6, alive for this call; `read_sockaddr` reads only what the family needs.
    let peer = unsafe { read_sockaddr(peer, std::mem::size_of::<libc::sockaddr_in6>()) };
    let stream_id = if stream_id.is_null() {
        &[][..]
    } else {
        // SAFETY: non-null, NUL-terminated (libsrt passes `std::string::c_str()` of the id it
        // parsed, at most 512 bytes), and alive for this call, which is as long as the borrow
        // lives: `request` does not escape this function.
        unsafe { CStr::from_ptr(stream_id) }.to_bytes()
    };
    let request = HandshakeRequest {
        socket: PendingSocket {
            id: ns,
            _callback: std::marker::PhantomData,
        },
        peer,
        stream_id,
    };
    // A panic must not unwind into libsrt: refuse the caller instead.
    let verdict = catch_unwind(AssertUnwindSafe(|| (hook.0)(&request)))
        .unwrap_or(Err(RejectReason::InternalError));
    match verdict {
        Ok(()) => 0,
        Err(reason) => {
            sys::srt_setrejectreason(ns, reason.code());
            -1
        }
    }
}

/// A listening socket and its listen callback.
pub struct Listener {
    // Closed in `drop` before the fields drop, so before the hook it calls is freed.
    pub(super) socket: Socket,
    pub(super) hook: Option<Box<HookState>>,
}

impl Listener {
    /// The listening socket's id (it appears in epoll events when callers wait to be accepted).
    pub fn id(&self) -> SocketId {
        self.socket.id()
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddr, SrtError> {
        self.socket.local_addr()
    }

    /// Takes the next connected caller, or `None` when none is waiting (the listener is
    /// non-blocking). Accepted sockets inherit the listener's options.
    pub fn accept(&self) -> Result<Option<(Socket, Option<SocketAddr>)>, SrtError> {
        let mut buf = AddrBuf::new();
        let mut len = buf.0.len() as c_int;
        // SAFETY: `buf` is a writable, aligned sockaddr_storage-sized buffer whose size is in
        // `len`; libsrt writes at most that, updates `len`, and keeps neither pointer.
        let id = unsafe {
            sys::srt_accept(
                self.socket.id,
                buf.0.as_mut_ptr().cast::<sockaddr>(),
                &mut len,
            )
        };
        if id == sys::SRT_INVALID_SOCK {
            let err = SrtError::last("accept");
            if err.code == sys::SRT_EASYNCRCV {
                return Ok(None);
            }
            return Err(err);
        }
        let socket = Socket {
            id,
            _runtime: self.socket._runtime.clone(),
        };
        Ok(Some((socket, buf.read(len))))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.socket.close_now() {
            // libsrt did not confirm the listener is out of its receive queue, so it might
            // still call the hook: leak the hook rather than free memory it may read.
            if let Some(hook) = self.hook.take() {
                Box::leak(hook);
            }
        }
        // The fields drop next: the socket (already closed), then the hook.
    }
}
