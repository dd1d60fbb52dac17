//! The eight services' handlers. Each module has its database schema, its
//! routes, and (where it has one) its background job.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use opentelemetry::metrics::{Counter, Histogram};
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::AppError;
use crate::instrument::{Client, Instruments};

pub mod cart;
pub mod catalog;
pub mod gateway;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod users;

/// Business metrics of the shop.
pub struct Business {
    /// `shop.orders.placed`: confirmed orders.
    pub orders_placed: Counter<u64>,
    /// `shop.revenue`: confirmed order value, USD.
    pub revenue: Counter<f64>,
    /// `shop.cart.size`: items in a cart after an add.
    pub cart_size: Histogram<u64>,
    /// `shop.payment.failures`: failed charges, by `reason`.
    pub payment_failures: Counter<u64>,
}

impl Business {
    fn new(meter: &opentelemetry::metrics::Meter) -> Business {
        Business {
            orders_placed: meter
                .u64_counter("shop.orders.placed")
                .with_unit("{order}")
                .with_description("Orders confirmed.")
                .build(),
            revenue: meter
                .f64_counter("shop.revenue")
                .with_unit("USD")
                .with_description("Value of confirmed orders.")
                .build(),
            cart_size: meter
                .u64_histogram("shop.cart.size")
                .with_unit("{item}")
                .with_description("Items in the cart after an add.")
                .with_boundaries(vec![1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0])
                .build(),
            payment_failures: meter
                .u64_counter("shop.payment.failures")
                .with_unit("{charge}")
                .with_description("Charges that failed, by reason.")
                .build(),
        }
    }
}

/// What every handler of a service can reach.
#[derive(Clone)]
pub struct Ctx {
    /// Tracer and HTTP instruments.
    pub inst: Instruments,
    /// Calls to other services.
    pub client: Client,
    /// This service's own database.
    pub db: Arc<Db>,
    /// Business metrics.
    pub biz: Arc<Business>,
}

impl Ctx {
    /// Bundles the handles.
    pub fn new(
        inst: Instruments,
        client: Client,
        db: Db,
        meter: &opentelemetry::metrics::Meter,
    ) -> Ctx {
        Ctx {
            inst,
            client,
            db: Arc::new(db),
            biz: Arc::new(Business::new(meter)),
        }
    }
}

/// A service's pieces: schema, traced routes, untraced internal routes.
pub struct Parts {
    /// Routes that get SERVER spans, chaos and the duration histogram.
    pub traced: Router,
    /// Internal routes without spans (a message-queue poll, for instance).
    pub internal: Router,
}

/// The database schema of `service`.
pub fn schema(service: &str) -> &'static str {
    match service {
        "gateway" => gateway::SCHEMA,
        "users" => users::SCHEMA,
        "catalog" => catalog::SCHEMA,
        "inventory" => inventory::SCHEMA,
        "cart" => cart::SCHEMA,
        "orders" => orders::SCHEMA,
        "payments" => payments::SCHEMA,
        "notifications" => notifications::SCHEMA,
        _ => "",
    }
}

/// Builds the routes of `service` (seeding its data on first start) and
/// starts its background jobs, which end when `stop` fires.
pub fn build(service: &str, ctx: Ctx, stop: CancellationToken) -> anyhow::Result<Parts> {
    let empty = Router::new();
    Ok(match service {
        "gateway" => Parts {
            traced: gateway::router(ctx),
            internal: empty,
        },
        "users" => Parts {
            traced: users::router(ctx),
            internal: empty,
        },
        "catalog" => {
            catalog::seed(&ctx.db)?;
            Parts {
                traced: catalog::router(ctx),
                internal: empty,
            }
        }
        "inventory" => {
            inventory::seed(&ctx.db)?;
            tokio::spawn(inventory::restock(ctx.clone(), stop));
            Parts {
                traced: inventory::router(ctx),
                internal: empty,
            }
        }
        "cart" => Parts {
            traced: cart::router(ctx),
            internal: empty,
        },
        "orders" => Parts {
            traced: orders::router(ctx.clone()),
            internal: orders::outbox_router(ctx),
        },
        "payments" => Parts {
            traced: payments::router(ctx),
            internal: empty,
        },
        "notifications" => {
            tokio::spawn(notifications::consume(ctx.clone(), stop));
            Parts {
                traced: notifications::router(ctx),
                internal: empty,
            }
        }
        other => anyhow::bail!("unknown service {other:?}"),
    })
}

/// Shorthand for a 404.
pub(crate) fn not_found(what: impl std::fmt::Display) -> AppError {
    AppError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
