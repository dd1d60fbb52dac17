//! `catalog`: products and search. A product page also asks `inventory`
//! for the stock level.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Ctx, not_found};
use crate::db::Db;
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS products_category ON products (category);
";

/// Number of products in the catalogue (ids 1..=PRODUCTS).
pub const PRODUCTS: i64 = 48;

const ADJECTIVES: [&str; 8] = [
    "Classic",
    "Trail",
    "Urban",
    "Ultralight",
    "Vintage",
    "Pro",
    "Everyday",
    "Alpine",
];
const ITEMS: [(&str, &str, i64); 6] = [
    ("Backpack", "bags", 8900),
    ("Jacket", "apparel", 12900),
    ("Water Bottle", "accessories", 1900),
    ("Headlamp", "gear", 3900),
    ("Sneakers", "footwear", 9900),
    ("Tent", "gear", 24900),
];

/// Fills the catalogue on first start.
pub fn seed(db: &Db) -> anyhow::Result<()> {
    db.untraced(|c| {
        let n: i64 = c.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?;
        if n > 0 {
            return Ok(());
        }
        let tx = c.transaction()?;
        let mut id = 1i64;
        for adj in ADJECTIVES {
            for (item, category, base) in ITEMS {
                tx.execute(
                    "INSERT INTO products (id, name, category, description, price_cents) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        id,
                        format!("{adj} {item}"),
                        category,
                        format!("The {} {} for every day.", adj.to_lowercase(), item.to_lowercase()),
                        base + (id % 7) * 500,
                    ],
                )?;
                id += 1;
            }
        }
        tx.commit()
    })?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category: String,
    pub description: String,
    pub price_cents: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
}

fn product(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        category: r.get(2)?,
        description: r.get(3)?,
        price_cents: r.get(4)?,
        stock: None,
    })
}

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/products", get(list))
        .route("/products/{id}", get(show))
        .route("/search", get(search))
        .with_state(ctx)
}

#[derive(Deserialize)]
struct ListQuery {
    category: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(ctx): State<Ctx>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Product>>, AppError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    const SQL: &str = "SELECT id, name, category, description, price_cents FROM products WHERE (?1 IS NULL OR category = ?1) ORDER BY id LIMIT ?2";
    let rows = ctx.db.run("SELECT", "products", SQL, |c| {
        let mut st = c.prepare_cached(SQL)?;
        st.query_map(params![q.category, limit], product)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    Ok(Json(rows))
}

#[derive(Deserialize)]
struct Stock {
    available: i64,
}

async fn show(State(ctx): State<Ctx>, Path(id): Path<i64>) -> Result<Json<Product>, AppError> {
    const SQL: &str =
        "SELECT id, name, category, description, price_cents FROM products WHERE id = ?1";
    let found = ctx.db.run("SELECT", "products", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![id], product)
            .optional()
    })?;
    let mut p = found.ok_or_else(|| not_found(format!("product {id}")))?;
    let stock: Stock = ctx
        .client
        .get("inventory", "/stock/{product_id}", &format!("/stock/{id}"))
        .await?;
    p.stock = Some(stock.available);
    Ok(Json(p))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search(
    State(ctx): State<Ctx>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Vec<Product>>, AppError> {
    const SQL: &str = "SELECT id, name, category, description, price_cents FROM products WHERE name LIKE ?1 OR description LIKE ?1 OR category LIKE ?1 ORDER BY id LIMIT 20";
    let pattern = format!("%{}%", q.q.replace(['%', '_'], ""));
    tracing::debug!(query = %q.q, "catalog search");
    let rows = ctx.db.run("SELECT", "products", SQL, |c| {
        let mut st = c.prepare_cached(SQL)?;
        st.query_map(params![pattern], product)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    Ok(Json(rows))
}
