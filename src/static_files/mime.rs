//! Content-Type from a file name's extension: a small built-in table of the
//! types a web app's static directory actually holds.
//!
//! A table in the binary rather than /etc/mime.types, so the answer does not
//! depend on the host (slim containers have no mime.types at all). Text types
//! carry `charset=utf-8` because browsers otherwise guess (RFC 9110 §8.3).

use std::path::Path;

/// What unknown extensions get (RFC 9110 §8.3: a sender that does not know
/// the type may say application/octet-stream; it makes browsers download
/// rather than sniff and render).
pub const DEFAULT: &str = "application/octet-stream";

/// Sorted by extension, so it can be binary-searched; a unit test checks
/// the order.
const TABLE: &[(&str, &str)] = &[
    ("7z", "application/x-7z-compressed"),
    ("aac", "audio/aac"),
    ("avif", "image/avif"),
    ("bin", "application/octet-stream"),
    ("bmp", "image/bmp"),
    ("br", "application/x-brotli"),
    ("bz2", "application/x-bzip2"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("eot", "application/vnd.ms-fontobject"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/vnd.microsoft.icon"),
    ("ics", "text/calendar; charset=utf-8"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("jsonld", "application/ld+json"),
    ("m4a", "audio/mp4"),
    ("map", "application/json"),
    ("md", "text/markdown; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("rss", "application/rss+xml"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("weba", "audio/webm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml"),
    ("xml", "application/xml"),
    ("zip", "application/zip"),
];

/// The Content-Type for `path`, by its extension, case-insensitively.
pub fn content_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return DEFAULT;
    };
    // Extensions in the table are short; anything longer cannot match, and
    // bounding it keeps the lowercase copy on the stack.
    let mut buf = [0u8; 16];
    if ext.len() > buf.len() {
        return DEFAULT;
    }
    let lower = &mut buf[..ext.len()];
    lower.copy_from_slice(ext.as_bytes());
    lower.make_ascii_lowercase();
    TABLE
        .binary_search_by(|(e, _)| e.as_bytes().cmp(lower))
        .map_or(DEFAULT, |i| TABLE[i].1)
}

#[cfg(test)]
mod tests {
    //! The extension table.

    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in TABLE.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
        assert!(TABLE.len() >= 40);
    }

    #[test]
    fn common_types() {
        let ct = |p: &str| content_type(Path::new(p));
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a/b/STYLE.CSS"), "text/css; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("mod.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(ct("data.json"), "application/json");
        assert_eq!(ct("readme.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("logo.svg"), "image/svg+xml");
        assert_eq!(ct("photo.JPeG"), "image/jpeg");
        assert_eq!(ct("font.woff2"), "font/woff2");
        assert_eq!(ct("app.wasm"), "application/wasm");
        assert_eq!(ct("archive.tar.gz"), "application/gzip");
        assert_eq!(ct("Makefile"), DEFAULT);
        assert_eq!(ct(".bashrc"), DEFAULT);
        assert_eq!(ct("x.unknownextension"), DEFAULT);
        assert_eq!(ct("x.averyveryverylongextension"), DEFAULT);
        assert_eq!(ct("x."), DEFAULT);
    }
}
