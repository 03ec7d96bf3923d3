//! Hand-written bindings to the system libsrt 1.5 (`libsrt-gnutls`), and the small safe API the
//! SRT listener uses: the library's start-up, sockets and their options, bind/listen/accept, the
//! listen callback (access control during the handshake), receiving messages, epoll, reject
//! reasons and receive statistics.
//!
//! This is the only file of the crate with `unsafe` code. Every constant is copied from
//! `/usr/include/srt/srt.h` (and `access_control.h`, `logging_api.h`) of libsrt 1.5.1, and
//! [`Srt::acquire`] refuses to run against any library that is not 1.5.x, so that the struct
//! layouts and enum values below cannot silently disagree with the loaded library.
//!
//! libsrt runs its own threads (a receive worker per UDP port, a garbage collector). The
//! functions called here are documented as thread-safe; sockets are plain integer handles that
//! libsrt validates on every call, so using a handle that libsrt has already closed is an error
//! return, never undefined behaviour. What does need care is memory handed to libsrt (buffers,
//! socket addresses, the opaque pointer of the listen callback); each `unsafe` block says why it
//! is sound.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::Duration;

use libc::{c_char, c_int, c_void, sockaddr};
use parking_lot::Mutex;

/// The raw C declarations, private to this file, named as in the header.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
mod sys {
    use libc::{c_char, c_int, c_void, sockaddr};

    /// `SRTSOCKET`.
    pub type SRTSOCKET = i32;
    /// `SRT_INVALID_SOCK`.
    pub const SRT_INVALID_SOCK: SRTSOCKET = -1;
    /// `SRT_ERROR`.
    pub const SRT_ERROR: c_int = -1;

    // `enum SRT_SOCKOPT`.
    pub const SRTO_SNDSYN: c_int = 1;
    pub const SRTO_RCVSYN: c_int = 2;
    pub const SRTO_LATENCY: c_int = 23;
    pub const SRTO_PASSPHRASE: c_int = 26;
    pub const SRTO_PBKEYLEN: c_int = 27;
    pub const SRTO_RCVLATENCY: c_int = 43;
    pub const SRTO_STREAMID: c_int = 46;
    pub const SRTO_PAYLOADSIZE: c_int = 49;
    pub const SRTO_TRANSTYPE: c_int = 50;
    pub const SRTO_ENFORCEDENCRYPTION: c_int = 53;
    pub const SRTO_IPV6ONLY: c_int = 54;

    // `enum SRT_TRANSTYPE`.
    pub const SRTT_LIVE: c_int = 0;

    // `enum SRT_SOCKSTATUS`.
    pub const SRTS_INIT: c_int = 1;
    pub const SRTS_OPENED: c_int = 2;
    pub const SRTS_LISTENING: c_int = 3;
    pub const SRTS_CONNECTING: c_int = 4;
    pub const SRTS_CONNECTED: c_int = 5;
    pub const SRTS_BROKEN: c_int = 6;
    pub const SRTS_CLOSING: c_int = 7;
    pub const SRTS_CLOSED: c_int = 8;
    pub const SRTS_NONEXIST: c_int = 9;

    // `enum SRT_ERRNO` (1000 * major + minor).
    pub const SRT_ECONNLOST: c_int = 2001;
    pub const SRT_ENOCONN: c_int = 2002;
    pub const SRT_EINVSOCK: c_int = 5004;
    pub const SRT_EASYNCRCV: c_int = 6002;
    pub const SRT_ETIMEOUT: c_int = 6003;

    // `enum SRT_EPOLL_OPT`.
    pub const SRT_EPOLL_IN: c_int = 0x1;
    pub const SRT_EPOLL_ERR: c_int = 0x8;

    // `access_control.h`: reject reasons an application may set (predefined, >= 1000).
    pub const SRT_REJX_BAD_REQUEST: c_int = 1400;
    pub const SRT_REJX_UNAUTHORIZED: c_int = 1401;
    pub const SRT_REJX_OVERLOAD: c_int = 1402;
    pub const SRT_REJX_FORBIDDEN: c_int = 1403;
    pub const SRT_REJX_BAD_MODE: c_int = 1405;
    pub const SRT_REJX_CONFLICT: c_int = 1409;
    pub const SRT_REJX_NOTSUP_MEDIA: c_int = 1415;
    pub const SRT_REJX_ISE: c_int = 1500;

    // `logging_api.h` flags and syslog levels.
    pub const SRT_LOGF_DISABLE_TIME: c_int = 1;
    pub const SRT_LOGF_DISABLE_THREADNAME: c_int = 2;
    pub const SRT_LOGF_DISABLE_SEVERITY: c_int = 4;
    pub const SRT_LOGF_DISABLE_EOL: c_int = 8;
    pub const LOG_CRIT: c_int = 2;
    pub const LOG_WARNING: c_int = 4;

    /// `SRT_EPOLL_EVENT`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct SRT_EPOLL_EVENT {
        pub fd: SRTSOCKET,
        pub events: c_int,
    }

    /// `struct CBytePerfMon` (`SRT_TRACEBSTATS`), every field in header order: libsrt writes the
    /// whole struct, so its size must match exactly (checked by a unit test against the sizes a C
    /// compiler gives for the 1.5.1 header).
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct CBytePerfMon {
        pub ms_time_stamp: i64,
        pub pkt_sent_total: i64,
        pub pkt_recv_total: i64,
        pub pkt_snd_loss_total: c_int,
        pub pkt_rcv_loss_total: c_int,
        pub pkt_retrans_total: c_int,
        pub pkt_sent_ack_total: c_int,
        pub pkt_recv_ack_total: c_int,
        pub pkt_sent_nak_total: c_int,
        pub pkt_recv_nak_total: c_int,
        pub us_snd_duration_total: i64,
        pub pkt_snd_drop_total: c_int,
        pub pkt_rcv_drop_total: c_int,
        pub pkt_rcv_undecrypt_total: c_int,
        pub byte_sent_total: u64,
        pub byte_recv_total: u64,
        pub byte_rcv_loss_total: u64,
        pub byte_retrans_total: u64,
        pub byte_snd_drop_total: u64,
        pub byte_rcv_drop_total: u64,
        pub byte_rcv_undecrypt_total: u64,
        pub pkt_sent: i64,
        pub pkt_recv: i64,
        pub pkt_snd_loss: c_int,
        pub pkt_rcv_loss: c_int,
        pub pkt_retrans: c_int,
        pub pkt_rcv_retrans: c_int,
        pub pkt_sent_ack: c_int,
        pub pkt_recv_ack: c_int,
        pub pkt_sent_nak: c_int,
        pub pkt_recv_nak: c_int,
        pub mbps_send_rate: f64,
        pub mbps_recv_rate: f64,
        pub us_snd_duration: i64,
        pub pkt_reorder_distance: c_int,
        pub pkt_rcv_avg_belated_time: f64,
        pub pkt_rcv_belated: i64,
        pub pkt_snd_drop: c_int,
        pub pkt_rcv_drop: c_int,
        pub pkt_rcv_undecrypt: c_int,
        pub byte_sent: u64,
        pub byte_recv: u64,
        pub byte_rcv_loss: u64,
        pub byte_retrans: u64,
        pub byte_snd_drop: u64,
        pub byte_rcv_drop: u64,
        pub byte_rcv_undecrypt: u64,
        pub us_pkt_snd_period: f64,
        pub pkt_flow_window: c_int,
        pub pkt_congestion_window: c_int,
        pub pkt_flight_size: c_int,
        pub ms_rtt: f64,
        pub mbps_bandwidth: f64,
        pub byte_avail_snd_buf: c_int,
        pub byte_avail_rcv_buf: c_int,
        pub mbps_max_bw: f64,
        pub byte_mss: c_int,
        pub pkt_snd_buf: c_int,
        pub byte_snd_buf: c_int,
        pub ms_snd_buf: c_int,
        pub ms_snd_tsbpd_delay: c_int,
        pub pkt_rcv_buf: c_int,
        pub byte_rcv_buf: c_int,
        pub ms_rcv_buf: c_int,
        pub ms_rcv_tsbpd_delay: c_int,
        pub pkt_snd_filter_extra_total: c_int,
        pub pkt_rcv_filter_extra_total: c_int,
        pub pkt_rcv_filter_supply_total: c_int,
        pub pkt_rcv_filter_loss_total: c_int,
        pub pkt_snd_filter_extra: c_int,
        pub pkt_rcv_filter_extra: c_int,
        pub pkt_rcv_filter_supply: c_int,
        pub pkt_rcv_filter_loss: c_int,
        pub pkt_reorder_tolerance: c_int,
        pub pkt_sent_unique_total: i64,
        pub pkt_recv_unique_total: i64,
        pub byte_sent_unique_total: u64,
        pub byte_recv_unique_total: u64,
        pub pkt_sent_unique: i64,
        pub pkt_recv_unique: i64,
        pub byte_sent_unique: u64,
        pub byte_recv_unique: u64,
    }

    /// `srt_listen_callback_fn`.
    pub type ListenCallback = unsafe extern "C" fn(
        opaque: *mut c_void,
        ns: SRTSOCKET,
        hsversion: c_int,
        peeraddr: *const sockaddr,
        streamid: *const c_char,
    ) -> c_int;

    /// `SRT_LOG_HANDLER_FN`.
    pub type LogHandler = unsafe extern "C" fn(
        opaque: *mut c_void,
        level: c_int,
        file: *const c_char,
        line: c_int,
        area: *const c_char,
        message: *const c_char,
    );

    // SAFETY: each declaration is transcribed from srt.h 1.5.1 (C `int` is `c_int`, `int32_t`
    // and `SRTSOCKET` are `i32`, `int64_t` is `i64`, C enums passed by value are `int`-sized on
    // the targets we build for), and `Srt::acquire` checks the loaded library is 1.5.x. The
    // functions marked `safe` take only integers (libsrt validates socket and epoll ids and
    // answers an error for unknown ones) and return integers, so no Rust-side invariant can be
    // broken by calling them; the others take pointers and are called in `unsafe` blocks that
    // justify each pointer.
    #[link(name = "srt-gnutls")]
    unsafe extern "C" {
        pub safe fn srt_startup() -> c_int;
        pub safe fn srt_cleanup() -> c_int;
        pub safe fn srt_getversion() -> u32;
        pub safe fn srt_create_socket() -> SRTSOCKET;
        pub fn srt_bind(u: SRTSOCKET, name: *const sockaddr, namelen: c_int) -> c_int;
        pub safe fn srt_listen(u: SRTSOCKET, backlog: c_int) -> c_int;
        pub fn srt_accept(u: SRTSOCKET, addr: *mut sockaddr, addrlen: *mut c_int) -> SRTSOCKET;
        pub fn srt_listen_callback(
            lsn: SRTSOCKET,
            hook_fn: Option<ListenCallback>,
            hook_opaque: *mut c_void,
        ) -> c_int;
        pub safe fn srt_close(u: SRTSOCKET) -> c_int;
        pub fn srt_getsockname(u: SRTSOCKET, name: *mut sockaddr, namelen: *mut c_int) -> c_int;
        pub fn srt_getsockopt(
            u: SRTSOCKET,
            level: c_int,
            optname: c_int,
            optval: *mut c_void,
            optlen: *mut c_int,
        ) -> c_int;
        pub fn srt_setsockopt(
            u: SRTSOCKET,
            level: c_int,
            optname: c_int,
            optval: *const c_void,
            optlen: c_int,
        ) -> c_int;
        pub fn srt_recvmsg(u: SRTSOCKET, buf: *mut c_char, len: c_int) -> c_int;
        pub fn srt_getlasterror_str() -> *const c_char;
        pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
        pub fn srt_bstats(u: SRTSOCKET, perf: *mut CBytePerfMon, clear: c_int) -> c_int;
        pub fn srt_bistats(
            u: SRTSOCKET,
            perf: *mut CBytePerfMon,
            clear: c_int,
            instantaneous: c_int,
        ) -> c_int;
        pub safe fn srt_getsockstate(u: SRTSOCKET) -> c_int;
        pub safe fn srt_epoll_create() -> c_int;
        pub fn srt_epoll_add_usock(eid: c_int, u: SRTSOCKET, events: *const c_int) -> c_int;
        pub safe fn srt_epoll_remove_usock(eid: c_int, u: SRTSOCKET) -> c_int;
        pub fn srt_epoll_uwait(
            eid: c_int,
            fds_set: *mut SRT_EPOLL_EVENT,
            fds_size: c_int,
            ms_time_out: i64,
        ) -> c_int;
        pub safe fn srt_epoll_release(eid: c_int) -> c_int;
        pub safe fn srt_setrejectreason(sock: SRTSOCKET, value: c_int) -> c_int;
        pub safe fn srt_setloglevel(ll: c_int);
        pub safe fn srt_setlogflags(flags: c_int);
        pub fn srt_setloghandler(opaque: *mut c_void, handler: Option<LogHandler>);
    }
}

/// The libsrt version this file was written against: major and minor must match.
const EXPECTED_VERSION: (u32, u32) = (1, 5);

/// The longest stream id libsrt carries, plus its NUL terminator.
const STREAM_ID_BUFFER: usize = 512 + 1;

/// A libsrt call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SRT {op} failed: {message} (SRT error {code})")]
pub struct SrtError {
    op: &'static str,
    code: i32,
    sys_errno: i32,
    message: String,
}

impl SrtError {
    /// The calling thread's last libsrt error (libsrt keeps it per thread), for `op`.
    fn last(op: &'static str) -> Self {
        let mut sys_errno: c_int = 0;
        // SAFETY: `sys_errno` is a live, writable `c_int` for the duration of the call; libsrt
        // writes the system errno of the last error through it and keeps no reference.
        let code = unsafe { sys::srt_getlasterror(&mut sys_errno) };
        // SAFETY: srt_getlasterror_str takes no arguments; it returns a pointer to the calling
        // thread's error message, which stays valid until the next libsrt call on this thread.
        let text = unsafe { sys::srt_getlasterror_str() };
        let message = if text.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: non-null, NUL-terminated (libsrt returns `std::string::c_str()`), and
            // copied into an owned String before any other libsrt call on this thread.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        SrtError {
            op,
            code,
            sys_errno,
            message,
        }
    }

    /// An error found on the Rust side, before or instead of calling libsrt.
    fn local(op: &'static str, message: impl Into<String>) -> Self {
        SrtError {
            op,
            code: -1,
            sys_errno: 0,
            message: message.into(),
        }
    }

    /// The libsrt error code (`SRT_ERRNO`), or -1 for errors found before calling libsrt.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// Whether the connection is gone: lost, never connected, or its socket already closed.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self.code,
            sys::SRT_ECONNLOST | sys::SRT_ENOCONN | sys::SRT_EINVSOCK
        )
    }
}

impl From<SrtError> for std::io::Error {
    fn from(err: SrtError) -> Self {
        // A failed bind carries the system errno (EADDRINUSE, EACCES): keep its kind so that
        // callers can tell a busy port from other failures.
        let kind = if err.sys_errno != 0 {
            std::io::Error::from_raw_os_error(err.sys_errno).kind()
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, err)
    }
}

/// The `major.minor.patch` version of the loaded libsrt.
///
/// ```
/// let (major, minor, _patch) = corral_origin::ingest::srt::ffi::version();
/// assert_eq!((major, minor), (1, 5));
/// ```
pub fn version() -> (u32, u32, u32) {
    let v = sys::srt_getversion();
    (v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// Proof that libsrt is started: every socket and epoll holds one, so the library is cleaned up
/// only after the last of them is closed.
struct Runtime;

impl Drop for Runtime {
    fn drop(&mut self) {
        // Pairs with the srt_startup in `Srt::acquire`; libsrt counts them and stops its
        // threads at the last one.
        sys::srt_cleanup();
    }
}

/// The one live runtime of the process, if any.
static RUNTIME: Mutex<Weak<Runtime>> = Mutex::new(Weak::new());

/// A handle on the started libsrt; sockets and epolls are created from it.
#[derive(Clone)]
pub struct Srt {
    runtime: Arc<Runtime>,
}

impl Srt {
    /// Starts libsrt for this process (once: later calls share the running library until every
    /// handle, socket and epoll is gone), after checking the loaded library is 1.5.x.
    ///
    /// ```
    /// let srt = corral_origin::ingest::srt::ffi::Srt::acquire().expect("libsrt 1.5");
    /// # drop(srt);
    /// ```
    pub fn acquire() -> Result<Srt, SrtError> {
        let (major, minor, patch) = version();
        if (major, minor) != EXPECTED_VERSION {
            return Err(SrtError::local(
                "start-up",
                format!(
                    "libsrt {major}.{minor}.{patch} is loaded, but Corral's bindings are written \
                     for {}.{}.x: install libsrt-gnutls 1.5",
                    EXPECTED_VERSION.0, EXPECTED_VERSION.1
                ),
            ));
        }
        let mut slot = RUNTIME.lock();
        if let Some(runtime) = slot.upgrade() {
            return Ok(Srt { runtime });
        }
        if sys::srt_startup() < 0 {
            return Err(SrtError::last("start-up"));
        }
        install_log_handler();
        let runtime = Arc::new(Runtime);
        *slot = Arc::downgrade(&runtime);
        Ok(Srt { runtime })
    }

    /// A new SRT socket, in the defaults of libsrt (blocking, live mode).
    pub fn socket(&self) -> Result<Socket, SrtError> {
        let id = sys::srt_create_socket();
        if id == sys::SRT_INVALID_SOCK {
            return Err(SrtError::last("create socket"));
        }
        Ok(Socket {
            id,
            _runtime: self.runtime.clone(),
        })
    }

    /// A new, empty epoll set.
    pub fn epoll(&self) -> Result<Epoll, SrtError> {
        let id = sys::srt_epoll_create();
        if id < 0 {
            return Err(SrtError::last("create epoll"));
        }
        Ok(Epoll {
            id,
            _runtime: self.runtime.clone(),
        })
    }
}

/// Routes libsrt's own log lines into `tracing` (target `libsrt`) instead of raw stderr.
///
/// libsrt logs at error level per malformed packet (for example "the packet received as
/// handshake is not a handshake message"), so a stranger sending datagrams could otherwise
/// write a warning per packet into our logs: its errors and warnings go out at `debug`, to be
/// enabled (`RUST_LOG=libsrt=debug`) when diagnosing a caller; the exact cause of a failed
/// handshake (a passphrase mismatch, for instance) is among them. Only its fatal lines are
/// errors here. Lower libsrt levels are not even formatted: libsrt logs per packet there.
fn install_log_handler() {
    sys::srt_setloglevel(sys::LOG_WARNING);
    sys::srt_setlogflags(
        sys::SRT_LOGF_DISABLE_TIME
            | sys::SRT_LOGF_DISABLE_THREADNAME
            | sys::SRT_LOGF_DISABLE_SEVERITY
            | sys::SRT_LOGF_DISABLE_EOL,
    );
    // SAFETY: `on_log` matches SRT_LOG_HANDLER_FN and ignores its opaque pointer, so null is
    // fine; it is a plain function with no state, valid for the whole process, and safe to run
    // on any libsrt thread at once (it only formats and hands the line to `tracing`).
    unsafe { sys::srt_setloghandler(std::ptr::null_mut(), Some(on_log)) };
}

/// libsrt's log callback.
unsafe extern "C" fn on_log(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    // SAFETY: libsrt passes the area name as a NUL-terminated string (or null, handled) valid
    // for the duration of this call; it is copied before returning.
    let area = unsafe { c_text(area) };
    // SAFETY: likewise for the message.
    let message = unsafe { c_text(message) };
    // A panic must not unwind into C; there is nothing to do about a failed log line.
    let _ = catch_unwind(|| {
        if level <= sys::LOG_CRIT {
            tracing::error!(target: "libsrt", %area, "{}", message.trim_end());
        } else {
            tracing::debug!(target: "libsrt", %area, "{}", message.trim_end());
        }
    });
}

/// Copies a C string that may be null.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string valid for the duration of the call.
unsafe fn c_text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// An SRT socket id, as libsrt names sockets in epoll events and the listen callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId(i32);

impl SocketId {
    /// Any id, for tests of code that keeps ids.
    #[cfg(test)]
    pub(crate) fn for_tests(id: i32) -> SocketId {
        SocketId(id)
    }
}

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// The state of a socket, as `srt_getsockstate` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// Created.
    Init,
    /// Bound.
    Opened,
    /// Listening.
    Listening,
    /// Handshake in progress.
    Connecting,
    /// Connected.
    Connected,
    /// The connection broke (peer gone or timed out).
    Broken,
    /// Being closed.
    Closing,
    /// Closed.
    Closed,
    /// libsrt no longer knows the socket.
    Gone,
}

impl SocketState {
    /// Whether the socket is finished: broken, closing, closed or gone.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            SocketState::Broken | SocketState::Closing | SocketState::Closed | SocketState::Gone
        )
    }
}

/// The state of any socket, including one this process does not own (a handshake the listen
/// callback let through but that was never accepted).
pub fn socket_state(id: SocketId) -> SocketState {
    match sys::srt_getsockstate(id.0) {
        sys::SRTS_INIT => SocketState::Init,
        sys::SRTS_OPENED => SocketState::Opened,
        sys::SRTS_LISTENING => SocketState::Listening,
        sys::SRTS_CONNECTING => SocketState::Connecting,
        sys::SRTS_CONNECTED => SocketState::Connected,
        sys::SRTS_BROKEN => SocketState::Broken,
        sys::SRTS_CLOSING => SocketState::Closing,
        sys::SRTS_CLOSED => SocketState::Closed,
        sys::SRTS_NONEXIST => SocketState::Gone,
        // Not in the 1.5 header; treat like an unknown socket.
        _ => SocketState::Gone,
    }
}

/// AES key length for encryption (`SRTO_PBKEYLEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLength {
    /// AES-128.
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
}

impl KeyLength {
    fn bytes(self) -> c_int {
        match self {
            KeyLength::Aes128 => 16,
            KeyLength::Aes192 => 24,
            KeyLength::Aes256 => 32,
        }
    }
}

/// Sets an integer (or boolean: libsrt accepts `int` for those) option.
fn set_int(id: i32, option: c_int, name: &'static str, value: c_int) -> Result<(), SrtError> {
    // SAFETY: `value` is a live `c_int`, and the length passed is exactly its size; libsrt copies
    // the value during the call and keeps no pointer.
    let rc = unsafe {
        sys::srt_setsockopt(
            id,
            0,
            option,
            (&value as *const c_int).cast::<c_void>(),
            std::mem::size_of::<c_int>() as c_int,
        )
    };
    if rc == sys::SRT_ERROR {
        return Err(SrtError::last(name));
    }
    Ok(())
}

/// Sets the passphrase (10 to 79 bytes, or empty for none) of socket `id`.
fn set_passphrase(id: i32, passphrase: &str) -> Result<(), SrtError> {
    let len = c_int::try_from(passphrase.len())
        .map_err(|_| SrtError::local("set passphrase", "passphrase too long"))?;
    // SAFETY: the pointer and length describe `passphrase`'s bytes, alive for the call; libsrt
    // copies them (it takes a length, so no NUL terminator is needed) and keeps no pointer.
    let rc = unsafe {
        sys::srt_setsockopt(
            id,
            0,
            sys::SRTO_PASSPHRASE,
            passphrase.as_ptr().cast::<c_void>(),
            len,
        )
    };
    if rc == sys::SRT_ERROR {
        return Err(SrtError::last(
            "set passphrase (it must be 10 to 79 characters)",
        ));
    }
    Ok(())
}

/// A socket address in the C layout, to pass to libsrt.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    fn new(addr: SocketAddr) -> RawAddr {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    // Network order is the octets in memory order.
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    /// Pointer and length for libsrt; valid while `self` is.
    fn as_ptr(&self) -> (*const sockaddr, c_int) {
        match self {
            RawAddr::V4(a) => (
                (a as *const libc::sockaddr_in).cast::<sockaddr>(),
                std::mem::size_of::<libc::sockaddr_in>() as c_int,
            ),
            RawAddr::V6(a) => (
                (a as *const libc::sockaddr_in6).cast::<sockaddr>(),
                std::mem::size_of::<libc::sockaddr_in6>() as c_int,
            ),
        }
    }
}

/// Storage libsrt writes a socket address into (the size and alignment of `sockaddr_storage`).
#[repr(C, align(8))]
struct AddrBuf([u8; std::mem::size_of::<libc::sockaddr_storage>()]);

impl AddrBuf {
    fn new() -> AddrBuf {
        AddrBuf([0; std::mem::size_of::<libc::sockaddr_storage>()])
    }

    /// The address libsrt wrote, `len` bytes of it.
    fn read(&self, len: c_int) -> Option<SocketAddr> {
        let len = usize::try_from(len).ok()?.min(self.0.len());
        // SAFETY: the pointer and length stay within `self.0`, which is initialised.
        unsafe { read_sockaddr(self.0.as_ptr().cast::<sockaddr>(), len) }
    }
}

/// Reads a C socket address of `len` bytes (IPv4 or IPv6; anything else is `None`). IPv4 peers
/// of a dual-stack socket come back as plain IPv4.
///
/// # Safety
/// `addr` is null or points to at least `len` readable bytes.
unsafe fn read_sockaddr(addr: *const sockaddr, len: usize) -> Option<SocketAddr> {
    if addr.is_null() || len < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least `sa_family_t` bytes are readable (checked above); unaligned reads need no
    // alignment, and every bit pattern is a valid integer.
    let family = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sa_family_t>()) };
    match c_int::from(family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: `len` covers a whole sockaddr_in (checked in the guard), which is plain
            // integers, so any bytes are a valid value.
            let a = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: `len` covers a whole sockaddr_in6 (checked in the guard), plain integers.
            let a = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            let v6 = SocketAddrV6::new(ip, port, u32::from_be(a.sin6_flowinfo), a.sin6_scope_id);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(v6),
            })
        }
        _ => None,
    }
}

/// What [`Socket::recv`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A message of this many bytes is at the start of the buffer.
    Message(usize),
    /// Nothing to read now (non-blocking socket).
    Nothing,
}

/// Receive-side counters of a connection (`srt_bstats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Data packets received, retransmissions included.
    pub packets: i64,
    /// Packets detected lost (a retransmission may still have recovered them).
    pub lost: i64,
    /// Packets dropped because they came too late to play (lost for good).
    pub dropped: i64,
    /// Packets that could not be decrypted.
    pub undecrypted: i64,
    /// Payload bytes received.
    pub bytes: u64,
}

/// An SRT socket; closed on drop.
pub struct Socket {
    id: i32,
    _runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socket(@{})", self.id)
    }
}

impl Socket {
    /// The socket's id.
    pub fn id(&self) -> SocketId {
        SocketId(self.id)
    }

    /// Selects live mode (`SRTO_TRANSTYPE` = `SRTT_LIVE`): message API, timestamp-based
    /// delivery, too-late packets dropped, no linger on close.
    pub fn set_live_mode(&self) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_TRANSTYPE,
            "set live mode",
            sys::SRTT_LIVE,
        )
    }

    /// Makes receiving and sending non-blocking (`SRTO_RCVSYN`, `SRTO_SNDSYN`), or blocking.
    /// Accepted sockets inherit it from the listener.
    pub fn set_blocking(&self, blocking: bool) -> Result<(), SrtError> {
        let value = c_int::from(blocking);
        set_int(self.id, sys::SRTO_RCVSYN, "set RCVSYN", value)?;
        set_int(self.id, sys::SRTO_SNDSYN, "set SNDSYN", value)
    }

    /// The receiver's buffering delay (`SRTO_RCVLATENCY`): how long lost packets may be
    /// retransmitted before they are given up.
    pub fn set_receive_latency(&self, latency: Duration) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_RCVLATENCY,
            "set receive latency",
            millis(latency),
        )
    }

    /// Both the receive latency and the latency asked of the peer (`SRTO_LATENCY`).
    pub fn set_latency(&self, latency: Duration) -> Result<(), SrtError> {
        set_int(self.id, sys::SRTO_LATENCY, "set latency", millis(latency))
    }

    /// The encryption passphrase (`SRTO_PASSPHRASE`, 10 to 79 characters).
    pub fn set_passphrase(&self, passphrase: &str) -> Result<(), SrtError> {
        set_passphrase(self.id, passphrase)
    }

    /// The AES key length (`SRTO_PBKEYLEN`); a listener takes the caller's.
    pub fn set_key_length(&self, length: KeyLength) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_PBKEYLEN,
            "set key length",
            length.bytes(),
        )
    }

    /// Whether both sides must agree on encryption (`SRTO_ENFORCEDENCRYPTION`): with it, a
    /// caller with no, or a wrong, passphrase is rejected during the handshake, and so is one
    /// that encrypts to a listener that does not.
    pub fn set_enforced_encryption(&self, enforced: bool) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_ENFORCEDENCRYPTION,
            "set enforced encryption",
            c_int::from(enforced),
        )
    }

    /// The largest payload per packet (`SRTO_PAYLOADSIZE`; 1316 = 7 TS packets by default).
    pub fn set_payload_size(&self, bytes: usize) -> Result<(), SrtError> {
        let bytes = c_int::try_from(bytes)
            .map_err(|_| SrtError::local("set payload size", "payload size too large"))?;
        set_int(self.id, sys::SRTO_PAYLOADSIZE, "set payload size", bytes)
    }

    /// Whether an IPv6 socket refuses IPv4 peers (`SRTO_IPV6ONLY`; set before binding).
    pub fn set_ipv6_only(&self, only: bool) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_IPV6ONLY,
            "set IPV6ONLY",
            c_int::from(only),
        )
    }

    /// The stream id the caller sent (`SRTO_STREAMID`), as raw bytes.
    pub fn stream_id(&self) -> Result<Vec<u8>, SrtError> {
        let mut buf = [0u8; STREAM_ID_BUFFER];
        let mut len = buf.len() as c_int;
        // SAFETY: `buf` is writable for `len` bytes and `len` is a live `c_int`; libsrt writes at
        // most `len` bytes and stores the id's length in `len`; neither pointer is kept.
        let rc = unsafe {
            sys::srt_getsockopt(
                self.id,
                0,
                sys::SRTO_STREAMID,
                buf.as_mut_ptr().cast::<c_void>(),
                &mut len,
            )
        };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("get stream id"));
        }
        // Never trust a length from outside beyond the buffer it describes.
        let len = usize::try_from(len).unwrap_or(0).min(buf.len());
        let id = &buf[..len];
        // Up to the terminator, should libsrt count it.
        let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
        Ok(id[..end].to_vec())
    }

    /// Binds to `addr` (IPv4 or IPv6). An IPv6 socket is made dual-stack first.
    pub fn bind(&self, addr: SocketAddr) -> Result<(), SrtError> {
        if addr.is_ipv6() {
            self.set_ipv6_only(false)?;
        }
        let raw = RawAddr::new(addr);
        let (ptr, len) = raw.as_ptr();
        // SAFETY: `ptr` points to `raw`, a complete sockaddr_in or sockaddr_in6 of exactly `len`
        // bytes that outlives the call; libsrt copies the address.
        let rc = unsafe { sys::srt_bind(self.id, ptr, len) };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("bind"));
        }
        Ok(())
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, SrtError> {
        let mut buf = AddrBuf::new();
        let mut len = buf.0.len() as c_int;
        // SAFETY: `buf` is a writable, suitably aligned sockaddr_storage-sized buffer and `len`
        // says its size; libsrt writes at most that and updates `len`; no pointer is kept.
        let rc = unsafe {
            sys::srt_getsockname(self.id, buf.0.as_mut_ptr().cast::<sockaddr>(), &mut len)
        };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("get local address"));
        }
        buf.read(len)
            .ok_or_else(|| SrtError::local("get local address", "not an IP address"))
    }

    /// Reads one message into `buf` (which should hold 1500 bytes: the largest live payload is
    /// 1456). Non-blocking sockets answer [`Received::Nothing`] when no message is ready.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Received, SrtError> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: `buf` is writable for `len` bytes (`len` is at most its length) for the whole
        // call; libsrt writes at most `len` bytes and keeps no pointer.
        let n = unsafe { sys::srt_recvmsg(self.id, buf.as_mut_ptr().cast::<c_char>(), len) };
        if n == sys::SRT_ERROR {
            let err = SrtError::last("receive");
            if err.code == sys::SRT_EASYNCRCV {
                return Ok(Received::Nothing);
            }
            return Err(err);
        }
        // libsrt never reports more than it was given room for; clamp anyway.
        Ok(Received::Message(
            usize::try_from(n).unwrap_or(0).min(buf.len()),
        ))
    }

    /// The state libsrt reports for this socket.
    pub fn state(&self) -> SocketState {
        socket_state(self.id())
    }

    /// Receive counters since the connection started (`srt_bstats`).
    pub fn stats(&self) -> Result<ReceiveStats, SrtError> {
        let mut perf = sys::CBytePerfMon::default();
        // SAFETY: `perf` is a live, writable CBytePerfMon whose layout matches the 1.5.1 header
        // (size checked by a unit test, version checked at start-up); libsrt fills it during the
        // call and keeps no pointer.
        let rc = unsafe { sys::srt_bstats(self.id, &mut perf, 0) };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("read statistics"));
        }
        Ok(ReceiveStats::from(&perf))
    }

    /// Like [`Socket::stats`], with the buffer gauges as instantaneous values
    /// (`srt_bistats`); with `clear`, the interval counters restart.
    pub fn instant_stats(&self, clear: bool) -> Result<ReceiveStats, SrtError> {
        let mut perf = sys::CBytePerfMon::default();
        // SAFETY: as in `stats`: a live, correctly laid out struct that libsrt only fills.
        let rc = unsafe { sys::srt_bistats(self.id, &mut perf, c_int::from(clear), 1) };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("read statistics"));
        }
        Ok(ReceiveStats::from(&perf))
    }

    /// Starts listening, with `hook` deciding on each caller during its handshake (see
    /// [`HandshakeRequest`]). The hook runs on a libsrt thread, must be quick, and must not
    /// block on anything the thread using the listener holds.
    pub fn listen<F>(self, backlog: u16, hook: F) -> Result<Listener, SrtError>
    where
        F: Fn(&HandshakeRequest<'_>) -> Result<(), RejectReason> + Send + Sync + 'static,
    {
        let hook: Box<HookState> = Box::new(HookState(Box::new(hook)));
        let opaque = (&*hook as *const HookState).cast_mut().cast::<c_void>();
        // SAFETY: `on_handshake` matches srt_listen_callback_fn. `opaque` points to the boxed
        // hook, which is moved (the heap allocation does not move) into the returned Listener
        // and freed only after `Listener::drop` has closed the listening socket (or never, if
        // libsrt refuses the close): srt_close of a listener removes it from libsrt's receive
        // queue under the lock the queue holds while calling the hook, so no call is running or
        // can start once it returns. The hook is `Send + Sync`, as libsrt calls it from its own
        // threads, possibly while the listener thread uses the Listener.
        let rc = unsafe { sys::srt_listen_callback(self.id, Some(on_handshake), opaque) };
        let listener = Listener {
            socket: self,
            hook: Some(hook),
        };
        if rc == sys::SRT_ERROR {
            return Err(SrtError::last("install listen callback"));
        }
        if sys::srt_listen(listener.socket.id, c_int::from(backlog)) == sys::SRT_ERROR {
            return Err(SrtError::last("listen"));
        }
        Ok(listener)
    }
}

impl Socket {
    /// Closes the socket now; whether libsrt confirmed it. Drop then does nothing, so that the
    /// id (which libsrt does not reuse soon, but will eventually) is closed exactly once.
    fn close_now(&mut self) -> bool {
        let closed = sys::srt_close(self.id) != sys::SRT_ERROR;
        self.id = sys::SRT_INVALID_SOCK;
        closed
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.id != sys::SRT_INVALID_SOCK {
            // An error here means libsrt already dropped the socket (broken and collected).
            sys::srt_close(self.id);
        }
    }
}

/// Milliseconds as libsrt wants them, saturating.
fn millis(d: Duration) -> c_int {
    c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX)
}

impl From<&sys::CBytePerfMon> for ReceiveStats {
    fn from(p: &sys::CBytePerfMon) -> Self {
        ReceiveStats {
            packets: p.pkt_recv_total,
            lost: i64::from(p.pkt_rcv_loss_total),
            dropped: i64::from(p.pkt_rcv_drop_total),
            undecrypted: i64::from(p.pkt_rcv_undecrypt_total),
            bytes: p.byte_recv_total,
        }
    }
}

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
    id: i32,
    _callback: std::marker::PhantomData<&'a ()>,
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
struct HookState(Box<Hook>);

/// The listen callback libsrt calls on its receive thread for each caller's conclusion
/// handshake. Returns 0 to go on with the handshake, -1 to reject it.
unsafe extern "C" fn on_handshake(
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
    socket: Socket,
    hook: Option<Box<HookState>>,
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

/// What an epoll set watches a socket for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    readable: bool,
    errors: bool,
}

impl Interest {
    /// Readable (a message, or for a listener a caller to accept) and errors.
    pub const READ: Interest = Interest {
        readable: true,
        errors: true,
    };

    fn bits(self) -> c_int {
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
    id: c_int,
    _runtime: Arc<Runtime>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_library_is_libsrt_1_5() {
        let (major, minor, patch) = version();
        assert_eq!(
            (major, minor),
            EXPECTED_VERSION,
            "libsrt {major}.{minor}.{patch}"
        );
        Srt::acquire().expect("start-up accepts this version");
    }

    #[test]
    fn struct_layouts_match_the_1_5_1_header() {
        // Sizes and offsets printed by a C program compiled against /usr/include/srt/srt.h
        // 1.5.1 on x86_64 (LP64); they hold on every LP64 target.
        #[cfg(target_pointer_width = "64")]
        {
            use std::mem::{offset_of, size_of};
            assert_eq!(size_of::<sys::CBytePerfMon>(), 496);
            assert_eq!(offset_of!(sys::CBytePerfMon, pkt_recv_total), 16);
            assert_eq!(offset_of!(sys::CBytePerfMon, pkt_rcv_loss_total), 28);
            assert_eq!(offset_of!(sys::CBytePerfMon, pkt_rcv_drop_total), 68);
            assert_eq!(offset_of!(sys::CBytePerfMon, pkt_rcv_undecrypt_total), 72);
            assert_eq!(offset_of!(sys::CBytePerfMon, byte_recv_total), 88);
            assert_eq!(offset_of!(sys::CBytePerfMon, ms_rtt), 328);
            assert_eq!(offset_of!(sys::CBytePerfMon, pkt_recv_unique_total), 440);
            assert_eq!(offset_of!(sys::CBytePerfMon, byte_recv_unique), 488);
        }
        assert_eq!(std::mem::size_of::<sys::SRT_EPOLL_EVENT>(), 8);
        assert_eq!(
            std::mem::size_of::<Event>(),
            std::mem::size_of::<sys::SRT_EPOLL_EVENT>()
        );
    }

    fn listener(srt: &Srt, addr: &str) -> Listener {
        let socket = srt.socket().expect("socket");
        socket.set_live_mode().expect("live");
        socket.set_blocking(false).expect("non-blocking");
        socket
            .set_receive_latency(Duration::from_millis(120))
            .expect("latency");
        socket.set_payload_size(1316).expect("payload size");
        socket.set_enforced_encryption(true).expect("enforced");
        socket.bind(addr.parse().expect("addr")).expect("bind");
        socket.listen(8, |_| Ok(())).expect("listen")
    }

    #[test]
    fn a_socket_binds_listens_and_closes_on_ipv4() {
        let srt = Srt::acquire().expect("libsrt");
        let listener = listener(&srt, "127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        assert_eq!(socket_state(listener.id()), SocketState::Listening);
        assert!(
            listener.accept().expect("accept").is_none(),
            "no caller yet"
        );
        let id = listener.id();
        drop(listener);
        assert!(socket_state(id).is_finished());
    }

    #[test]
    fn a_socket_binds_on_ipv6() {
        let srt = Srt::acquire().expect("libsrt");
        let socket = srt.socket().expect("socket");
        // Hosts without IPv6 cannot bind ::1; that is not this code's failure.
        if socket.bind("[::1]:0".parse().expect("addr")).is_ok() {
            let addr = socket.local_addr().expect("local address");
            assert_eq!(addr.ip(), std::net::IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
    }

    #[test]
    fn a_busy_port_is_an_error_with_its_kind() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let addr = taken.local_addr().expect("addr");
        let srt = Srt::acquire().expect("libsrt");
        let socket = srt.socket().expect("socket");
        let err = socket.bind(addr).expect_err("port in use");
        assert_eq!(
            std::io::Error::from(err).kind(),
            std::io::ErrorKind::AddrInUse
        );
    }

    #[test]
    fn epoll_waits_out_its_timeout_and_reports_nothing() {
        let srt = Srt::acquire().expect("libsrt");
        let listener = listener(&srt, "127.0.0.1:0");
        let epoll = srt.epoll().expect("epoll");
        epoll.add(listener.id(), Interest::READ).expect("add");
        let mut events = [Event::default(); 4];
        let start = std::time::Instant::now();
        let ready = epoll
            .wait(&mut events, Duration::from_millis(50))
            .expect("wait");
        assert!(ready.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(40));
        epoll.remove(listener.id()).expect("remove");
    }

    #[test]
    fn recv_on_a_socket_that_never_connected_is_a_disconnect() {
        let srt = Srt::acquire().expect("libsrt");
        let socket = srt.socket().expect("socket");
        socket.set_blocking(false).expect("non-blocking");
        let mut buf = [0u8; 1500];
        let err = socket.recv(&mut buf).expect_err("not connected");
        assert!(err.is_disconnect(), "{err}");
    }

    #[test]
    fn socket_addresses_survive_the_c_layout() {
        for addr in [
            "192.0.2.7:9000",
            "[2001:db8::1]:9000",
            "[::ffff:10.0.0.1]:5",
        ] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let raw = RawAddr::new(addr);
            let (ptr, len) = raw.as_ptr();
            // SAFETY: `ptr` points to `raw`, `len` bytes, alive for the call.
            let back = unsafe { read_sockaddr(ptr, len as usize) }.expect("an address");
            match addr {
                SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => {
                    assert_eq!(back.ip(), std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
                }
                _ => assert_eq!(back, addr),
            }
        }
        // SAFETY: null is allowed.
        assert_eq!(unsafe { read_sockaddr(std::ptr::null(), 16) }, None);
    }

    #[test]
    fn a_reject_reason_is_one_an_application_may_set() {
        for reason in [
            RejectReason::BadRequest,
            RejectReason::Unauthorized,
            RejectReason::Overload,
            RejectReason::Forbidden,
            RejectReason::BadMode,
            RejectReason::UnsupportedMedia,
            RejectReason::InternalError,
        ] {
            assert!((1000..2000).contains(&reason.code()), "{reason:?}");
        }
    }
}
