//! `payments`: charges and refunds against a simulated bank (latency
//! 20-150 ms, about 2% of cards declined).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use rand::Rng as _;
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Ctx, not_found, now_ms};
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
";

/// Share of charges the simulated bank declines.
pub const DECLINE_RATE: f64 = 0.02;

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/charges", post(charge))
        .route("/refunds", post(refund))
        .with_state(ctx)
}

#[derive(Deserialize)]
struct Charge {
    order_id: String,
    user_id: i64,
    amount_cents: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    pub status: String,
}

/// The bank's authorisation: an INTERNAL span with the simulated latency.
async fn authorise(ctx: &Ctx, amount_cents: i64) -> bool {
    let (latency, declined) = {
        let mut rng = rand::rng();
        (
            Duration::from_millis(rng.random_range(20..=150)),
            rng.random_bool(DECLINE_RATE),
        )
    };
    let mut span = ctx
        .inst
        .tracer
        .span_builder("bank authorise")
        .with_kind(SpanKind::Internal)
        .with_attributes([KeyValue::new("payment.amount_cents", amount_cents)])
        .start_with_context(&ctx.inst.tracer, &opentelemetry::Context::current());
    tokio::time::sleep(latency).await;
    span.set_attribute(KeyValue::new("payment.declined", declined));
    span.end();
    !declined
}

async fn charge(
    State(ctx): State<Ctx>,
    Json(req): Json<Charge>,
) -> Result<(StatusCode, Json<Payment>), AppError> {
    if req.amount_cents <= 0 {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            format!("amount_cents must be positive, got {}", req.amount_cents),
        ));
    }
    let approved = authorise(&ctx, req.amount_cents).await;
    let id = uuid::Uuid::new_v4().to_string();
    let status = if approved { "captured" } else { "declined" };
    const SQL: &str = "INSERT INTO payments (id, order_id, user_id, amount_cents, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    ctx.db.run("INSERT", "payments", SQL, |c| {
        c.execute(
            SQL,
            params![
                id,
                req.order_id,
                req.user_id,
                req.amount_cents,
                status,
                now_ms()
            ],
        )
    })?;
    if !approved {
        tracing::warn!(order_id = %req.order_id, payment_id = %id, "card declined");
        return Err(AppError::new(StatusCode::PAYMENT_REQUIRED, "card declined"));
    }
    tracing::info!(order_id = %req.order_id, payment_id = %id, amount_cents = req.amount_cents, "payment captured");
    Ok((
        StatusCode::CREATED,
        Json(Payment {
            payment_id: id,
            status: status.into(),
        }),
    ))
}

#[derive(Deserialize)]
struct Refund {
    payment_id: String,
}

async fn refund(
    State(ctx): State<Ctx>,
    Json(req): Json<Refund>,
) -> Result<Json<Payment>, AppError> {
    const SQL: &str = "UPDATE payments SET status = 'refunded' WHERE id = ?1 AND status = 'captured' RETURNING id";
    let done = ctx.db.run("UPDATE", "payments", SQL, |c| {
        c.query_row(SQL, params![req.payment_id], |r| r.get::<_, String>(0))
            .optional()
    })?;
    let payment_id =
        done.ok_or_else(|| not_found(format!("captured payment {}", req.payment_id)))?;
    tracing::info!(payment_id = %payment_id, "payment refunded");
    Ok(Json(Payment {
        payment_id,
        status: "refunded".into(),
    }))
}
