//! `gateway`: the shop's public API (backend for the storefront). Routes
//! requests to the services, checks session tokens with `users` (cached in
//! its own database for a minute) and aggregates answers.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{OptionalExtension as _, params};
use serde::Deserialize;
use serde_json::Value;

use super::{Ctx, now_ms};
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS session_cache (
    token TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    cached_until_ms INTEGER NOT NULL
);
";

const CACHE_MS: i64 = 60_000;

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/products", get(products))
        .route("/api/products/{id}", get(product))
        .route("/api/search", get(search))
        .route("/api/users", post(register))
        .route("/api/login", post(login))
        .route("/api/cart", get(cart))
        .route("/api/cart/items", post(add_to_cart))
        .route("/api/checkout", post(checkout))
        .route("/api/orders/{id}", get(order))
        .with_state(ctx)
}

/// The user behind the request's bearer token.
async fn authenticate(ctx: &Ctx, headers: &HeaderMap) -> Result<i64, AppError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()))
        .ok_or_else(|| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "an Authorization: Bearer <token> header from POST /api/login is required",
            )
        })?
        .to_string();
    const SQL: &str = "SELECT user_id FROM session_cache WHERE token = ?1 AND cached_until_ms > ?2";
    let cached = ctx.db.run("SELECT", "session_cache", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![token, now_ms()], |r| r.get::<_, i64>(0))
            .optional()
    })?;
    if let Some(user_id) = cached {
        return Ok(user_id);
    }
    let v: Value = ctx
        .client
        .get("users", "/sessions/{token}", &format!("/sessions/{token}"))
        .await?;
    let user_id = v["user_id"].as_i64().ok_or_else(|| {
        AppError::new(StatusCode::BAD_GATEWAY, "users answered without a user_id")
    })?;
    const PUT: &str = "INSERT OR REPLACE INTO session_cache (token, user_id, cached_until_ms) VALUES (?1, ?2, ?3)";
    ctx.db.run("INSERT", "session_cache", PUT, |c| {
        c.execute(PUT, params![token, user_id, now_ms() + CACHE_MS])
    })?;
    Ok(user_id)
}

#[derive(Deserialize)]
struct ProductsQuery {
    category: Option<String>,
    limit: Option<u32>,
}

async fn products(
    State(ctx): State<Ctx>,
    Query(q): Query<ProductsQuery>,
) -> Result<Json<Value>, AppError> {
    let mut path = format!("/products?limit={}", q.limit.unwrap_or(20));
    if let Some(c) = q
        .category
        .filter(|c| c.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        path.push_str(&format!("&category={c}"));
    }
    Ok(Json(ctx.client.get("catalog", "/products", &path).await?))
}

async fn product(State(ctx): State<Ctx>, Path(id): Path<i64>) -> Result<Json<Value>, AppError> {
    Ok(Json(
        ctx.client
            .get("catalog", "/products/{id}", &format!("/products/{id}"))
            .await?,
    ))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search(
    State(ctx): State<Ctx>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, AppError> {
    let term: String =
        q.q.chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ')
            .take(64)
            .collect();
    if term.trim().is_empty() {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "q must contain letters or digits",
        ));
    }
    let path = format!("/search?q={}", term.trim().replace(' ', "+"));
    Ok(Json(ctx.client.get("catalog", "/search", &path).await?))
}

async fn register(
    State(ctx): State<Ctx>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let v = ctx
        .client
        .call("users", Method::POST, "/users", "/users", Some(&body))
        .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn login(State(ctx): State<Ctx>, Json(body): Json<Value>) -> Result<Json<Value>, AppError> {
    Ok(Json(
        ctx.client
            .call("users", Method::POST, "/sessions", "/sessions", Some(&body))
            .await?,
    ))
}

async fn cart(State(ctx): State<Ctx>, headers: HeaderMap) -> Result<Json<Value>, AppError> {
    let user_id = authenticate(&ctx, &headers).await?;
    Ok(Json(
        ctx.client
            .get("cart", "/carts/{user_id}", &format!("/carts/{user_id}"))
            .await?,
    ))
}

async fn add_to_cart(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let user_id = authenticate(&ctx, &headers).await?;
    let v = ctx
        .client
        .call(
            "cart",
            Method::POST,
            "/carts/{user_id}/items",
            &format!("/carts/{user_id}/items"),
            Some(&body),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn checkout(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let user_id = authenticate(&ctx, &headers).await?;
    let v = ctx
        .client
        .call(
            "orders",
            Method::POST,
            "/orders",
            "/orders",
            Some(&serde_json::json!({ "user_id": user_id })),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn order(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let user_id = authenticate(&ctx, &headers).await?;
    if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(AppError::new(StatusCode::BAD_REQUEST, "malformed order id"));
    }
    let v: Value = ctx
        .client
        .get("orders", "/orders/{id}", &format!("/orders/{id}"))
        .await?;
    if v["user_id"].as_i64() != Some(user_id) {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            format!("order {id} not found"),
        ));
    }
    // The order page also shows whether the confirmation email went out.
    let emails: Value = ctx
        .client
        .get(
            "notifications",
            "/emails",
            &format!("/emails?order_id={id}"),
        )
        .await?;
    let mut v = v;
    v["notifications"] = emails;
    Ok(Json(v))
}
