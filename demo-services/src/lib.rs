//! The demo e-commerce shop that ships with Burnwatch: eight HTTP services
//! that call each other and export real OTLP. This module holds the shop's
//! topology: which services exist, their default ports, and who calls whom.

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
        calls: &["users", "catalog", "cart", "orders"],
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
        calls: &[],
    },
];

/// Looks a service up by name.
pub fn service(name: &str) -> Option<&'static ServiceSpec> {
    SERVICES.iter().find(|s| s.name == name)
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
