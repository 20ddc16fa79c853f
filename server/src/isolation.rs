//! Cross-origin isolation: the headers of [`wire::worker::ISOLATION_HEADERS`] on every
//! response, so that the browser model's worker may share memory between threads.

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// `router` with the isolation headers on every response it writes.
pub fn isolated(router: Router) -> Router {
    router.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            for (name, value) in wire::worker::ISOLATION_HEADERS {
                response.headers_mut().insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            response
        },
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn every_response_carries_the_headers_errors_included() {
        let app = isolated(Router::new().route("/", get(|| async { "hola" })));
        for (path, status) in [("/", StatusCode::OK), ("/missing", StatusCode::NOT_FOUND)] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), status);
            for (name, value) in wire::worker::ISOLATION_HEADERS {
                assert_eq!(response.headers()[name], value, "{path}: {name}");
            }
        }
    }
}
