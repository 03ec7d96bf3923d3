//! The initialization segment (`ftyp` + `moov`): which tracks a stream carries, their timescales,
//! codecs (as RFC 6381 strings for the `CODECS` attribute) and the per-track fragment defaults
//! (`trex`) that fragments may rely on.

use bytes::Bytes;

use super::Fmp4Error;
use super::boxes::{Children, FourCc, cursor, descend, find_child, fourcc_str, require_child};

/// What kind of media a track carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    /// A video track and its coded size in pixels.
    Video {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// An audio track.
    Audio {
        /// Samples per second.
        sample_rate: u32,
        /// Channel count.
        channels: u16,
    },
    /// Any other handler (subtitles, metadata), kept by its handler type.
    Other(FourCc),
}

/// The defaults a fragment falls back to when its `tfhd` and `trun` omit a value (from `trex`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackDefaults {
    /// Default duration of one sample, in the track's timescale.
    pub sample_duration: u32,
    /// Default size of one sample, in bytes.
    pub sample_size: u32,
    /// Default ISO sample flags.
    pub sample_flags: u32,
}

/// One track of an initialization segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The track's ID, as `tfhd` refers to it.
    pub track_id: u32,
    /// Ticks per second of the track's media timeline.
    pub timescale: u32,
    /// Video, audio or other.
    pub media: MediaKind,
    /// The RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`), when the sample entry is one
    /// we can describe.
    pub codec: Option<String>,
    /// The sample entry's four-character code (`avc1`, `mp4a`, ...).
    pub sample_entry: FourCc,
    /// Fragment defaults from `mvex/trex`.
    pub defaults: TrackDefaults,
}

/// A parsed initialization segment: its exact bytes, to be served as `EXT-X-MAP`, and its tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// `ftyp` through `moov`, byte for byte as the producer wrote them.
    pub bytes: Bytes,
    /// The tracks declared in `moov`.
    pub tracks: Vec<TrackInfo>,
}

impl InitSegment {
    /// Parses the tracks of `moov_payload`; `bytes` is the whole init segment to keep.
    pub fn parse(bytes: Bytes, moov_payload: &[u8]) -> Result<InitSegment, Fmp4Error> {
        let mvex = find_child(moov_payload, *b"moov", *b"mvex")?.ok_or_else(|| {
            Fmp4Error::invalid(*b"moov", "has no 'mvex' box: the stream is not fragmented")
        })?;
        let mut tracks = Vec::new();
        for child in Children::new(moov_payload, *b"moov") {
            let child = child?;
            if child.box_type == *b"trak" {
                tracks.push(parse_trak(child.payload)?);
            }
        }
        if tracks.is_empty() {
            return Err(Fmp4Error::invalid(*b"moov", "declares no tracks"));
        }
        for child in Children::new(mvex.payload, *b"mvex") {
            let child = child?;
            if child.box_type != *b"trex" {
                continue;
            }
            let mut c = cursor(child.payload, *b"trex");
            c.version_and_flags()?;
            let track_id = c.u32()?;
            let _description_index = c.u32()?;
            let defaults = TrackDefaults {
                sample_duration: c.u32()?,
                sample_size: c.u32()?,
                sample_flags: c.u32()?,
            };
            if let Some(track) = tracks.iter_mut().find(|t| t.track_id == track_id) {
                track.defaults = defaults;
            }
        }
        Ok(InitSegment { bytes, tracks })
    }

    /// The track with this ID, if declared.
    pub fn track(&self, track_id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track_id == track_id)
    }
}

fn parse_trak(trak: &[u8]) -> Result<TrackInfo, Fmp4Error> {
    let tkhd = require_child(trak, *b"trak", *b"tkhd")?;
    let mut c = cursor(tkhd.payload, *b"tkhd");
    let (version, _) = c.version_and_flags()?;
    c.skip(if version == 1 { 16 } else { 8 })?;
    let track_id = c.u32()?;
    c.skip(4)?;
    c.skip(if version == 1 { 8 } else { 4 })?;
    c.skip(8 + 2 + 2 + 2 + 2 + 36)?;
    let tkhd_width = c.u32()? >> 16;
    let tkhd_height = c.u32()? >> 16;

    let mdia = require_child(trak, *b"trak", *b"mdia")?;
    let mdhd = require_child(mdia.payload, *b"mdia", *b"mdhd")?;
    let mut c = cursor(mdhd.payload, *b"mdhd");
    let (version, _) = c.version_and_flags()?;
    c.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = c.u32()?;
    if timescale == 0 {
        return Err(Fmp4Error::invalid(
            *b"mdhd",
            format!("track {track_id} has timescale 0"),
        ));
    }

    let hdlr = require_child(mdia.payload, *b"mdia", *b"hdlr")?;
    let mut c = cursor(hdlr.payload, *b"hdlr");
    c.version_and_flags()?;
    c.skip(4)?;
    let mut handler = [0u8; 4];
    handler.copy_from_slice(c.take(4)?);

    let stsd = descend(mdia.payload, *b"mdia", &[*b"minf", *b"stbl", *b"stsd"])?;
    let mut c = cursor(stsd, *b"stsd");
    c.version_and_flags()?;
    let entry_count = c.u32()?;
    if entry_count == 0 {
        return Err(Fmp4Error::invalid(
            *b"stsd",
            format!("track {track_id} has no sample entry"),
        ));
    }
    let entries = &stsd[c.position()..];
    let entry = Children::new(entries, *b"stsd")
        .next()
        .ok_or_else(|| Fmp4Error::invalid(*b"stsd", "sample entry missing"))??;

    let (media, codec) = match &handler {
        b"vide" => parse_visual_entry(entry.box_type, entry.payload, tkhd_width, tkhd_height)?,
        b"soun" => parse_audio_entry(entry.box_type, entry.payload)?,
        _ => (MediaKind::Other(handler), None),
    };
    Ok(TrackInfo {
        track_id,
        timescale,
        media,
        codec,
        sample_entry: entry.box_type,
        defaults: TrackDefaults::default(),
    })
}

/// Bytes of a VisualSampleEntry before its child boxes.
const VISUAL_ENTRY_FIELDS: usize = 78;
/// Bytes of a version-0 AudioSampleEntry before its child boxes.
const AUDIO_ENTRY_FIELDS: usize = 28;

fn parse_visual_entry(
    entry_type: FourCc,
    payload: &[u8],
    tkhd_width: u32,
    tkhd_height: u32,
) -> Result<(MediaKind, Option<String>), Fmp4Error> {
    let mut c = cursor(payload, entry_type);
    c.skip(8 + 16)?;
    let width = u32::from(c.u16()?);
    let height = u32::from(c.u16()?);
    let (width, height) = if width == 0 || height == 0 {
        (tkhd_width, tkhd_height)
    } else {
        (width, height)
    };
    let children = payload.get(VISUAL_ENTRY_FIELDS..).unwrap_or(&[]);
    let codec = match &entry_type {
        b"avc1" | b"avc3" => match find_child(children, entry_type, *b"avcC")? {
            Some(avcc) => {
                let mut c = cursor(avcc.payload, *b"avcC");
                let _version = c.u8()?;
                let profile = c.u8()?;
                let compatibility = c.u8()?;
                let level = c.u8()?;
                Some(format!(
                    "{}.{profile:02x}{compatibility:02x}{level:02x}",
                    fourcc_str(entry_type)
                ))
            }
            None => None,
        },
        _ => None,
    };
    Ok((MediaKind::Video { width, height }, codec))
}

fn parse_audio_entry(
    entry_type: FourCc,
    payload: &[u8],
) -> Result<(MediaKind, Option<String>), Fmp4Error> {
    let mut c = cursor(payload, entry_type);
    c.skip(8 + 8)?;
    let channels = c.u16()?;
    c.skip(2 + 2 + 2)?;
    let sample_rate = c.u32()? >> 16;
    let children = payload.get(AUDIO_ENTRY_FIELDS..).unwrap_or(&[]);
    let codec = match &entry_type {
        b"mp4a" => match find_child(children, entry_type, *b"esds")? {
            Some(esds) => mp4a_codec(esds.payload)?,
            None => None,
        },
        b"Opus" => Some("opus".to_string()),
        b"fLaC" => Some("flac".to_string()),
        _ => None,
    };
    Ok((
        MediaKind::Audio {
            sample_rate,
            channels,
        },
        codec,
    ))
}

/// Reads an MPEG-4 descriptor header (tag and variable-length size).
fn descriptor(c: &mut super::cursor::Cursor<'_>) -> Result<(u8, usize), Fmp4Error> {
    let tag = c.u8()?;
    let mut size = 0usize;
    for _ in 0..4 {
        let b = c.u8()?;
        size = (size << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok((tag, size))
}

/// Derives `mp4a.40.<audio object type>` from an `esds` box.
fn mp4a_codec(esds: &[u8]) -> Result<Option<String>, Fmp4Error> {
    let mut c = cursor(esds, *b"esds");
    c.version_and_flags()?;
    let (tag, _) = descriptor(&mut c)?;
    if tag != 0x03 {
        return Ok(None);
    }
    let _es_id = c.u16()?;
    let flags = c.u8()?;
    if flags & 0x80 != 0 {
        c.skip(2)?;
    }
    if flags & 0x40 != 0 {
        let url_len = usize::from(c.u8()?);
        c.skip(url_len)?;
    }
    if flags & 0x20 != 0 {
        c.skip(2)?;
    }
    let (tag, _) = descriptor(&mut c)?;
    if tag != 0x04 {
        return Ok(None);
    }
    let object_type = c.u8()?;
    c.skip(1 + 3 + 4 + 4)?;
    if object_type != 0x40 {
        return Ok(Some(format!("mp4a.{object_type:02x}")));
    }
    let (tag, _) = descriptor(&mut c)?;
    if tag != 0x05 {
        return Ok(Some("mp4a.40".to_string()));
    }
    let b0 = c.u8()?;
    let mut audio_object_type = b0 >> 3;
    if audio_object_type == 31 {
        let b1 = c.u8()?;
        audio_object_type = 32 + (((b0 & 0x07) << 3) | (b1 >> 5));
    }
    Ok(Some(format!("mp4a.40.{audio_object_type}")))
}
