//! Signed playback URLs at the edge: the check (before any cache or upstream work) and the
//! hand-on of the signature to the URIs of the playlists it serves.
//!
//! A player is given one signed URL, for the multivariant playlist; players resolve the URIs
//! inside a playlist against it without carrying its query along, so the edge appends the
//! signature (`exp=..&sig=..`, nothing else of the query) to every URI of every playlist it
//! serves to that player: URI lines and `URI="..."` attributes alike. The cache holds the
//! origin's playlist untouched; the hand-on is done per response on the way out. Pure code.

/// The signature part of a query (`exp=..&sig=..`, in that order), if both are there.
pub fn signature_of(query: &str) -> Option<String> {
    let find = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    };
    Some(format!("exp={}&sig={}", find("exp")?, find("sig")?))
}

/// `playlist` with `signature` appended to every URI in it.
pub fn hand_on(playlist: &[u8], signature: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(playlist.len() + playlist.len() / 8 + 64);
    for line in playlist.split_inclusive(|&b| b == b'\n') {
        let (text, end) = match line.strip_suffix(b"\n") {
            Some(t) => match t.strip_suffix(b"\r") {
                Some(t) => (t, &b"\r\n"[..]),
                None => (t, &b"\n"[..]),
            },
            None => (line, &b""[..]),
        };
        if text.starts_with(b"#") {
            tag_line(text, signature, &mut out);
        } else if text.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(text);
        } else {
            append(text, signature, &mut out);
        }
        out.extend_from_slice(end);
    }
    out
}

/// A tag line with the signature added inside each `URI="..."` attribute. Other attributes
/// that end in `URI` (an interstitial's `X-ASSET-URI`: another stream's, signed for its own
/// scope) are left as they are.
fn tag_line(mut text: &[u8], signature: &str, out: &mut Vec<u8>) {
    const ATTR: &[u8] = b"URI=\"";
    while let Some(at) = find(text, ATTR) {
        let value_start = at + ATTR.len();
        let Some(len) = text[value_start..].iter().position(|&b| b == b'"') else {
            break;
        };
        out.extend_from_slice(&text[..value_start]);
        let own = at > 0 && matches!(text[at - 1], b':' | b',');
        if own {
            append(&text[value_start..value_start + len], signature, out);
        } else {
            out.extend_from_slice(&text[value_start..value_start + len]);
        }
        text = &text[value_start + len..];
    }
    out.extend_from_slice(text);
}

fn append(uri: &[u8], signature: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(uri);
    out.push(if uri.contains(&b'?') { b'&' } else { b'?' });
    out.extend_from_slice(signature.as_bytes());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SIG: &str = "exp=100&sig=abcd";

    #[test]
    fn an_interstitials_asset_keeps_its_own_uri() {
        let line = b"#EXT-X-DATERANGE:ID=\"ad-1\",CLASS=\"com.apple.hls.interstitial\",X-ASSET-URI=\"/vod/ads/20261206T070142Z/master.m3u8\",DURATION=8\n";
        assert_eq!(hand_on(line, SIG), line.to_vec());
        let map = b"#EXT-X-MAP:URI=\"init-5.mp4\"\n";
        assert_eq!(
            hand_on(map, SIG),
            b"#EXT-X-MAP:URI=\"init-5.mp4?exp=100&sig=abcd\"\n".to_vec()
        );
    }

    #[test]
    fn every_uri_of_a_media_playlist_carries_the_signature() {
        let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init-5.mp4\"\n\
            #EXT-X-PART:DURATION=0.33333,URI=\"5.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.0,\n5.m4s\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.1.m4s\"\n\
            #EXT-X-RENDITION-REPORT:URI=\"../180p/index.m3u8\",LAST-MSN=5,LAST-PART=5\n";
        let out = String::from_utf8(hand_on(playlist.as_bytes(), SIG)).expect("utf-8");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init-5.mp4?exp=100&sig=abcd\"\n\
            #EXT-X-PART:DURATION=0.33333,URI=\"5.0.m4s?exp=100&sig=abcd\",INDEPENDENT=YES\n\
            #EXTINF:2.0,\n5.m4s?exp=100&sig=abcd\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.1.m4s?exp=100&sig=abcd\"\n\
            #EXT-X-RENDITION-REPORT:URI=\"../180p/index.m3u8?exp=100&sig=abcd\",LAST-MSN=5,LAST-PART=5\n"
        );
    }

    #[test]
    fn multivariant_uris_and_existing_queries() {
        let playlist = "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"audio/index.m3u8\"\r\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1\r\n720p/index.m3u8?x=1\r\n\r\n";
        let out = String::from_utf8(hand_on(playlist.as_bytes(), SIG)).expect("utf-8");
        assert_eq!(
            out,
            "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"audio/index.m3u8?exp=100&sig=abcd\"\r\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1\r\n720p/index.m3u8?x=1&exp=100&sig=abcd\r\n\r\n"
        );
    }

    #[test]
    fn the_signature_is_taken_alone_from_a_query() {
        assert_eq!(
            signature_of("_HLS_msn=4&sig=ff&exp=9&_HLS_part=1").as_deref(),
            Some("exp=9&sig=ff")
        );
        assert_eq!(signature_of("exp=9"), None);
        assert_eq!(signature_of("expx=9&sig=1"), None);
    }

    proptest! {
        #[test]
        fn any_bytes_are_handled_and_only_grow(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let out = hand_on(&data, SIG);
            prop_assert!(out.len() >= data.len());
            let unterminated = hand_on(b"#EXT-X-MAP:URI=\"x", SIG);
            prop_assert_eq!(unterminated, b"#EXT-X-MAP:URI=\"x".to_vec());
        }
    }
}
