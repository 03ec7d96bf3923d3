//! An SRT socket: options, bind, receive, state and statistics.

#[allow(unused_imports)]
use super::*;

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
    pub(super) id: i32,
    pub(super) _runtime: Arc<Runtime>,
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
    pub(super) fn close_now(&mut self) -> bool {
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
pub(super) fn millis(d: Duration) -> c_int {
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
