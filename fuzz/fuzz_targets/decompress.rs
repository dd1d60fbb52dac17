#![no_main]
//! Compressed bodies: the capped decompression never yields more than its
//! limit, then the result goes through the protobuf path.

mod common;

const LIMIT: usize = 1 << 20;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let encoding = ["gzip", "deflate", "zstd", "identity"][(*first % 4) as usize];
    let body = bytes::Bytes::copy_from_slice(body);
    if let Ok(out) = collector::http::decompress(Some(encoding), body, LIMIT) {
        assert!(encoding == "identity" || out.len() <= LIMIT, "past the limit");
        common::ingest(common::signal(*first / 4), collector::http::Encoding::Protobuf, &out);
    }
});
