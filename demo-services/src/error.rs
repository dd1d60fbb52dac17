//! The shop's errors: a failed call to another service ([`CallError`]),
//! a handler's error answer ([`AppError`]) and the message it leaves for
//! the SERVER span ([`ErrorMessage`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a handler reports about a failure, for the span status message.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

/// A failed call to another service.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with an error status.
    #[error("{service} answered {status}: {message}")]
    Status {
        service: String,
        status: StatusCode,
        message: String,
    },
    /// No answer: connection refused, timeout, bad body.
    #[error("{service} unreachable: {message}")]
    Transport { service: String, message: String },
}

impl CallError {
    /// The status the callee answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            CallError::Transport { .. } => None,
        }
    }
}

/// A handler error: an HTTP status and a message, answered as
/// `{"error": message}` and recorded on the SERVER span.
#[derive(Debug)]
pub struct AppError {
    /// Status to answer with.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl AppError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }
}

impl From<CallError> for AppError {
    /// A failed dependency is a 502 (or 504 when it timed out), except that
    /// its 4xx answers pass through: they are the caller's problem.
    fn from(e: CallError) -> AppError {
        let status = match e.status() {
            Some(s) if s.is_client_error() => s,
            Some(_) => StatusCode::BAD_GATEWAY,
            None if e.to_string().contains("timed out") => StatusCode::GATEWAY_TIMEOUT,
            None => StatusCode::BAD_GATEWAY,
        };
        let message = match &e {
            CallError::Status {
                status, message, ..
            } if status.is_client_error() => message.clone(),
            _ => e.to_string(),
        };
        AppError::new(status, message)
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> AppError {
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("database error: {e}"),
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut resp = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        resp.extensions_mut().insert(ErrorMessage(self.message));
        resp
    }
}
