//! A client's view of a multivariant playlist: the variants a player can choose from and the
//! audio renditions they refer to, parsed with `quick-m3u8` like the media playlists.

use quick_m3u8::HlsLine;
use quick_m3u8::tag::{KnownTag, hls};

use crate::playlist::{PlaylistError, for_each_line};

/// One `EXT-X-STREAM-INF` and its URI.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The media playlist's URI, relative to the multivariant playlist.
    pub uri: String,
    /// `BANDWIDTH`, bits per second (peak).
    pub bandwidth: u64,
    /// `RESOLUTION` (width, height), absent for audio-only variants.
    pub resolution: Option<(u64, u64)>,
    /// `AUDIO`: the audio group played with this variant.
    pub audio_group: Option<String>,
}

impl Variant {
    /// The rendition's name: the URI's first path component (`720p` of `720p/index.m3u8`).
    ///
    /// ```
    /// # use corral_loadtest::master::Variant;
    /// let v = Variant { uri: "720p/index.m3u8".into(), bandwidth: 1, resolution: None, audio_group: None };
    /// assert_eq!(v.name(), "720p");
    /// ```
    pub fn name(&self) -> &str {
        self.uri.split('/').next().unwrap_or(&self.uri)
    }
}

/// One `EXT-X-MEDIA:TYPE=AUDIO` with a URI.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    /// `GROUP-ID`.
    pub group: String,
    /// `NAME`.
    pub name: String,
    /// The media playlist's URI.
    pub uri: String,
    /// `DEFAULT=YES`.
    pub default: bool,
}

/// A parsed multivariant playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Multivariant {
    /// Variants in the order listed.
    pub variants: Vec<Variant>,
    /// Audio renditions with their own playlists.
    pub audio: Vec<AudioRendition>,
}

impl Multivariant {
    /// Parses playlist text; a variant without a URI line after it is an error.
    pub fn parse(text: &str) -> Result<Multivariant, PlaylistError> {
        let mut out = Multivariant::default();
        let mut pending: Option<Variant> = None;
        let line = for_each_line(text, |line, item| {
            match item {
                HlsLine::KnownTag(KnownTag::Hls(hls::Tag::StreamInf(s))) => {
                    if pending.is_some() {
                        return Err(PlaylistError {
                            line,
                            reason: "EXT-X-STREAM-INF without a URI before the next".into(),
                        });
                    }
                    pending = Some(Variant {
                        uri: String::new(),
                        bandwidth: s.bandwidth(),
                        resolution: s.resolution().map(|r| (r.width, r.height)),
                        audio_group: s.audio().map(str::to_string),
                    });
                }
                HlsLine::KnownTag(KnownTag::Hls(hls::Tag::Media(m))) => {
                    let audio = matches!(
                        m.media_type(),
                        hls::EnumeratedString::Known(hls::MediaType::Audio)
                    );
                    if let (true, Some(uri)) = (audio, m.uri()) {
                        out.audio.push(AudioRendition {
                            group: m.group_id().to_string(),
                            name: m.name().to_string(),
                            uri: uri.to_string(),
                            default: m.default(),
                        });
                    }
                }
                HlsLine::Uri(uri) => {
                    let Some(mut variant) = pending.take() else {
                        return Err(PlaylistError {
                            line,
                            reason: "a URI line that no EXT-X-STREAM-INF introduced".into(),
                        });
                    };
                    variant.uri = uri.to_string();
                    out.variants.push(variant);
                }
                _ => {}
            }
            Ok(())
        })?;
        if pending.is_some() {
            return Err(PlaylistError {
                line,
                reason: "the last EXT-X-STREAM-INF has no URI".into(),
            });
        }
        if out.variants.is_empty() {
            return Err(PlaylistError {
                line,
                reason: "no EXT-X-STREAM-INF: not a multivariant playlist".into(),
            });
        }
        Ok(out)
    }

    /// The variants a video player picks from, lowest bandwidth first: those with a
    /// resolution, or every variant when none has one.
    pub fn video_variants(&self) -> Vec<&Variant> {
        let mut video: Vec<&Variant> = self
            .variants
            .iter()
            .filter(|v| v.resolution.is_some())
            .collect();
        if video.is_empty() {
            video = self.variants.iter().collect();
        }
        video.sort_by_key(|v| v.bandwidth);
        video
    }

    /// The audio rendition a player loads with `variant`: its group's default, else the
    /// group's first.
    pub fn audio_for(&self, variant: &Variant) -> Option<&AudioRendition> {
        let group = variant.audio_group.as_deref()?;
        let mut in_group = self.audio.iter().filter(|a| a.group == group);
        let first = in_group.clone().next();
        in_group.find(|a| a.default).or(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"aac\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"aac/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3300000,AVERAGE-BANDWIDTH=3000000,RESOLUTION=1280x720,AUDIO=\"audio\"\n720p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000000,AVERAGE-BANDWIDTH=900000,RESOLUTION=640x360,AUDIO=\"audio\"\n360p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=140000,AVERAGE-BANDWIDTH=130000,CODECS=\"mp4a.40.2\"\naac/index.m3u8\n";

    #[test]
    fn reads_variants_and_their_audio() {
        let m = Multivariant::parse(MASTER).expect("valid");
        assert_eq!(m.variants.len(), 3);
        let video = m.video_variants();
        assert_eq!(
            video.iter().map(|v| v.name()).collect::<Vec<_>>(),
            ["360p", "720p"],
            "audio-only left out, lowest first"
        );
        assert_eq!(video[1].resolution, Some((1280, 720)));
        let audio = m.audio_for(video[1]).expect("the audio group");
        assert_eq!(audio.uri, "aac/index.m3u8");
        assert_eq!(m.audio_for(&m.variants[2]), None);
    }

    #[test]
    fn a_variant_without_its_uri_is_an_error() {
        let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n";
        assert!(Multivariant::parse(text).is_err());
        assert!(Multivariant::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n").is_err());
    }

    proptest::proptest! {
        /// Whatever a server sends, the reader answers with variants or an error, never a
        /// panic; a written ladder reads back as written.
        #[test]
        fn any_text_reads_without_panicking(text in "(#EXT[-A-Z:=,\"0-9x]{0,40}\n|[a-z0-9/.]{0,12}\n){0,12}") {
            let _ = Multivariant::parse(&text);
        }

        #[test]
        fn a_written_ladder_reads_back(ladder in proptest::collection::vec((1u64..100_000_000, 16u64..4000), 1..6)) {
            let mut text = String::from("#EXTM3U\n");
            for (i, (bandwidth, height)) in ladder.iter().enumerate() {
                text += &format!("#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={}x{height}\nv{i}/index.m3u8\n", height * 16 / 9);
            }
            let m = Multivariant::parse(&text).expect("valid");
            proptest::prop_assert_eq!(m.variants.len(), ladder.len());
            for (v, (bandwidth, height)) in m.variants.iter().zip(&ladder) {
                proptest::prop_assert_eq!(v.bandwidth, *bandwidth);
                proptest::prop_assert_eq!(v.resolution.map(|r| r.1), Some(*height));
            }
            let video = m.video_variants();
            proptest::prop_assert!(video.windows(2).all(|w| w[0].bandwidth <= w[1].bandwidth));
        }
    }
}
