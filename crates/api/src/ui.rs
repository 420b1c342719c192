//! The web page at `/`: HTML, script and style from `crates/api/ui/`, and
//! the chart library vendored from npm (`web/vendor.sh`), all compiled into
//! the binary. Nothing is loaded from anywhere else.
//!
//! Every asset carries an `ETag` (a hash of its bytes) and `no-cache`, so a
//! browser revalidates and gets `304 Not Modified` until the binary changes.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error;

/// An embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../ui/index.html"),
};

const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../ui/app.css"),
    },
    Asset {
        name: "vendor/lightweight-charts.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/vendor/lightweight-charts.js"),
    },
];

/// `GET /`.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// `GET /ui/{*path}`.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == path) {
        Some(asset) => serve(asset, &headers),
        None => error::error_response(StatusCode::NOT_FOUND, format!("no asset `/ui/{path}`")),
    }
}

/// The asset's ETag, hashed once per process.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: std::sync::LazyLock<Vec<(&'static str, String)>> =
        std::sync::LazyLock::new(|| {
            std::iter::once(&INDEX)
                .chain(ASSETS.iter())
                .map(|a| (a.name, format!("\"{:016x}\"", fnv1a(a.bytes))))
                .collect()
        });
    TAGS.iter()
        .find(|(name, _)| *name == asset.name)
        .map_or("\"0\"", |(_, tag)| tag.as_str())
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = etag(asset);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_static(etag);
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response()
}

/// FNV-1a, 64 bits: a cheap, stable content hash for the ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
