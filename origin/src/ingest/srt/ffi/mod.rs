//! Hand-written bindings to the system libsrt 1.5 (`libsrt-gnutls`), and the small safe API the
//! SRT listener uses: the library's start-up, sockets and their options, bind/listen/accept, the
//! listen callback (access control during the handshake), receiving messages, epoll, reject
//! reasons and receive statistics.
//!
//! This is the only module of the crate with `unsafe` code. Every constant is copied from
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

mod addr;
mod epoll;
mod listen;
mod socket;
mod sys;
#[cfg(test)]
mod tests;

use addr::*;
pub use epoll::*;
pub use listen::*;
pub use socket::*;

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
