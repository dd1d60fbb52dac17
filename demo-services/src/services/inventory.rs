//! `inventory`: stock levels and reservations (reserve, commit, release).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Ctx, catalog::PRODUCTS, not_found, now_ms};
use crate::db::Db;
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock (
    product_id INTEGER PRIMARY KEY,
    available INTEGER NOT NULL,
    reserved INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservation_items (
    reservation_id TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reservation_items_id ON reservation_items (reservation_id);
";

const START_STOCK: i64 = 500;

/// Stocks every product on first start.
pub fn seed(db: &Db) -> anyhow::Result<()> {
    db.untraced(|c| {
        let tx = c.transaction()?;
        for id in 1..=PRODUCTS {
            tx.execute(
                "INSERT OR IGNORE INTO stock (product_id, available) VALUES (?1, ?2)",
                params![id, START_STOCK],
            )?;
        }
        tx.commit()
    })?;
    Ok(())
}

/// Background job: the warehouse refills low stock every 10 s.
pub async fn restock(ctx: Ctx, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match ctx.db.untraced(|c| {
            c.execute(
                "UPDATE stock SET available = ?1 WHERE available < 50",
                params![START_STOCK],
            )
        }) {
            Ok(0) => {}
            Ok(n) => tracing::info!(products = n, "restocked"),
            Err(e) => tracing::error!(error = %e, "restock failed"),
        }
    }
}

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/stock/{product_id}", get(stock))
        .route("/reservations", post(reserve))
        .route("/reservations/{id}/commit", post(commit))
        .route("/reservations/{id}", delete(release))
        .with_state(ctx)
}

#[derive(Serialize)]
struct Stock {
    product_id: i64,
    available: i64,
}

async fn stock(
    State(ctx): State<Ctx>,
    Path(product_id): Path<i64>,
) -> Result<Json<Stock>, AppError> {
    const SQL: &str = "SELECT available FROM stock WHERE product_id = ?1";
    let available = ctx.db.run("SELECT", "stock", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![product_id], |r| r.get::<_, i64>(0))
            .optional()
    })?;
    let available = available.ok_or_else(|| not_found(format!("product {product_id}")))?;
    Ok(Json(Stock {
        product_id,
        available,
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub product_id: i64,
    pub quantity: i64,
}

#[derive(Deserialize)]
struct ReserveRequest {
    order_id: String,
    items: Vec<Item>,
}

#[derive(Serialize)]
struct Reservation {
    reservation_id: String,
}

async fn reserve(
    State(ctx): State<Ctx>,
    Json(req): Json<ReserveRequest>,
) -> Result<(StatusCode, Json<Reservation>), AppError> {
    if req.items.is_empty() || req.items.iter().any(|i| i.quantity <= 0) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "a reservation needs items with positive quantities",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    const SQL: &str = "UPDATE stock SET available = available - ?2, reserved = reserved + ?2 WHERE product_id = ?1 AND available >= ?2";
    let short = ctx.db.run("UPDATE", "stock", SQL, |c| {
        let tx = c.transaction()?;
        for item in &req.items {
            if tx.execute(SQL, params![item.product_id, item.quantity])? == 0 {
                // Dropping the transaction rolls it back.
                return Ok(Some(item.product_id));
            }
            tx.execute(
                "INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES (?1, ?2, ?3)",
                params![id, item.product_id, item.quantity],
            )?;
        }
        tx.execute(
            "INSERT INTO reservations (id, order_id, status, created_ms) VALUES (?1, ?2, 'held', ?3)",
            params![id, req.order_id, now_ms()],
        )?;
        tx.commit()?;
        Ok(None)
    })?;
    if let Some(product_id) = short {
        tracing::warn!(order_id = %req.order_id, product_id, "out of stock");
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!("product {product_id} is out of stock"),
        ));
    }
    tracing::info!(order_id = %req.order_id, reservation_id = %id, "stock reserved");
    Ok((
        StatusCode::CREATED,
        Json(Reservation { reservation_id: id }),
    ))
}

/// Moves a held reservation to `to`; `restore` puts the stock back.
fn settle(ctx: &Ctx, id: &str, to: &str, restore: bool) -> Result<(), AppError> {
    const SQL: &str = "UPDATE reservations SET status = ?2 WHERE id = ?1 AND status = 'held'";
    let done = ctx.db.run("UPDATE", "reservations", SQL, |c| {
        let tx = c.transaction()?;
        if tx.execute(SQL, params![id, to])? == 0 {
            return Ok(false);
        }
        let sql = if restore {
            "UPDATE stock SET available = available + ri.quantity, reserved = reserved - ri.quantity FROM reservation_items ri WHERE ri.reservation_id = ?1 AND stock.product_id = ri.product_id"
        } else {
            "UPDATE stock SET reserved = reserved - ri.quantity FROM reservation_items ri WHERE ri.reservation_id = ?1 AND stock.product_id = ri.product_id"
        };
        tx.execute(sql, params![id])?;
        tx.commit()?;
        Ok(true)
    })?;
    if done {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::CONFLICT,
            format!("reservation {id} is not held"),
        ))
    }
}

async fn commit(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    settle(&ctx, &id, "committed", false)?;
    Ok(Json(
        serde_json::json!({ "reservation_id": id, "status": "committed" }),
    ))
}

async fn release(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    settle(&ctx, &id, "released", true)?;
    tracing::info!(reservation_id = %id, "reservation released");
    Ok(Json(
        serde_json::json!({ "reservation_id": id, "status": "released" }),
    ))
}
