//! `/models`: the browser's model file, served from the cache for Range requests and long
//! caching.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use engine::cache::{CachedFile, ModelCache, Source};
use http_body_util::BodyExt;
use server::browser_model::{BrowserModel, routes};
use server::inference::ResolvedModel;
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

/// A GGUF a browser could load as far as its header goes: llama, one 1000-value F32 tensor
/// (4000 bytes of data after the header).
fn small_gguf(path: &std::path::Path) -> Vec<u8> {
    use candle_core::quantized::{QTensor, gguf_file};
    let values: Vec<f32> = (0..1000).map(|n| n as f32).collect();
    let tensor = QTensor::quantize(
        &candle_core::Tensor::from_vec(values, 1000, &candle_core::Device::Cpu).unwrap(),
        candle_core::quantized::GgmlDType::F32,
    )
    .unwrap();
    let architecture = gguf_file::Value::String("llama".into());
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(
        &mut file,
        &[("general.architecture", &architecture)],
        &[("weights", &tensor)],
    )
    .unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn the_browser_model_is_served_with_range_etag_and_long_caching() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.gguf");
    let weights = small_gguf(&source);
    let length = weights.len();
    let sha256: String = Sha256::digest(&weights)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let file = CachedFile {
        file_name: "tiny.gguf".into(),
        sha256: sha256.clone(),
        sources: vec![Source::LocalPath(source)],
    };
    let model = BrowserModel::new(
        vec![ResolvedModel::Cached {
            name: "tiny".into(),
            cache: ModelCache::new(dir.path().join("cache")),
            file,
        }],
        false,
    );

    let (status, _, _) = get(&model, "/models", &[]);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not fetched yet");
    model.fetch();

    let (status, _, body) = get(&model, "/models", &[]);
    assert_eq!(status, StatusCode::OK);
    let described: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        described,
        serde_json::json!({
            "name": "tiny",
            "url": format!("/models/tiny.gguf?sha256={sha256}"),
            "sha256": sha256,
            "bytes": length,
            "quantization": "F32",
        })
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
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 1000-1999/{length}").as_str()
    );

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

/// The server's own model comes first; one a browser cannot hold or load gives way to the
/// next, and where there is none the Space says why instead of serving it.
#[test]
fn a_model_too_large_or_broken_for_browsers_gives_way_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("large.gguf");
    small_gguf(&large);
    // Sparse: its length is all that matters here.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&large)
        .unwrap()
        .set_len(wire::limits::BROWSER_MODEL_BYTES + 1)
        .unwrap();
    let cut = dir.path().join("cut.gguf");
    let whole = small_gguf(&cut);
    std::fs::write(&cut, &whole[..whole.len() - 100]).unwrap();
    let small = dir.path().join("small.gguf");
    small_gguf(&small);

    let model = BrowserModel::new(
        vec![
            ResolvedModel::File(large.clone()),
            ResolvedModel::File(cut.clone()),
            ResolvedModel::File(small),
        ],
        false,
    );
    model.fetch();
    let (status, _, body) = get(&model, "/models", &[]);
    assert_eq!(status, StatusCode::OK);
    let described: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(described["name"], "small");
    let (status, _, _) = get(&model, "/models/large.gguf", &[]);
    assert_eq!(status, StatusCode::NOT_FOUND);

    for (alone, says) in [(large, "1536 MB"), (cut, "cut short")] {
        let model = BrowserModel::new(vec![ResolvedModel::File(alone)], false);
        model.fetch();
        let (status, _, body) = get(&model, "/models", &[]);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let said = String::from_utf8(body).unwrap();
        assert!(said.contains(says), "{said}");
    }
}
