//! Movie fragments (`moof` + `mdat`): their samples with decode times, durations, flags and data.

use bytes::Bytes;

use super::Fmp4Error;
use super::boxes::{Children, cursor, require_child};
use super::init::{InitSegment, TrackDefaults};

/// ISO sample flag: the sample is not a sync sample (not a keyframe).
pub const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;
/// The sample flags of a sync sample that no other sample depends on being decoded first
/// (`sample_depends_on = 2`).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// The sample flags of a non-sync sample that depends on others (`sample_depends_on = 1`).
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Most samples one `trun` may declare; far above any real fragment, it bounds memory.
const MAX_SAMPLES_PER_RUN: u32 = 1 << 20;

/// Latest decode time accepted (in ticks): thousands of years at any real timescale, and far
/// enough below `u64::MAX` that no sum of decode times and durations downstream can overflow.
pub const MAX_DECODE_TIME: u64 = 1 << 62;

/// One coded sample (a video frame or an audio frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track's timescale.
    pub decode_time: u64,
    /// Duration in the track's timescale.
    pub duration: u32,
    /// ISO sample flags.
    pub flags: u32,
    /// Composition (presentation) time minus decode time.
    pub composition_offset: i32,
    /// The coded bytes.
    pub data: Bytes,
}

impl Sample {
    /// Whether the sample can be decoded without earlier samples (a keyframe).
    pub fn is_sync(&self) -> bool {
        self.flags & SAMPLE_IS_NON_SYNC == 0
    }

    /// Decode time just after this sample.
    pub fn end_time(&self) -> u64 {
        self.decode_time + u64::from(self.duration)
    }
}

/// The samples of one track within a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    /// The track these samples belong to.
    pub track_id: u32,
    /// Decode time of the first sample (`tfdt`), in the track's timescale.
    pub decode_time: u64,
    /// The samples, in decode order.
    pub samples: Vec<Sample>,
}

impl TrackRun {
    /// Total duration of the samples, in the track's timescale.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }

    /// Whether the run starts with a sync sample.
    pub fn is_keyframe(&self) -> bool {
        self.samples.first().is_some_and(Sample::is_sync)
    }
}

/// One movie fragment: its sequence number and the samples of each track it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `mfhd` sequence number.
    pub sequence: u32,
    /// One run per `traf`.
    pub tracks: Vec<TrackRun>,
}

impl Fragment {
    /// Parses `bytes`, which holds a `moof` box of `moof_len` bytes followed by its `mdat` box,
    /// whose header is `mdat_header_len` bytes long. Sample data is sliced from `bytes` without
    /// copying.
    pub fn parse(
        bytes: &Bytes,
        moof_len: usize,
        mdat_header_len: usize,
        init: &InitSegment,
    ) -> Result<Fragment, Fmp4Error> {
        let moof_header_len = super::boxes::BoxHeader::parse(bytes)?
            .map(|h| h.header_len)
            .ok_or_else(|| Fmp4Error::invalid(*b"moof", "header missing"))?;
        let moof_payload = bytes
            .get(moof_header_len..moof_len)
            .ok_or_else(|| Fmp4Error::invalid(*b"moof", "shorter than its header"))?;
        let mdat_payload_start = moof_len + mdat_header_len;
        let mdat_end = bytes.len();

        let mfhd = require_child(moof_payload, *b"moof", *b"mfhd")?;
        let mut c = cursor(mfhd.payload, *b"mfhd");
        c.version_and_flags()?;
        let sequence = c.u32()?;

        let mut tracks = Vec::new();
        // Where the previous traf's data ended, the base for a traf without an explicit base.
        let mut previous_traf_end: u64 = 0;
        for child in Children::new(moof_payload, *b"moof") {
            let child = child?;
            if child.box_type != *b"traf" {
                continue;
            }
            let is_first_traf = tracks.is_empty();
            let (run, data_end) = parse_traf(
                child.payload,
                bytes,
                init,
                if is_first_traf { 0 } else { previous_traf_end },
                mdat_payload_start as u64,
                mdat_end as u64,
            )?;
            previous_traf_end = data_end;
            tracks.push(run);
        }
        if tracks.is_empty() {
            return Err(Fmp4Error::invalid(*b"moof", "has no 'traf' box"));
        }
        Ok(Fragment { sequence, tracks })
    }
}

/// `tfhd` fields and the defaults resolved against `trex`.
struct TrackFragmentHeader {
    track_id: u32,
    defaults: TrackDefaults,
    default_base_is_moof: bool,
}

fn parse_tfhd(payload: &[u8], init: &InitSegment) -> Result<TrackFragmentHeader, Fmp4Error> {
    let mut c = cursor(payload, *b"tfhd");
    let (_, flags) = c.version_and_flags()?;
    let track_id = c.u32()?;
    let track = init.track(track_id).ok_or_else(|| {
        Fmp4Error::invalid(
            *b"tfhd",
            format!("refers to track {track_id}, which the init segment does not declare"),
        )
    })?;
    let mut defaults = track.defaults;
    if flags & 0x01 != 0 {
        return Err(Fmp4Error::unsupported(
            *b"tfhd",
            "an absolute base-data-offset cannot be resolved in a live stream",
        ));
    }
    if flags & 0x02 != 0 {
        c.skip(4)?;
    }
    if flags & 0x08 != 0 {
        defaults.sample_duration = c.u32()?;
    }
    if flags & 0x10 != 0 {
        defaults.sample_size = c.u32()?;
    }
    if flags & 0x20 != 0 {
        defaults.sample_flags = c.u32()?;
    }
    Ok(TrackFragmentHeader {
        track_id,
        defaults,
        default_base_is_moof: flags & 0x02_0000 != 0,
    })
}

fn parse_traf(
    traf: &[u8],
    bytes: &Bytes,
    init: &InitSegment,
    implicit_base: u64,
    mdat_payload_start: u64,
    mdat_end: u64,
) -> Result<(TrackRun, u64), Fmp4Error> {
    let tfhd = parse_tfhd(require_child(traf, *b"traf", *b"tfhd")?.payload, init)?;
    let base = if tfhd.default_base_is_moof {
        0
    } else {
        implicit_base
    };

    let tfdt = require_child(traf, *b"traf", *b"tfdt")?;
    let mut c = cursor(tfdt.payload, *b"tfdt");
    let (version, _) = c.version_and_flags()?;
    let decode_time = if version == 1 {
        c.u64()?
    } else {
        u64::from(c.u32()?)
    };
    if decode_time > MAX_DECODE_TIME {
        return Err(Fmp4Error::invalid(
            *b"tfdt",
            format!("decode time {decode_time} is beyond {MAX_DECODE_TIME}"),
        ));
    }

    let mut samples = Vec::new();
    let mut next_decode_time = decode_time;
    let mut data_cursor = base;
    let mut first_run = true;
    for child in Children::new(traf, *b"traf") {
        let child = child?;
        if child.box_type != *b"trun" {
            continue;
        }
        let mut c = cursor(child.payload, *b"trun");
        let (version, flags) = c.version_and_flags()?;
        let count = c.u32()?;
        if count > MAX_SAMPLES_PER_RUN {
            return Err(Fmp4Error::invalid(
                *b"trun",
                format!("declares {count} samples (limit {MAX_SAMPLES_PER_RUN})"),
            ));
        }
        if flags & 0x01 != 0 {
            let offset = i64::from(c.i32()?);
            data_cursor = u64::try_from(base as i64 + offset).map_err(|_| {
                Fmp4Error::invalid(
                    *b"trun",
                    format!("data offset {offset} points before the moof"),
                )
            })?;
        } else if first_run {
            data_cursor = base;
        }
        first_run = false;
        let first_sample_flags = if flags & 0x04 != 0 {
            Some(c.u32()?)
        } else {
            None
        };
        let per_sample_bytes = 4 * [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&bit| flags & bit != 0)
            .count();
        if per_sample_bytes * count as usize > c.remaining() {
            return Err(Fmp4Error::invalid(
                *b"trun",
                format!("declares {count} samples but holds entries for fewer"),
            ));
        }
        samples.reserve(count.min(4096) as usize);
        for i in 0..count {
            let duration = if flags & 0x100 != 0 {
                c.u32()?
            } else {
                tfhd.defaults.sample_duration
            };
            let size = if flags & 0x200 != 0 {
                c.u32()?
            } else {
                tfhd.defaults.sample_size
            };
            let sample_flags = if flags & 0x400 != 0 {
                c.u32()?
            } else {
                tfhd.defaults.sample_flags
            };
            let sample_flags = match (i, first_sample_flags) {
                (0, Some(f)) => f,
                _ => sample_flags,
            };
            let composition_offset = if flags & 0x800 != 0 {
                let raw = c.u32()?;
                if version == 0 {
                    i32::try_from(raw).map_err(|_| {
                        Fmp4Error::invalid(*b"trun", format!("composition offset {raw} overflows"))
                    })?
                } else {
                    raw as i32
                }
            } else {
                0
            };
            let start = data_cursor;
            let end = start + u64::from(size);
            if start < mdat_payload_start || end > mdat_end {
                return Err(Fmp4Error::invalid(
                    *b"trun",
                    format!(
                        "sample {i} of track {} spans bytes {start}..{end}, outside the mdat payload {mdat_payload_start}..{mdat_end}",
                        tfhd.track_id
                    ),
                ));
            }
            samples.push(Sample {
                decode_time: next_decode_time,
                duration,
                flags: sample_flags,
                composition_offset,
                data: bytes.slice(start as usize..end as usize),
            });
            next_decode_time = next_decode_time
                .checked_add(u64::from(duration))
                .filter(|t| *t <= MAX_DECODE_TIME)
                .ok_or_else(|| {
                    Fmp4Error::invalid(
                        *b"trun",
                        format!("sample {i} ends beyond decode time {MAX_DECODE_TIME}"),
                    )
                })?;
            data_cursor = end;
        }
    }
    if samples.is_empty() {
        return Err(Fmp4Error::invalid(
            *b"traf",
            format!("track {} fragment has no samples", tfhd.track_id),
        ));
    }
    Ok((
        TrackRun {
            track_id: tfhd.track_id,
            decode_time,
            samples,
        },
        data_cursor,
    ))
}
