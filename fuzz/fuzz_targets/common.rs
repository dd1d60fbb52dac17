//! Shared by the targets: one request body through decoding and the
//! conversion to Arrow, as the receivers do it.

use collector::convert::{self, ConvertOptions};
use collector::http::{Encoding, decode};
use collector::ingest::ExportRequest;
use collector::metrics::Signal;

/// The signal a fuzz input's first byte picks.
pub fn signal(b: u8) -> Signal {
    match b % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    }
}

/// Decodes `body` and converts what decodes; nothing may panic, and the
/// accepted and rejected counts must match the batch.
pub fn ingest(signal: Signal, encoding: Encoding, body: &[u8]) {
    let Ok(req) = decode(signal, encoding, body) else {
        return;
    };
    let opts = ConvertOptions::default();
    let c = match &req {
        ExportRequest::Traces(r) => convert::spans(r, &opts),
        ExportRequest::Metrics(r) => convert::metric_points(r, &opts),
        ExportRequest::Logs(r) => convert::logs(r, &opts),
    };
    let rows = c.batch.as_ref().map_or(0, |b| b.num_rows() as u64);
    assert_eq!(rows, c.accepted, "every accepted record is a row");
    assert_eq!(c.rejected > 0, !c.message.is_empty(), "rejections are explained");
}
