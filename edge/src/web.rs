//! The watch page: the edge answers `/` and `/watch/{stream}` with the page, and
//! `/assets/{file}` with its script, its style sheet and hls.js, from memory. The files are read
//! once at start from `web.root` (the repository's `web/`, where `npm ci` puts hls.js under
//! `node_modules`); the page learns the chat relay's address from the edge's config through a
//! `<meta>` tag filled in then. Everything else goes to the origins as before.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

use crate::config::WebConfig;

/// Where the page's files are under `web.root`, and the paths they are served at.
const FILES: [(&str, &str, &str); 4] = [
    ("/", "index.html", "text/html; charset=utf-8"),
    (
        "/assets/watch.js",
        "watch.js",
        "text/javascript; charset=utf-8",
    ),
    ("/assets/watch.css", "watch.css", "text/css; charset=utf-8"),
    (
        "/assets/hls.min.js",
        "node_modules/hls.js/dist/hls.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// The placeholder in `index.html` for the chat relay's URL.
const CHAT_PLACEHOLDER: &str = "{{CHAT_URL}}";

/// One file of the page.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The bytes.
    pub body: Bytes,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Cache-Control`: the page is revalidated every time (it is tiny and names the chat
    /// relay), the assets are kept for an hour.
    pub cache_control: &'static str,
    /// A strong validator of the bytes, quoted.
    pub etag: String,
}

/// The page's files, by path.
#[derive(Debug, Default)]
pub struct WebPage {
    files: HashMap<&'static str, Asset>,
}

impl WebPage {
    /// Reads the page from `config.root`; `None` when the page is off. A missing file is
    /// logged and left out (its path then goes to the origins, which answer 404): the page
    /// says so itself when hls.js is the one missing.
    pub fn load(config: &WebConfig) -> Option<WebPage> {
        if !config.enabled {
            return None;
        }
        let mut files = HashMap::new();
        for (path, file, content_type) in FILES {
            let at = config.root.join(file);
            match std::fs::read(&at) {
                Ok(bytes) => {
                    let body = if path == "/" {
                        fill_in(&bytes, &config.chat_url)
                    } else {
                        bytes
                    };
                    files.insert(path, asset(body, content_type, path == "/"));
                }
                Err(e) => tracing::warn!(
                    file = %at.display(),
                    error = %e,
                    hint = hint(file),
                    "watch page file missing; {path} is not served"
                ),
            }
        }
        tracing::info!(root = %config.root.display(), files = files.len(), chat = %config.chat_url, "watch page loaded");
        Some(WebPage { files })
    }

    /// The page's file for `path`, if `path` is one of the page's.
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.files.get(route(path)?)
    }
}

/// What to do about a missing file.
fn hint(file: &str) -> &'static str {
    if file.starts_with("node_modules") {
        "run `make web` (npm ci in web/)"
    } else {
        "check web.root"
    }
}

/// The key of [`FILES`] that `path` is served from, if any: the page itself for `/`,
/// `/index.html`, `/watch/{stream}` (a stream name as the origin allows it) and
/// `/watch/{stream}/{session}` (a finished broadcast: `20261206T070142Z`).
fn route(path: &str) -> Option<&'static str> {
    if path == "/" || path == "/index.html" {
        return Some("/");
    }
    if let Some(rest) = path.strip_prefix("/watch/") {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let session = |s: &str| {
            s.len() == 16
                && s.bytes().enumerate().all(|(i, b)| match i {
                    8 => b == b'T',
                    15 => b == b'Z',
                    _ => b.is_ascii_digit(),
                })
        };
        let ok = match rest.split_once('/') {
            None => name(rest),
            Some((stream, id)) => name(stream) && session(id),
        };
        return ok.then_some("/");
    }
    FILES.iter().map(|f| f.0).find(|&p| p != "/" && p == path)
}

/// `index.html` with the chat relay's URL in place of the placeholder, escaped for an HTML
/// attribute.
fn fill_in(page: &[u8], chat_url: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut escaped = String::with_capacity(chat_url.len());
    for c in chat_url.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    text.replace(CHAT_PLACEHOLDER, &escaped).into_bytes()
}

fn asset(body: Vec<u8>, content_type: &'static str, page: bool) -> Asset {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    Asset {
        etag: format!("\"{:016x}-{:x}\"", hasher.finish(), body.len()),
        body: Bytes::from(body),
        content_type,
        cache_control: if page {
            "no-cache"
        } else {
            "public, max-age=3600"
        },
    }
}

/// Whether `if_none_match` (a request header) matches `etag`.
pub fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_answers_its_paths_and_nothing_else() {
        for p in [
            "/",
            "/index.html",
            "/watch/demo",
            "/watch/demo/",
            "/watch/a_b-9",
            "/watch/demo/20261206T070142Z",
        ] {
            assert_eq!(route(p), Some("/"), "{p}");
        }
        assert_eq!(route("/assets/watch.js"), Some("/assets/watch.js"));
        assert_eq!(route("/assets/hls.min.js"), Some("/assets/hls.min.js"));
        for p in [
            "/watch/",
            "/watch/a/b",
            "/watch/a.b",
            "/watch/demo/20261206T070142",
            "/watch/demo/20261206T070142Z/x",
            "/assets/",
            "/assets/other.js",
            "/live/demo/master.m3u8",
            "/api/streams",
            "/healthz",
        ] {
            assert_eq!(route(p), None, "{p}");
        }
    }

    #[test]
    fn the_chat_url_is_escaped_into_the_page() {
        let page = br#"<meta name="corral-chat" content="{{CHAT_URL}}">"#;
        let filled =
            String::from_utf8(fill_in(page, "https://chat.example/\"><script>")).expect("utf-8");
        assert_eq!(
            filled,
            r#"<meta name="corral-chat" content="https://chat.example/&quot;&gt;&lt;script&gt;">"#
        );
    }

    #[test]
    fn etags_revalidate() {
        let a = asset(b"x".to_vec(), "text/plain", false);
        assert!(not_modified(Some(&a.etag), &a.etag));
        assert!(not_modified(
            Some(&format!("\"other\", W/{}", a.etag)),
            &a.etag
        ));
        assert!(!not_modified(Some("\"other\""), &a.etag));
        assert!(!not_modified(None, &a.etag));
    }

    proptest::proptest! {
        #[test]
        fn any_path_is_the_page_one_of_its_files_or_not_ours(path in "/[a-z/._-]{0,40}|/watch/.{0,80}") {
            match route(&path) {
                None => {}
                Some("/") => proptest::prop_assert!(
                    path == "/" || path == "/index.html" || path.starts_with("/watch/")
                ),
                Some(file) => proptest::prop_assert_eq!(file, path.as_str()),
            }
        }
    }

    #[test]
    fn a_missing_file_is_left_out() {
        let dir = std::env::temp_dir().join(format!("corral-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        std::fs::write(dir.join("index.html"), "chat={{CHAT_URL}}").expect("written");
        let page = WebPage::load(&WebConfig {
            enabled: true,
            root: dir.clone(),
            chat_url: "http://127.0.0.1:8090".to_string(),
        })
        .expect("enabled");
        assert_eq!(
            &page.get("/watch/demo").expect("the page").body[..],
            b"chat=http://127.0.0.1:8090"
        );
        assert!(page.get("/assets/hls.min.js").is_none());
        std::fs::remove_dir_all(&dir).expect("removed");
    }
}
