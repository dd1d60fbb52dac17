//! The browser bundle (the islands compiled to wasm by build.rs), embedded
//! in the binary and served under `/pkg/` (gzip when the browser takes it),
//! and the loader that hydrates each island of a page.

use std::io::Write;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

const JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pkg/burnwatch.js"));
const WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pkg/burnwatch_bg.wasm"));

/// Whether this build has the bundle (see `BURNWATCH_SKIP_WASM`).
pub fn enabled() -> bool {
    cfg!(burnwatch_wasm) && !WASM.is_empty()
}

struct Asset {
    gzip: Vec<u8>,
    etag: String,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn prepare(bytes: &[u8]) -> Asset {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("writing to memory");
    Asset {
        gzip: gz.finish().expect("writing to memory"),
        etag: format!("\"{:016x}\"", fnv(bytes)),
    }
}

fn js_asset() -> &'static Asset {
    static A: OnceLock<Asset> = OnceLock::new();
    A.get_or_init(|| prepare(JS))
}

fn wasm_asset() -> &'static Asset {
    static A: OnceLock<Asset> = OnceLock::new();
    A.get_or_init(|| prepare(WASM))
}

/// Bytes of the bundle as sent compressed: (js, wasm).
pub fn compressed_sizes() -> (usize, usize) {
    (js_asset().gzip.len(), wasm_asset().gzip.len())
}

fn serve(headers: &HeaderMap, raw: &'static [u8], asset: &'static Asset, mime: &str) -> Response {
    if raw.is_empty() {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "this build has no browser bundle (built with BURNWATCH_SKIP_WASM)\n",
        )
            .into_response();
    }
    let etag = HeaderValue::from_str(&asset.etag).expect("hex is a valid header");
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return (axum::http::StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut r = if gzip {
        let mut r = asset.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        raw.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).expect("static mime"),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    r
}

/// `GET /pkg/burnwatch.js`.
pub async fn js(headers: HeaderMap) -> Response {
    serve(&headers, JS, js_asset(), "text/javascript; charset=utf-8")
}

/// `GET /pkg/burnwatch_bg.wasm`.
pub async fn wasm(headers: HeaderMap) -> Response {
    serve(&headers, WASM, wasm_asset(), "application/wasm")
}

/// Loads the bundle and hydrates every island on the page; marks the
/// document `data-hydrated` when done (browser tests wait for it).
pub const LOADER: &str = r#"<script type="module">
import init, * as bw from "/pkg/burnwatch.js";
init({module_or_path: "/pkg/burnwatch_bg.wasm"}).then(() => {
  bw.hydrate();
  for (const el of document.querySelectorAll("leptos-island")) {
    const f = bw[el.dataset.component];
    if (f) { f(el); } else { console.error("no island named " + el.dataset.component); }
  }
  document.documentElement.dataset.hydrated = "true";
});
</script>"#;
