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
    #[error("the server is busy: {queued} requests are already waiting (limit {limit}); try again in a few seconds")]
    Overloaded { queued: usize, limit: usize },
    #[error("{0}")]
    Engine(#[from] EngineError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Rejected(status, _) => *status,
            Self::Loading(_) | Self::LoadFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
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
        if matches!(self, Self::Overloaded { .. } | Self::Loading(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
