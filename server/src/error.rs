//! API errors, each mapped to its HTTP status and written as OpenAI writes them, so clients
//! built for OpenAI show the message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    /// A body axum refused before it was read (too large, wrong content type…).
    #[error("{1}")]
    Rejected(StatusCode, String),
    #[error("the model is still loading ({0}); try again in a few seconds")]
    Loading(String),
    #[error("the model could not be loaded: {0}")]
    LoadFailed(String),
    #[error("this server runs no model (started with --no-model): the page answers in the visitor's browser")]
    NoServerModel,
    #[error(
        "the server is busy: all {limit} places in its queue are taken (limits.max_queue = {limit} in space.toml); try again in {retry_after_seconds} s"
    )]
    Overloaded { limit: usize, retry_after_seconds: u64 },
    #[error(
        "you already have {limit} requests in progress or waiting (limits.max_concurrent_per_client = {limit} in space.toml); wait for one to finish"
    )]
    ClientBusy { limit: usize },
    #[error(
        "you sent {limit} requests in the last minute (limits.requests_per_minute_per_client = {limit} in space.toml); try again in {retry_after_seconds} s"
    )]
    ClientRateLimited { limit: usize, retry_after_seconds: u64 },
    /// The conversation or the answer asked for is longer than space.toml allows.
    #[error("{0}")]
    TooManyTokens(String),
    /// The remote backend (`[server] backend = "remote"`) failed or could not be reached.
    #[error("the model server behind this Space failed: {0}")]
    Upstream(String),
    #[error("{0}")]
    Engine(#[from] EngineError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Rejected(status, _) => *status,
            Self::Loading(_) | Self::LoadFailed(_) | Self::NoServerModel => StatusCode::SERVICE_UNAVAILABLE,
            Self::Overloaded { .. } | Self::ClientBusy { .. } | Self::ClientRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyTokens(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Engine(EngineError::ContextOverflow { .. } | EngineError::InvalidParameter { .. } | EngineError::Template(_)) => {
                StatusCode::BAD_REQUEST
            }
            Self::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self.status() {
            status if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS => "invalid_request_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
            _ => "server_error",
        }
    }

    /// The OpenAI-style JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.to_string(), "type": self.kind(), "param": null, "code": null}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        let retry_after_seconds = match self {
            Self::Overloaded { retry_after_seconds, .. } | Self::ClientRateLimited { retry_after_seconds, .. } => Some(retry_after_seconds),
            Self::Loading(_) | Self::ClientBusy { .. } => Some(5),
            _ => None,
        };
        if let Some(seconds) = retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
