//! `orders`: the checkout saga (reserve stock, charge payment, confirm;
//! compensate on failure) and the transactional outbox that carries
//! `order.confirmed` events to `notifications`.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::cart::Cart;
use super::inventory::Item;
use super::payments::Payment;
use super::{Ctx, not_found, now_ms};
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    failure TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    order_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    traceparent TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
";

/// The outbox's destination name in messaging spans.
pub const DESTINATION: &str = "order-events";

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(show))
        .with_state(ctx)
}

/// The outbox read by consumers. Polling is not traced: each delivered
/// message gets its own CONSUMER span on the consumer's side.
pub fn outbox_router(ctx: Ctx) -> Router {
    Router::new().route("/outbox", get(outbox)).with_state(ctx)
}

#[derive(Deserialize)]
struct PlaceOrder {
    user_id: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    order_id: String,
    user_id: i64,
    status: String,
    total_cents: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
}

#[derive(Deserialize)]
struct Reservation {
    reservation_id: String,
}

fn mark_failed(ctx: &Ctx, order_id: &str, why: &str) -> Result<(), AppError> {
    const SQL: &str = "UPDATE orders SET status = 'failed', failure = ?2 WHERE id = ?1";
    ctx.db.run("UPDATE", "orders", SQL, |c| {
        c.execute(SQL, params![order_id, why])
    })?;
    tracing::warn!(order_id, reason = why, "order failed");
    Ok(())
}

/// Runs a compensating call; a failure is logged (the saga still fails
/// with the original error) so an operator can reconcile.
async fn compensate<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    service: &str,
    method: Method,
    template: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) {
    if let Err(e) = ctx
        .client
        .call::<T>(service, method, template, path, body)
        .await
    {
        tracing::error!(error = %e, service, path, "compensation failed; needs reconciliation");
    }
}

/// Compensation: gives a reservation's stock back.
async fn release(ctx: &Ctx, reservation_path: &str) {
    compensate::<serde_json::Value>(
        ctx,
        "inventory",
        Method::DELETE,
        "/reservations/{id}",
        reservation_path,
        None,
    )
    .await;
}

async fn place(
    State(ctx): State<Ctx>,
    Json(req): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<Order>), AppError> {
    let user_id = req.user_id;
    let cart: Cart = ctx
        .client
        .get("cart", "/carts/{user_id}", &format!("/carts/{user_id}"))
        .await?;
    if cart.items.is_empty() {
        return Err(AppError::new(StatusCode::BAD_REQUEST, "the cart is empty"));
    }
    let order_id = uuid::Uuid::new_v4().to_string();
    let total = cart.total_cents;
    Context::current()
        .span()
        .set_attribute(KeyValue::new("shop.order.id", order_id.clone()));

    const INSERT: &str = "INSERT INTO orders (id, user_id, status, total_cents, created_ms) VALUES (?1, ?2, 'pending', ?3, ?4)";
    ctx.db.run("INSERT", "orders", INSERT, |c| {
        let tx = c.transaction()?;
        tx.execute(INSERT, params![order_id, user_id, total, now_ms()])?;
        for i in &cart.items {
            tx.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, price_cents) VALUES (?1, ?2, ?3, ?4)",
                params![order_id, i.product_id, i.quantity, i.price_cents],
            )?;
        }
        tx.commit()
    })?;

    // 1. Reserve stock.
    let items: Vec<Item> = cart
        .items
        .iter()
        .map(|i| Item {
            product_id: i.product_id,
            quantity: i.quantity,
        })
        .collect();
    let reserve_body = serde_json::json!({ "order_id": order_id, "items": items });
    let reservation: Reservation = match ctx
        .client
        .call(
            "inventory",
            Method::POST,
            "/reservations",
            "/reservations",
            Some(&reserve_body),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            mark_failed(&ctx, &order_id, &format!("reservation: {e}"))?;
            return Err(e.into());
        }
    };
    let release_path = format!("/reservations/{}", reservation.reservation_id);

    // 2. Charge the payment; on failure release the stock.
    let charge_body =
        serde_json::json!({ "order_id": order_id, "user_id": user_id, "amount_cents": total });
    let payment: Payment = match ctx
        .client
        .call(
            "payments",
            Method::POST,
            "/charges",
            "/charges",
            Some(&charge_body),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let reason = match e.status() {
                Some(StatusCode::PAYMENT_REQUIRED) => "declined",
                _ => "error",
            };
            ctx.biz
                .payment_failures
                .add(1, &[KeyValue::new("reason", reason)]);
            release(&ctx, &release_path).await;
            mark_failed(&ctx, &order_id, &format!("payment: {e}"))?;
            return Err(e.into());
        }
    };

    // 3. Confirm the stock; on failure refund and release.
    if let Err(e) = ctx
        .client
        .call::<serde_json::Value>(
            "inventory",
            Method::POST,
            "/reservations/{id}/commit",
            &format!("{release_path}/commit"),
            None::<&()>,
        )
        .await
    {
        compensate::<Payment>(
            &ctx,
            "payments",
            Method::POST,
            "/refunds",
            "/refunds",
            Some(&serde_json::json!({ "payment_id": payment.payment_id })),
        )
        .await;
        release(&ctx, &release_path).await;
        mark_failed(&ctx, &order_id, &format!("stock commit: {e}"))?;
        return Err(e.into());
    }

    // 4. Confirm the order and publish the event in one transaction.
    confirm(&ctx, &order_id, user_id, total)?;
    ctx.biz.orders_placed.add(1, &[]);
    ctx.biz.revenue.add(total as f64 / 100.0, &[]);
    tracing::info!(order_id = %order_id, user_id, total_cents = total, "order confirmed");

    // 5. Empty the cart. The order stands even if this fails.
    if let Err(e) = ctx
        .client
        .call::<serde_json::Value>(
            "cart",
            Method::DELETE,
            "/carts/{user_id}",
            &format!("/carts/{user_id}"),
            None::<&()>,
        )
        .await
    {
        tracing::warn!(error = %e, order_id = %order_id, "cart not emptied");
    }
    Ok((
        StatusCode::CREATED,
        Json(Order {
            order_id,
            user_id,
            status: "confirmed".into(),
            total_cents: total,
            failure: None,
        }),
    ))
}

/// Marks the order confirmed and writes the `order.confirmed` event to the
/// outbox, inside a PRODUCER span whose context travels with the event.
fn confirm(ctx: &Ctx, order_id: &str, user_id: i64, total: i64) -> Result<(), AppError> {
    let tracer = &ctx.inst.tracer;
    let producer = tracer
        .span_builder(format!("send {DESTINATION}"))
        .with_kind(SpanKind::Producer)
        .with_attributes([
            KeyValue::new("messaging.system", "outbox"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.operation.name", "send"),
            KeyValue::new("messaging.destination.name", DESTINATION),
            KeyValue::new("shop.order.id", order_id.to_string()),
        ])
        .start_with_context(tracer, &Context::current());
    let cx = Context::current().with_span(producer);
    let _guard = cx.clone().attach();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    let traceparent = carrier.remove("traceparent").unwrap_or_default();

    const SQL: &str = "UPDATE orders SET status = 'confirmed' WHERE id = ?1";
    let seq = ctx.db.run("INSERT", "outbox", SQL, |c| {
        let tx = c.transaction()?;
        tx.execute(SQL, params![order_id])?;
        tx.execute(
            "INSERT INTO outbox (event_type, order_id, user_id, total_cents, traceparent, created_ms) VALUES ('order.confirmed', ?1, ?2, ?3, ?4, ?5)",
            params![order_id, user_id, total, traceparent, now_ms()],
        )?;
        let seq = tx.last_insert_rowid();
        tx.commit()?;
        Ok(seq)
    });
    let span = cx.span();
    match &seq {
        Ok(seq) => span.set_attribute(KeyValue::new("messaging.message.id", seq.to_string())),
        Err(e) => span.set_status(opentelemetry::trace::Status::error(e.to_string())),
    }
    span.end();
    seq?;
    Ok(())
}

async fn show(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Order>, AppError> {
    const SQL: &str = "SELECT id, user_id, status, total_cents, failure FROM orders WHERE id = ?1";
    let order = ctx.db.run("SELECT", "orders", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![id], |r| {
                Ok(Order {
                    order_id: r.get(0)?,
                    user_id: r.get(1)?,
                    status: r.get(2)?,
                    total_cents: r.get(3)?,
                    failure: r.get(4)?,
                })
            })
            .optional()
    })?;
    Ok(Json(order.ok_or_else(|| not_found(format!("order {id}")))?))
}

/// One outbox event as consumers see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    pub event_type: String,
    pub order_id: String,
    pub user_id: i64,
    pub total_cents: i64,
    /// W3C `traceparent` of the PRODUCER span.
    pub traceparent: String,
    pub created_ms: i64,
}

#[derive(Deserialize)]
struct OutboxQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn outbox(
    State(ctx): State<Ctx>,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Vec<Event>>, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = ctx.db.untraced(|c| {
        let mut st = c.prepare_cached(
            "SELECT seq, event_type, order_id, user_id, total_cents, traceparent, created_ms FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        st.query_map(params![q.after, limit], |r| {
            Ok(Event {
                seq: r.get(0)?,
                event_type: r.get(1)?,
                order_id: r.get(2)?,
                user_id: r.get(3)?,
                total_cents: r.get(4)?,
                traceparent: r.get(5)?,
                created_ms: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    Ok(Json(events))
}
