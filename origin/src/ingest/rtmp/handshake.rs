//! The server side of the RTMP handshake, sans-IO.
//!
//! The client sends C0 (the version byte, 3) and C1 (1536 bytes); the server answers S0, S1
//! (its time, four zero bytes, random bytes) and S2 (C1 echoed), then waits for C2 (1536 bytes,
//! whose content nobody checks). This is the "simple" handshake: ffmpeg's publisher and librtmp
//! (OBS) accept it for plain `rtmp://`; the digest handshake only matters to Flash players and
//! RTMPE, which we do not serve. Bytes after C2 already belong to the chunk stream and are
//! handed back.

/// The only RTMP version served: plain, unencrypted RTMP.
pub const RTMP_VERSION: u8 = 3;
/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// C0 named a version other than 3 (6 is RTMPE; anything else is not RTMP at all).
    #[error(
        "RTMP version {0} is not supported: publish over plain rtmp:// (version 3), not rtmpe, rtmps or another protocol"
    )]
    UnsupportedVersion(u8),
}

/// Where a handshake stands after some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// More input is needed.
    InProgress,
    /// C2 has arrived; `leftover` is what followed it, the start of the chunk stream.
    Done {
        /// Bytes received after C2.
        leftover: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the version byte.
    C0,
    /// Collecting C1.
    C1,
    /// S0S1S2 is out; counting C2's bytes.
    C2 {
        received: usize,
    },
    Done,
}

/// A server handshake in progress.
///
/// ```
/// use corral_origin::ingest::rtmp::handshake::{Handshake, HandshakeStatus, HANDSHAKE_SIZE};
///
/// let mut hs = Handshake::new(0, 42);
/// let mut c0c1 = vec![3];
/// c0c1.extend(std::iter::repeat_n(7, HANDSHAKE_SIZE));
/// assert_eq!(hs.receive(&c0c1).unwrap(), HandshakeStatus::InProgress);
/// assert_eq!(hs.take_output().len(), 1 + 2 * HANDSHAKE_SIZE);
/// let status = hs.receive(&[0; HANDSHAKE_SIZE + 2]).unwrap();
/// assert_eq!(status, HandshakeStatus::Done { leftover: vec![0, 0] });
/// ```
#[derive(Debug, Clone)]
pub struct Handshake {
    phase: Phase,
    /// C1 as it arrives (S2 echoes it); bounded by [`HANDSHAKE_SIZE`].
    c1: Vec<u8>,
    out: Vec<u8>,
    time_ms: u32,
    random: XorShift,
}

impl Handshake {
    /// A handshake that will put `time_ms` in S1 and fill the rest of S1 from `seed`.
    ///
    /// The random part of S1 only has to differ between connections; it guards nothing here,
    /// so a generator seeded from the clock is enough.
    pub fn new(time_ms: u32, seed: u64) -> Self {
        Self {
            phase: Phase::C0,
            c1: Vec::new(),
            out: Vec::new(),
            time_ms,
            random: XorShift::new(seed),
        }
    }

    /// Feeds received bytes. After an error the connection must be closed.
    ///
    /// Once [`HandshakeStatus::Done`] was returned, further input is handed straight back as
    /// leftover.
    pub fn receive(&mut self, mut input: &[u8]) -> Result<HandshakeStatus, HandshakeError> {
        loop {
            match self.phase {
                Phase::C0 => {
                    let Some((&version, rest)) = input.split_first() else {
                        return Ok(HandshakeStatus::InProgress);
                    };
                    // Checked at once, so that a stray protocol fails on its first byte.
                    if version != RTMP_VERSION {
                        return Err(HandshakeError::UnsupportedVersion(version));
                    }
                    input = rest;
                    self.c1.reserve_exact(HANDSHAKE_SIZE);
                    self.phase = Phase::C1;
                }
                Phase::C1 => {
                    let take = (HANDSHAKE_SIZE - self.c1.len()).min(input.len());
                    self.c1.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.c1.len() < HANDSHAKE_SIZE {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    self.answer();
                    self.phase = Phase::C2 { received: 0 };
                }
                Phase::C2 { received } => {
                    let take = (HANDSHAKE_SIZE - received).min(input.len());
                    input = &input[take..];
                    let received = received + take;
                    if received < HANDSHAKE_SIZE {
                        self.phase = Phase::C2 { received };
                        return Ok(HandshakeStatus::InProgress);
                    }
                    self.phase = Phase::Done;
                    return Ok(HandshakeStatus::Done {
                        leftover: input.to_vec(),
                    });
                }
                Phase::Done => {
                    return Ok(HandshakeStatus::Done {
                        leftover: input.to_vec(),
                    });
                }
            }
        }
    }

    /// Bytes to send to the client (S0, S1 and S2 once C1 is complete); empty otherwise.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Writes S0, S1 and S2.
    fn answer(&mut self) {
        self.out.reserve_exact(1 + 2 * HANDSHAKE_SIZE);
        self.out.push(RTMP_VERSION);
        self.out.extend_from_slice(&self.time_ms.to_be_bytes());
        self.out.extend_from_slice(&[0; 4]);
        while self.out.len() < 1 + HANDSHAKE_SIZE {
            let word = self.random.next().to_be_bytes();
            let room = 1 + HANDSHAKE_SIZE - self.out.len();
            self.out.extend_from_slice(&word[..room.min(8)]);
        }
        self.out.extend_from_slice(&self.c1);
        // C1 is no longer needed; free it rather than hold it for the connection's life.
        self.c1 = Vec::new();
    }
}

/// xorshift64*: enough to make S1 differ between connections.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c0c1() -> Vec<u8> {
        let mut c = vec![RTMP_VERSION];
        c.extend((0..HANDSHAKE_SIZE).map(|i| (i * 7 % 251) as u8));
        c
    }

    fn check_answer(out: &[u8], c1: &[u8]) {
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], RTMP_VERSION);
        assert_eq!(&out[1..5], &1234u32.to_be_bytes(), "S1 time");
        assert_eq!(&out[5..9], &[0; 4], "S1 zero field");
        assert!(out[9..1 + HANDSHAKE_SIZE].iter().any(|&b| b != 0), "random");
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], c1, "S2 echoes C1");
    }

    #[test]
    fn a_whole_handshake_answers_and_completes() {
        let mut hs = Handshake::new(1234, 1);
        let c = c0c1();
        assert_eq!(hs.receive(&c), Ok(HandshakeStatus::InProgress));
        check_answer(&hs.take_output(), &c[1..]);
        assert!(hs.take_output().is_empty(), "sent once");
        assert_eq!(
            hs.receive(&[9; HANDSHAKE_SIZE]),
            Ok(HandshakeStatus::Done { leftover: vec![] })
        );
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_result() {
        let mut hs = Handshake::new(1234, 1);
        let c = c0c1();
        let mut out = Vec::new();
        for b in &c {
            assert_eq!(
                hs.receive(std::slice::from_ref(b)),
                Ok(HandshakeStatus::InProgress)
            );
            out.extend(hs.take_output());
        }
        check_answer(&out, &c[1..]);
        for _ in 0..HANDSHAKE_SIZE - 1 {
            assert_eq!(hs.receive(&[0]), Ok(HandshakeStatus::InProgress));
        }
        assert_eq!(
            hs.receive(&[0]),
            Ok(HandshakeStatus::Done { leftover: vec![] })
        );
    }

    #[test]
    fn everything_after_c2_is_leftover() {
        let mut hs = Handshake::new(1234, 1);
        let mut input = c0c1();
        input.extend([0; HANDSHAKE_SIZE]);
        input.extend([0x02, 0x00, 0x01]);
        assert_eq!(
            hs.receive(&input),
            Ok(HandshakeStatus::Done {
                leftover: vec![0x02, 0x00, 0x01]
            })
        );
        assert_eq!(hs.take_output().len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(
            hs.receive(&[5]),
            Ok(HandshakeStatus::Done { leftover: vec![5] }),
            "later input passes straight through"
        );
    }

    #[test]
    fn a_version_other_than_3_is_refused_on_the_first_byte() {
        for version in [0u8, 6, 0x16, b'G'] {
            let mut hs = Handshake::new(0, 1);
            assert_eq!(
                hs.receive(&[version]),
                Err(HandshakeError::UnsupportedVersion(version))
            );
            assert!(hs.take_output().is_empty());
        }
    }

    #[test]
    fn s1_differs_between_seeds() {
        let answer = |seed| {
            let mut hs = Handshake::new(0, seed);
            let _ = hs.receive(&c0c1());
            hs.take_output()
        };
        assert_ne!(answer(1), answer(2));
        assert_eq!(answer(0).len(), 1 + 2 * HANDSHAKE_SIZE, "seed 0 works too");
    }
}
