//! Tests of the bindings against the loaded libsrt.

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
