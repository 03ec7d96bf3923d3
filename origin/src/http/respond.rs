//! Response building: content types, the cache policy of DESIGN.md, gzip and CORS.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::Body;
use crate::stream::RenderedPlaylist;

/// `Content-Type` of playlists.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Cache policy of init segments, segments and parts: they never change.
pub const IMMUTABLE: &str = "public, max-age=86400, immutable";
/// Cache policy of the multivariant playlist.
pub const MASTER_CACHE: &str = "public, max-age=2";
/// Cache policy of 404s for objects that may appear, and of 503s after a blocking timeout.
pub const ERROR_CACHE: &str = "public, max-age=1";
/// Cache policy of API answers and of errors that say nothing about the object (400, 405).
pub const NO_STORE: &str = "no-store";

/// Whether an `Accept-Encoding` header allows gzip.
pub fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
    let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let quality_zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
            && !quality_zero
    })
}

fn builder(status: StatusCode, content_type: &str, cache_control: &str) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache_control)
}

/// A plain-text answer, e.g. an error with its reason.
pub fn text(status: StatusCode, message: &str, cache_control: &str) -> Response<Body> {
    let mut body = message.to_string();
    body.push('\n');
    builder(status, "text/plain; charset=utf-8", cache_control)
        .body(Body::full(body))
        .expect("static headers are valid")
}

/// A playlist, gzip-compressed when the client accepts it.
pub fn playlist(rendered: &RenderedPlaylist, gzip: bool, cache_control: &str) -> Response<Body> {
    playlist_bytes(
        &rendered.body,
        gzip.then(|| rendered.gzipped().clone()),
        cache_control,
    )
}

/// A playlist from its text and, if the client takes it, its gzip form.
pub fn playlist_bytes(body: &Bytes, gzipped: Option<Bytes>, cache_control: &str) -> Response<Body> {
    let b = builder(StatusCode::OK, PLAYLIST_TYPE, cache_control)
        .header(header::VARY, "Accept-Encoding");
    match gzipped {
        Some(z) => b
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::full(z)),
        None => b.body(Body::full(body.clone())),
    }
    .expect("static headers are valid")
}

/// Media bytes (init, part or segment).
pub fn media(chunks: Vec<Bytes>, audio: bool, cache_control: &str) -> Response<Body> {
    builder(
        StatusCode::OK,
        if audio { "audio/mp4" } else { "video/mp4" },
        cache_control,
    )
    .body(Body::chunks(chunks))
    .expect("static headers are valid")
}

/// A JPEG image.
pub fn image(bytes: Bytes, cache_control: &str) -> Response<Body> {
    builder(StatusCode::OK, "image/jpeg", cache_control)
        .body(Body::full(bytes))
        .expect("static headers are valid")
}

/// A JSON answer.
pub fn json(value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    builder(StatusCode::OK, "application/json", NO_STORE)
        .body(Body::full(body))
        .expect("static headers are valid")
}

/// Adds the CORS headers players need to every response.
pub fn add_cors(response: &mut Response<Body>, allow_origin: &HeaderValue) {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.clone());
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Age, Content-Length, Date"),
    );
}

/// The answer to a CORS preflight.
pub fn preflight() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, HEAD, OPTIONS, POST, PATCH, DELETE",
        )
        .header(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Range, Accept-Encoding, Authorization, Content-Type, Last-Event-ID",
        )
        .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
        .body(Body::empty())
        .expect("static headers are valid")
}

/// 405 for a method the resource does not take (media and playlists: GET, HEAD and OPTIONS;
/// the admin API's resources add POST, PATCH or DELETE).
pub fn method_not_allowed() -> Response<Body> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here: media and playlists take GET, HEAD and OPTIONS",
        NO_STORE,
    );
    r.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_used_only_when_accepted() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&v("gzip, deflate, br"))));
        assert!(accepts_gzip(Some(&v("br;q=1.0, gzip;q=0.8"))));
        assert!(accepts_gzip(Some(&v("GZIP"))));
        assert!(!accepts_gzip(Some(&v("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&v("identity"))));
        assert!(!accepts_gzip(None));
    }
}
