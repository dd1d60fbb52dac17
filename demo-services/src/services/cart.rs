//! `cart`: one cart per user; adding an item looks its price up in `catalog`.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::KeyValue;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::catalog::Product;
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cart_items (
    user_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL,
    PRIMARY KEY (user_id, product_id)
);
";

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/carts/{user_id}", get(show).delete(empty))
        .route("/carts/{user_id}/items", post(add))
        .with_state(ctx)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CartItem {
    pub product_id: i64,
    pub quantity: i64,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cart {
    pub user_id: i64,
    pub items: Vec<CartItem>,
    pub total_cents: i64,
}

fn load(ctx: &Ctx, user_id: i64) -> Result<Cart, AppError> {
    const SQL: &str = "SELECT product_id, quantity, price_cents FROM cart_items WHERE user_id = ?1 ORDER BY product_id";
    let items = ctx.db.run("SELECT", "cart_items", SQL, |c| {
        let mut st = c.prepare_cached(SQL)?;
        st.query_map(params![user_id], |r| {
            Ok(CartItem {
                product_id: r.get(0)?,
                quantity: r.get(1)?,
                price_cents: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    let total_cents = items.iter().map(|i| i.quantity * i.price_cents).sum();
    Ok(Cart {
        user_id,
        items,
        total_cents,
    })
}

async fn show(State(ctx): State<Ctx>, Path(user_id): Path<i64>) -> Result<Json<Cart>, AppError> {
    Ok(Json(load(&ctx, user_id)?))
}

#[derive(Deserialize)]
struct Add {
    product_id: i64,
    quantity: i64,
}

async fn add(
    State(ctx): State<Ctx>,
    Path(user_id): Path<i64>,
    Json(req): Json<Add>,
) -> Result<(StatusCode, Json<Cart>), AppError> {
    if !(1..=20).contains(&req.quantity) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            format!("quantity must be 1..=20, got {}", req.quantity),
        ));
    }
    let product: Product = ctx
        .client
        .call(
            "catalog",
            Method::GET,
            "/products/{id}",
            &format!("/products/{}", req.product_id),
            None::<&()>,
        )
        .await?;
    const SQL: &str = "INSERT INTO cart_items (user_id, product_id, quantity, price_cents) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = min(quantity + excluded.quantity, 20), price_cents = excluded.price_cents";
    ctx.db.run("INSERT", "cart_items", SQL, |c| {
        c.execute(
            SQL,
            params![user_id, req.product_id, req.quantity, product.price_cents],
        )
    })?;
    let cart = load(&ctx, user_id)?;
    let size: i64 = cart.items.iter().map(|i| i.quantity).sum();
    ctx.biz.cart_size.record(
        size.max(0) as u64,
        &[KeyValue::new("shop.cart.operation", "add")],
    );
    Ok((StatusCode::CREATED, Json(cart)))
}

async fn empty(State(ctx): State<Ctx>, Path(user_id): Path<i64>) -> Result<StatusCode, AppError> {
    const SQL: &str = "DELETE FROM cart_items WHERE user_id = ?1";
    ctx.db.run("DELETE", "cart_items", SQL, |c| {
        c.execute(SQL, params![user_id])
    })?;
    Ok(StatusCode::NO_CONTENT)
}
