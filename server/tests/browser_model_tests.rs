//! `/models`: the browser's model file, served from the cache for Range requests and long
//! caching.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use engine::cache::{CachedFile, ModelCache, Source};
use http_body_util::BodyExt;
use server::browser_model::{BrowserModel, routes};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

fn get(
    model: &Arc<BrowserModel>,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = routes(Arc::clone(model))
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes().to_vec(),
        )
    })
}

#[test]
fn the_browser_model_is_served_with_range_etag_and_long_caching() {
    let dir = tempfile::tempdir().unwrap();
    let weights: Vec<u8> = (0..5000u32).map(|n| (n % 251) as u8).collect();
    let source = dir.path().join("source.gguf");
    std::fs::write(&source, &weights).unwrap();
    let sha256: String = Sha256::digest(&weights)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let file = CachedFile {
        file_name: "tiny.gguf".into(),
        sha256: sha256.clone(),
        sources: vec![Source::LocalPath(source)],
    };
    let model = BrowserModel::new("tiny".into(), file, false);

    let (status, _, _) = get(&model, "/models", &[]);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not fetched yet");
    model.fetch(&ModelCache::new(dir.path().join("cache")));

    let (status, _, body) = get(&model, "/models", &[]);
    assert_eq!(status, StatusCode::OK);
    let described: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        described,
        serde_json::json!({"name": "tiny", "url": "/models/tiny.gguf", "sha256": sha256, "bytes": 5000})
    );

    let (status, headers, body) = get(&model, "/models/tiny.gguf", &[]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, weights);
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{sha256}\""));
    assert!(
        headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    let (status, headers, body) = get(
        &model,
        "/models/tiny.gguf",
        &[(header::RANGE, "bytes=1000-1999")],
    );
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, weights[1000..2000]);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes 1000-1999/5000");

    let (status, _, body) = get(
        &model,
        "/models/tiny.gguf",
        &[(header::IF_NONE_MATCH, &etag)],
    );
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

    let (status, _, _) = get(&model, "/models/other.gguf", &[]);
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "only the browser model is served"
    );
    let (status, _, _) = get(&model, "/models/..%2Fsource.gguf", &[]);
    assert_eq!(status, StatusCode::NOT_FOUND);
}
