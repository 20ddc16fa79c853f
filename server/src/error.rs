//! API errors, each mapped to its HTTP status and written as OpenAI writes them, so clients
//! built for OpenAI show the message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    /// A chat request outside `wire::limits` or `[limits]`.
    #[error("{0}")]
    Invalid(#[from] crate::validation::ValidationError),
    /// A body axum refused before it was read (too large, wrong content type…).
    #[error("{1}")]
    Rejected(StatusCode, String),
    #[error("the model is still loading ({0}); try again in a few seconds")]
    Loading(String),
    #[error("the model could not be loaded: {0}")]
    LoadFailed(String),
    #[error(
        "this server runs no model (started with --no-model): the page answers in the visitor's browser"
    )]
    NoServerModel,
    #[error(
        "the server is busy: all {limit} places in its queue are taken (limits.max_queue = {limit} in space.toml); try again in {retry_after_seconds} s"
    )]
    Overloaded {
        limit: usize,
        retry_after_seconds: u64,
    },
    #[error(
        "you already have {limit} requests in progress or waiting (limits.max_concurrent_per_client = {limit} in space.toml); wait for one to finish"
    )]
    ClientBusy { limit: usize },
    #[error(
        "you sent {limit} requests in the last minute (limits.requests_per_minute_per_client = {limit} in space.toml); try again in {retry_after_seconds} s"
    )]
    ClientRateLimited {
        limit: usize,
        retry_after_seconds: u64,
    },
    #[error(
        "this request would have the model read and write {asked} tokens, more than is left of your {limit} a minute (limits.tokens_per_minute_per_client = {limit} in space.toml); try again in {retry_after_seconds} s, or send a shorter conversation or a smaller max_tokens"
    )]
    ClientTokens {
        limit: usize,
        asked: usize,
        retry_after_seconds: u64,
    },
    /// A POST whose body is not declared as JSON: what a cross-site form or a `text/plain`
    /// fetch (which needs no CORS preflight) sends.
    #[error(
        "this route takes a JSON body: send it with `Content-Type: application/json` (found {0})"
    )]
    NotJson(String),
    /// The remote backend (`[server] backend = "remote"`) failed or could not be reached. The
    /// visitor gets the request id only: the upstream's address and its words go to the log.
    #[error(
        "the model server behind this Space failed (request {request_id}; the Space's log has the detail); try again in a moment"
    )]
    Upstream { request_id: String },
    /// The remote backend took longer than `[server] remote_*_timeout_s` allow.
    #[error(
        "the model server behind this Space did not answer in time (request {request_id}); try again in a moment"
    )]
    UpstreamTimeout { request_id: String },
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// A forward step failed for every answer in it.
    #[error("generation failed: {0}")]
    GenerationFailed(String),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "`receipt` is missing: feedback on a server answer must carry the receipt its last chunk (or its body) gave"
    )]
    NoReceipt,
    #[error(
        "this answer's receipt does not match it: the answer, its conversation or its settings differ from what this Space's model gave (or the model has changed since); it was not stored"
    )]
    ForgedAnswer,
    #[error(
        "this answer was not made by the browser model: the server's copy of {0}, given the same conversation and settings, writes something else; it was not stored"
    )]
    NotRemade(String),
    #[error(
        "the server is already checking other answers made in visitors' browsers; try again in a few seconds"
    )]
    RemakesBusy,
    /// A stored answer's receipt sent again under another key.
    #[error("{0}")]
    AlreadyStored(String),
    /// The feedback database could not be opened at start-up (the reason says why).
    #[error("feedback is not being stored on this server: {0}")]
    FeedbackUnavailable(String),
    #[error("the feedback database failed: {0}")]
    Storage(String),
    #[error(
        "exports are disabled: set the VITRINA_ADMIN_TOKEN secret in the Space's settings, restart it, and send it as `Authorization: Bearer <token>`"
    )]
    ExportsDisabled,
    #[error(
        "wrong or missing admin token: send the VITRINA_ADMIN_TOKEN secret as `Authorization: Bearer <token>`"
    )]
    Unauthorized,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Rejected(status, _) => *status,
            Self::Loading(_) | Self::LoadFailed(_) | Self::NoServerModel => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Overloaded { .. }
            | Self::ClientBusy { .. }
            | Self::ClientRateLimited { .. }
            | Self::ClientTokens { .. }
            | Self::RemakesBusy => StatusCode::TOO_MANY_REQUESTS,
            Self::NotJson(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(error) => error.status(),
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Engine(
                EngineError::ContextOverflow { .. }
                | EngineError::InvalidParameter { .. }
                | EngineError::Template(_),
            ) => StatusCode::BAD_REQUEST,
            Self::Engine(_) | Self::Storage(_) | Self::GenerationFailed(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NoReceipt => StatusCode::BAD_REQUEST,
            Self::ForgedAnswer | Self::NotRemade(_) => StatusCode::FORBIDDEN,
            Self::AlreadyStored(_) => StatusCode::CONFLICT,
            Self::FeedbackUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ExportsDisabled => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    fn kind(&self) -> &'static str {
        match self.status() {
            status if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS => {
                "invalid_request_error"
            }
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
            _ => "server_error",
        }
    }

    /// Why the request was refused, for `/metrics`: the limit's name where a limit refused it.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(error) if error.is_too_long() => "max_input_tokens",
            Self::InvalidRequest(_) | Self::Invalid(_) => "invalid_request",
            Self::Rejected(StatusCode::PAYLOAD_TOO_LARGE, _) => "body_too_large",
            Self::Rejected(..) => "unreadable_request",
            Self::Loading(_) => "loading",
            Self::LoadFailed(_) => "load_failed",
            Self::NoServerModel => "no_server_model",
            Self::Overloaded { .. } => "max_queue",
            Self::ClientBusy { .. } => "max_concurrent_per_client",
            Self::ClientRateLimited { .. } => "requests_per_minute_per_client",
            Self::ClientTokens { .. } => "tokens_per_minute_per_client",
            Self::NotJson(_) => "not_json",
            Self::Upstream { .. } => "upstream_failed",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::Engine(_) if self.status().is_client_error() => "invalid_request",
            Self::Engine(_) | Self::GenerationFailed(_) => "generation_failed",
            Self::NotFound(_) => "not_found",
            Self::NoReceipt => "no_receipt",
            Self::ForgedAnswer => "forged_answer",
            Self::NotRemade(_) => "not_remade",
            Self::RemakesBusy => "remakes_busy",
            Self::AlreadyStored(_) => "replayed_receipt",
            Self::FeedbackUnavailable(_) | Self::Storage(_) => "storage",
            Self::ExportsDisabled => "exports_disabled",
            Self::Unauthorized => "unauthorized",
        }
    }

    /// The OpenAI-style JSON body.
    pub fn body(&self) -> wire::openai::ErrorBody {
        wire::openai::ErrorBody::new(self.to_string(), self.kind())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        response.extensions_mut().insert(Refusal(self.reason()));
        let unauthorized = matches!(self, Self::Unauthorized);
        let retry_after_seconds = match self {
            Self::Overloaded {
                retry_after_seconds,
                ..
            }
            | Self::ClientRateLimited {
                retry_after_seconds,
                ..
            }
            | Self::ClientTokens {
                retry_after_seconds,
                ..
            } => Some(retry_after_seconds),
            Self::Loading(_) | Self::ClientBusy { .. } | Self::RemakesBusy => Some(5),
            _ => None,
        };
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Left on every response an [`ApiError`] wrote, so that one layer counts refusals for every
/// route (see [`count_refusals`]).
#[derive(Clone, Copy, Debug)]
pub struct Refusal(pub &'static str);

/// Counts the refusals among `router`'s responses in `metrics`, by reason.
pub fn count_refusals<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    metrics: std::sync::Arc<crate::inference::Inference>,
) -> axum::Router<S> {
    router.layer(axum::middleware::map_response(move |response: Response| {
        let metrics = std::sync::Arc::clone(&metrics);
        async move {
            if let Some(Refusal(reason)) = response.extensions().get::<Refusal>() {
                metrics
                    .metrics
                    .refusals
                    .get_or_create(&crate::metrics::ReasonLabel { reason })
                    .inc();
            }
            response
        }
    }))
}
