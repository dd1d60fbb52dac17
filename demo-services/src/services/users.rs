//! `users`: registration, login (issues a session token), token checks and
//! profiles.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{Ctx, not_found, now_ms};
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    salt TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

const SESSION_MS: i64 = 12 * 3600 * 1000;

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/users", post(register))
        .route("/users/{id}", get(profile))
        .route("/sessions", post(login))
        .route("/sessions/{token}", get(verify))
        .with_state(ctx)
}

fn hash(salt: &str, password: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

#[derive(Deserialize)]
struct Register {
    email: String,
    name: String,
    password: String,
}

#[derive(Serialize)]
struct UserId {
    user_id: i64,
}

async fn register(
    State(ctx): State<Ctx>,
    Json(req): Json<Register>,
) -> Result<(StatusCode, Json<UserId>), AppError> {
    if !req.email.contains('@') || req.password.len() < 8 {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "an email address and a password of at least 8 characters are required",
        ));
    }
    let salt = uuid::Uuid::new_v4().simple().to_string();
    const SQL: &str = "INSERT INTO users (email, name, salt, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (email) DO NOTHING";
    let id = ctx.db.run("INSERT", "users", SQL, |c| {
        let n = c.execute(
            SQL,
            params![
                req.email,
                req.name,
                salt,
                hash(&salt, &req.password),
                now_ms()
            ],
        )?;
        Ok((n == 1).then(|| c.last_insert_rowid()))
    })?;
    let user_id = id.ok_or_else(|| {
        AppError::new(
            StatusCode::CONFLICT,
            format!("{} is already registered", req.email),
        )
    })?;
    tracing::info!(user_id, "user registered");
    Ok((StatusCode::CREATED, Json(UserId { user_id })))
}

#[derive(Serialize)]
struct Profile {
    user_id: i64,
    email: String,
    name: String,
}

async fn profile(State(ctx): State<Ctx>, Path(id): Path<i64>) -> Result<Json<Profile>, AppError> {
    const SQL: &str = "SELECT id, email, name FROM users WHERE id = ?1";
    let p = ctx.db.run("SELECT", "users", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![id], |r| {
                Ok(Profile {
                    user_id: r.get(0)?,
                    email: r.get(1)?,
                    name: r.get(2)?,
                })
            })
            .optional()
    })?;
    Ok(Json(p.ok_or_else(|| not_found(format!("user {id}")))?))
}

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
}

#[derive(Serialize)]
struct Session {
    token: String,
    user_id: i64,
}

async fn login(State(ctx): State<Ctx>, Json(req): Json<Login>) -> Result<Json<Session>, AppError> {
    const SQL: &str = "SELECT id, salt, password_hash FROM users WHERE email = ?1";
    let user = ctx.db.run("SELECT", "users", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![req.email], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()
    })?;
    let unauthorized = || AppError::new(StatusCode::UNAUTHORIZED, "wrong email or password");
    let (user_id, salt, stored) = user.ok_or_else(unauthorized)?;
    if hash(&salt, &req.password) != stored {
        tracing::warn!(user_id, "login with a wrong password");
        return Err(unauthorized());
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    const INSERT: &str = "INSERT INTO sessions (token, user_id, expires_ms) VALUES (?1, ?2, ?3)";
    ctx.db.run("INSERT", "sessions", INSERT, |c| {
        c.execute(INSERT, params![token, user_id, now_ms() + SESSION_MS])
    })?;
    tracing::info!(user_id, "user logged in");
    Ok(Json(Session { token, user_id }))
}

async fn verify(
    State(ctx): State<Ctx>,
    Path(token): Path<String>,
) -> Result<Json<UserId>, AppError> {
    const SQL: &str = "SELECT user_id FROM sessions WHERE token = ?1 AND expires_ms > ?2";
    let user_id = ctx.db.run("SELECT", "sessions", SQL, |c| {
        c.prepare_cached(SQL)?
            .query_row(params![token, now_ms()], |r| r.get::<_, i64>(0))
            .optional()
    })?;
    let user_id = user_id
        .ok_or_else(|| AppError::new(StatusCode::UNAUTHORIZED, "unknown or expired session"))?;
    Ok(Json(UserId { user_id }))
}
