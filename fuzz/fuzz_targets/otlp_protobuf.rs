#![no_main]
//! OTLP/HTTP protobuf bodies of any signal: decode, convert to Arrow.

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((first, body)) = data.split_first() {
        common::ingest(common::signal(*first), collector::http::Encoding::Protobuf, body);
    }
});
