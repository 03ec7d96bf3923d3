//! Socket addresses between Rust and the C layout libsrt takes and returns.

#[allow(unused_imports)]
use super::*;

/// A socket address in the C layout, to pass to libsrt.
pub(super) enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    pub(super) fn new(addr: SocketAddr) -> RawAddr {
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
    pub(super) fn as_ptr(&self) -> (*const sockaddr, c_int) {
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
pub(super) struct AddrBuf(pub(super) [u8; std::mem::size_of::<libc::sockaddr_storage>()]);

impl AddrBuf {
    pub(super) fn new() -> AddrBuf {
        AddrBuf([0; std::mem::size_of::<libc::sockaddr_storage>()])
    }

    /// The address libsrt wrote, `len` bytes of it.
    pub(super) fn read(&self, len: c_int) -> Option<SocketAddr> {
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
pub(super) unsafe fn read_sockaddr(addr: *const sockaddr, len: usize) -> Option<SocketAddr> {
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
