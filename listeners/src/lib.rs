//! What every Burnwatch listener shares, whatever it serves (OTLP/gRPC,
//! OTLP/HTTP, the API and dashboard).
//!
//! Parts:
//! - [`net`]: accept loops holding a connection cap, with deadlines for
//!   clients that connect and then send nothing, or send it slowly; the
//!   per-listener connection counters.
//! - [`tls`]: rustls for the listeners: certificate and key files, and an
//!   accept task that runs handshakes concurrently with a timeout.

pub mod net;
pub mod tls;
