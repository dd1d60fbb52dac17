//! A webhook receiver on a real socket (axum on an ephemeral port) that
//! answers 200 and keeps each JSON body, for tests of notifications.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The payloads a receiver got, in arrival order.
pub type Received = Arc<Mutex<Vec<Value>>>;

/// Starts a receiver; returns its URL (`http://127.0.0.1:<port>/hook`) and
/// what it receives.
pub async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                "ok"
            }
        }),
    );
    let url = format!("{}/hook", crate::serve(app).await);
    (url, got)
}

/// Waits until `got` holds at least `n` payloads (up to 5 s), then 300 ms
/// more so that anything that should not come has time to; returns them all.
pub async fn settle(got: &Received, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        if got.lock().unwrap_or_else(|e| e.into_inner()).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
