//! Writes a movie fragment (`moof` + `mdat`) for one track from a list of samples.
//!
//! The packager uses it to cut parts on its own boundaries: a part is exactly one fragment,
//! and a segment is the concatenation of its parts, so both carry identical samples.

use bytes::{BufMut, Bytes, BytesMut};

use super::fragment::Sample;

/// tfhd flag: sample data offsets are relative to the start of the moof.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// trun flags: data offset, then per-sample duration, size, flags and (optionally)
/// composition offset.
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_SAMPLE_DURATION: u32 = 0x100;
const TRUN_SAMPLE_SIZE: u32 = 0x200;
const TRUN_SAMPLE_FLAGS: u32 = 0x400;
const TRUN_SAMPLE_CTO: u32 = 0x800;

fn put_header(buf: &mut BytesMut, size: usize, box_type: &[u8; 4]) {
    buf.put_u32(size as u32);
    buf.put_slice(box_type);
}

fn put_full_header(buf: &mut BytesMut, size: usize, box_type: &[u8; 4], version: u8, flags: u32) {
    put_header(buf, size, box_type);
    buf.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
}

/// Writes one `moof` + `mdat` holding `samples` of `track_id`, whose `tfdt` is the first
/// sample's decode time.
///
/// Samples must be non-empty and contiguous in decode order; each keeps its own duration, size,
/// flags and composition offset. A sample's size must fit in 32 bits.
///
/// ```
/// use bytes::Bytes;
/// use corral_transcoder::fmp4::{Sample, write_fragment, SYNC_SAMPLE_FLAGS};
/// let sample = Sample {
///     decode_time: 90_000,
///     duration: 3_000,
///     flags: SYNC_SAMPLE_FLAGS,
///     composition_offset: 0,
///     data: Bytes::from_static(b"frame"),
/// };
/// let fragment = write_fragment(7, 1, &[sample]);
/// assert_eq!(&fragment[4..8], b"moof");
/// ```
pub fn write_fragment(sequence: u32, track_id: u32, samples: &[Sample]) -> Bytes {
    let has_cto = samples.iter().any(|s| s.composition_offset != 0);
    let negative_cto = samples.iter().any(|s| s.composition_offset < 0);
    let mut trun_flags =
        TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS;
    let mut entry_len = 12;
    if has_cto {
        trun_flags |= TRUN_SAMPLE_CTO;
        entry_len += 4;
    }
    let trun_len = 8 + 4 + 4 + 4 + entry_len * samples.len();
    let tfhd_len = 8 + 4 + 4;
    let tfdt_len = 8 + 4 + 8;
    let traf_len = 8 + tfhd_len + tfdt_len + trun_len;
    let mfhd_len = 8 + 4 + 4;
    let moof_len = 8 + mfhd_len + traf_len;
    let payload_len: usize = samples.iter().map(|s| s.data.len()).sum();
    let mdat_len = 8 + payload_len;

    let mut buf = BytesMut::with_capacity(moof_len + mdat_len);
    put_header(&mut buf, moof_len, b"moof");
    put_full_header(&mut buf, mfhd_len, b"mfhd", 0, 0);
    buf.put_u32(sequence);
    put_header(&mut buf, traf_len, b"traf");
    put_full_header(&mut buf, tfhd_len, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
    buf.put_u32(track_id);
    put_full_header(&mut buf, tfdt_len, b"tfdt", 1, 0);
    buf.put_u64(samples.first().map_or(0, |s| s.decode_time));
    put_full_header(
        &mut buf,
        trun_len,
        b"trun",
        u8::from(negative_cto),
        trun_flags,
    );
    buf.put_u32(samples.len() as u32);
    buf.put_i32((moof_len + 8) as i32);
    for s in samples {
        buf.put_u32(s.duration);
        buf.put_u32(s.data.len() as u32);
        buf.put_u32(s.flags);
        if has_cto {
            buf.put_i32(s.composition_offset);
        }
    }
    put_header(&mut buf, mdat_len, b"mdat");
    for s in samples {
        buf.put_slice(&s.data);
    }
    buf.freeze()
}
