//! `notifications`: consumes `order.confirmed` events from the orders outbox
//! and sends (records) the confirmation email. Each message is processed in
//! a CONSUMER span linked to the PRODUCER span that wrote it.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{Link, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::orders::{DESTINATION, Event};
use super::{Ctx, now_ms};
use crate::error::AppError;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS emails (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    subject TEXT NOT NULL,
    sent_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    destination TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
";

pub fn router(ctx: Ctx) -> Router {
    Router::new().route("/emails", get(emails)).with_state(ctx)
}

#[derive(Deserialize)]
struct EmailQuery {
    order_id: Option<String>,
}

#[derive(Serialize)]
struct Email {
    order_id: String,
    user_id: i64,
    subject: String,
    sent_ms: i64,
}

async fn emails(
    State(ctx): State<Ctx>,
    Query(q): Query<EmailQuery>,
) -> Result<Json<Vec<Email>>, AppError> {
    const SQL: &str = "SELECT order_id, user_id, subject, sent_ms FROM emails WHERE (?1 IS NULL OR order_id = ?1) ORDER BY id DESC LIMIT 50";
    let rows = ctx.db.run("SELECT", "emails", SQL, |c| {
        let mut st = c.prepare_cached(SQL)?;
        st.query_map(params![q.order_id], |r| {
            Ok(Email {
                order_id: r.get(0)?,
                user_id: r.get(1)?,
                subject: r.get(2)?,
                sent_ms: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    Ok(Json(rows))
}

/// Background consumer: polls the orders outbox every 500 ms from the last
/// committed offset (kept in this service's database, so a restart neither
/// skips nor repeats messages) and processes each event.
pub async fn consume(ctx: Ctx, stop: CancellationToken) {
    let Some(base) = ctx.client.url("orders").map(str::to_string) else {
        tracing::error!("no address for orders; the consumer does not run");
        return;
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client without TLS always builds");
    let mut offset = ctx
        .db
        .untraced(|c| {
            c.query_row(
                "SELECT last_seq FROM consumer_offsets WHERE destination = ?1",
                params![DESTINATION],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .ok()
        .flatten()
        .unwrap_or(0);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let url = format!("{base}/outbox?after={offset}&limit=100");
        let events = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.json::<Vec<Event>>().await.ok(),
            _ => None,
        };
        let Some(events) = events else {
            failures += 1;
            if failures == 1 || failures.is_multiple_of(60) {
                tracing::warn!(url = %url, "cannot poll the orders outbox; retrying");
            }
            continue;
        };
        failures = 0;
        for event in events {
            let seq = event.seq;
            if process(&ctx, &event).await.is_ok() {
                offset = seq;
            } else {
                // Retry this message at the next poll.
                break;
            }
        }
    }
}

fn producer_context(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

async fn process(ctx: &Ctx, event: &Event) -> Result<(), AppError> {
    let tracer = &ctx.inst.tracer;
    let links = producer_context(&event.traceparent)
        .map(|sc| vec![Link::with_context(sc)])
        .unwrap_or_default();
    // A new trace per message, linked to the producer's (messaging
    // conventions for consumers that process outside the sender's request).
    let span = tracer
        .span_builder(format!("process {DESTINATION}"))
        .with_kind(SpanKind::Consumer)
        .with_links(links)
        .with_attributes([
            KeyValue::new("messaging.system", "outbox"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", DESTINATION),
            KeyValue::new("messaging.consumer.group.name", "notifications"),
            KeyValue::new("messaging.message.id", event.seq.to_string()),
            KeyValue::new("shop.order.id", event.order_id.clone()),
        ])
        .start_with_context(tracer, &Context::new());
    let cx = Context::new().with_span(span);
    let result = async {
        // Rendering and handing the email to the mail relay.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let subject = format!(
            "Your order {} is confirmed ({}.{:02} USD)",
            &event.order_id[..8.min(event.order_id.len())],
            event.total_cents / 100,
            event.total_cents % 100
        );
        const SQL: &str = "INSERT INTO emails (order_id, user_id, subject, sent_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (order_id) DO NOTHING";
        ctx.db.run("INSERT", "emails", SQL, |c| {
            let tx = c.transaction()?;
            tx.execute(SQL, params![event.order_id, event.user_id, subject, now_ms()])?;
            tx.execute(
                "INSERT INTO consumer_offsets (destination, last_seq) VALUES (?1, ?2) ON CONFLICT (destination) DO UPDATE SET last_seq = excluded.last_seq",
                params![DESTINATION, event.seq],
            )?;
            tx.commit()
        })?;
        tracing::info!(order_id = %event.order_id, user_id = event.user_id, "order confirmation email sent");
        Ok::<(), AppError>(())
    }
    .with_context(cx.clone())
    .await;
    let span = cx.span();
    if let Err(e) = &result {
        span.set_status(Status::error(e.message.clone()));
    }
    span.end();
    result
}
