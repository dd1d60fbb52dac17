//! The demo e-commerce shop that ships with Burnwatch: eight HTTP services
//! that call each other and export real OTLP, a load generator and chaos
//! tools. This module holds the shop's topology: which services exist, their
//! default ports, and who calls whom.
//!
//! - [`services`]: the eight services' handlers, schemas and jobs;
//!   [`service`]: one service as a process; [`shop`]: all eight as child
//!   processes.
//! - [`instrument`]: SERVER and CLIENT spans and HTTP metrics per the
//!   semantic conventions; [`telemetry`]: the OTLP exporters; [`db`]: each
//!   service's SQLite with CLIENT spans; [`error`]: call and handler errors.
//! - [`chaos`]: fault injection per service; [`control`]: chaos and
//!   scenarios from the command line; [`load`]: the load generator.

pub mod chaos;
pub mod control;
pub mod db;
pub mod error;
pub mod instrument;
pub mod load;
pub mod service;
pub mod services;
pub mod shop;
pub mod telemetry;

/// One service of the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSpec {
    /// `service.name`.
    pub name: &'static str,
    /// Default listen port on 127.0.0.1.
    pub port: u16,
    /// Services it calls synchronously over HTTP.
    pub calls: &'static [&'static str],
}

/// The shop's services.
pub const SERVICES: &[ServiceSpec] = &[
    ServiceSpec {
        name: "gateway",
        port: 9100,
        calls: &["users", "catalog", "cart", "orders", "notifications"],
    },
    ServiceSpec {
        name: "users",
        port: 9101,
        calls: &[],
    },
    ServiceSpec {
        name: "catalog",
        port: 9102,
        calls: &["inventory"],
    },
    ServiceSpec {
        name: "inventory",
        port: 9103,
        calls: &[],
    },
    ServiceSpec {
        name: "cart",
        port: 9104,
        calls: &["catalog"],
    },
    ServiceSpec {
        name: "orders",
        port: 9105,
        calls: &["inventory", "payments", "cart"],
    },
    ServiceSpec {
        name: "payments",
        port: 9106,
        calls: &[],
    },
    ServiceSpec {
        name: "notifications",
        port: 9107,
        // Polls the orders outbox.
        calls: &["orders"],
    },
];

/// Looks a service up by name.
pub fn service(name: &str) -> Option<&'static ServiceSpec> {
    SERVICES.iter().find(|s| s.name == name)
}

/// Parses `300ms`, `10m`, `1h30m` (for command-line flags).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_is_closed_and_acyclic() {
        assert_eq!(SERVICES.len(), 8);
        for s in SERVICES {
            for callee in s.calls {
                assert!(
                    service(callee).is_some(),
                    "{} calls unknown {callee}",
                    s.name
                );
            }
        }
        // Depth-first search finds no cycle.
        fn visit(name: &str, path: &mut Vec<&'static str>) {
            let s = service(name).unwrap();
            assert!(!path.contains(&s.name), "cycle through {path:?}");
            path.push(s.name);
            for c in s.calls {
                visit(c, path);
            }
            path.pop();
        }
        for s in SERVICES {
            visit(s.name, &mut Vec::new());
        }
        let mut ports: Vec<u16> = SERVICES.iter().map(|s| s.port).collect();
        ports.dedup();
        assert_eq!(ports.len(), 8);
    }
}
