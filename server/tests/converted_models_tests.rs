//! space.toml pointing at what teams publish — a safetensors checkpoint, a LoRA adapter with
//! its base, a Qwen3 GGUF pinned by a commit — builds (the conversion `vitrina --prefetch`
//! runs) and serves, from a stand-in of the Hub on loopback that answers as the Hub does
//! (`api/models/…/revision/…?blobs=true` with LFS sha256s, `resolve/<commit>/<file>`).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use server::inference::{Inference, ResolvedModel};

#[allow(dead_code)]
#[path = "../../engine/examples/checkpoints/mod.rs"]
mod checkpoints;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The Hub stand-in: repositories are folders `root/<owner>/<name>/`; every request counted.
struct FakeHub {
    root: PathBuf,
    requests: Arc<AtomicUsize>,
}

fn hub() -> &'static FakeHub {
    static HUB: OnceLock<FakeHub> = OnceLock::new();
    HUB.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let requests = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (served, counter) = (root.clone(), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = answer(&served, &path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        // SAFETY: set once, before any test of this file reads it (the Hub's address).
        unsafe { std::env::set_var("HF_ENDPOINT", format!("http://{address}")) };
        FakeHub { root, requests }
    })
}

fn answer(root: &Path, path: &str) -> (&'static str, Vec<u8>) {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = ("404 Not Found", b"Repository not found".to_vec());
    match parts.as_slice() {
        ["api", "models", owner, name, "revision", revision] => {
            let dir = root.join(owner).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return not_found;
            };
            let siblings: Vec<serde_json::Value> = entries
                .flatten()
                .map(|entry| {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let size = entry.metadata().unwrap().len();
                    let lfs = file.ends_with(".safetensors") || file.ends_with(".gguf");
                    let mut sibling = serde_json::json!({"rfilename": file, "size": size});
                    if lfs {
                        sibling["lfs"] = serde_json::json!({"sha256": engine::cache::file_sha256(&entry.path()).unwrap(), "size": size});
                    }
                    sibling
                })
                .collect();
            let sha = if revision.len() == 40 {
                (*revision).to_owned()
            } else {
                COMMIT.to_owned()
            };
            (
                "200 OK",
                serde_json::json!({"sha": sha, "siblings": siblings})
                    .to_string()
                    .into_bytes(),
            )
        }
        [owner, name, "resolve", _revision, file] => {
            match std::fs::read(root.join(owner).join(name).join(file)) {
                Ok(bytes) => ("200 OK", bytes),
                Err(_) => not_found,
            }
        }
        _ => not_found,
    }
}

/// The repository's own space.toml with another `[model]`.
fn space_with_model(model: &str) -> space::Space {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../space.toml")).unwrap();
    let text = text.replace(
        "[model]\ncatalog = \"qwen2.5-coder-0.5b\"",
        &format!("[model]\n{model}"),
    );
    space::parse(&text, "space.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// Builds (fetch and convert, as `--prefetch`) then serves `space`'s model; the answer of a
/// chat request through the API.
fn build_and_chat(
    space: &space::Space,
    cache: &engine::cache::ModelCache,
) -> (PathBuf, serde_json::Value) {
    let model = ResolvedModel::resolve_with(&space.model.source, &space.model, cache).unwrap();
    let built = model
        .fetch(&mut |_, _| {})
        .unwrap_or_else(|error| panic!("{error}"));
    let inference = Inference::new();
    inference.start_loading(model, engine::LoadOptions::default(), Vec::new());
    let inference = common::wait_until_ready(inference);
    let api = common::api(inference, common::roomy_limits());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async move {
        let address = common::serve(api).await;
        let response = reqwest::Client::new()
            .post(format!("http://{address}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"messages": [{"role": "user", "content": "Hola"}], "max_tokens": 5, "temperature": 0}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().await.unwrap()
    });
    (built.path, answer)
}

fn publish(repo: &str, spec: &checkpoints::Spec) -> PathBuf {
    let dir = hub().root.join(repo);
    checkpoints::write(&dir, spec).unwrap();
    dir
}

#[test]
fn a_safetensors_repository_builds_once_and_serves_without_the_hub_after() {
    let repo = "equipo/modelo-llama";
    publish(repo, &checkpoints::Spec::tiny("llama"));
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = engine::cache::ModelCache::new(cache_dir.path());
    let space = space_with_model(&format!(
        "hub = {{ repo = \"{repo}\", revision = \"{COMMIT}\" }}\nquantization = \"q8_0\""
    ));
    let (built, answer) = build_and_chat(&space, &cache);
    assert!(
        built.ends_with(format!("converted/equipo--modelo-llama@{COMMIT}-q8_0.gguf")),
        "{}",
        built.display()
    );
    assert_eq!(answer["usage"]["completion_tokens"], 5, "{answer}");
    // The shards are gone (the GGUF holds the weights); the small files stay.
    let downloaded = cache_dir
        .path()
        .join(format!("hub/equipo--modelo-llama/{COMMIT}"));
    assert!(downloaded.join("config.json").is_file());
    assert!(!downloaded.join("model-00001-of-00002.safetensors").exists());
    // A cold start: the converted file serves, and the Hub is not asked anything.
    let asked = hub().requests.load(Ordering::Relaxed);
    let model = ResolvedModel::resolve_with(&space.model.source, &space.model, &cache).unwrap();
    assert_eq!(model.fetch(&mut |_, _| {}).unwrap().path, built);
    assert_eq!(hub().requests.load(Ordering::Relaxed), asked);
}

#[test]
fn a_lora_adapter_builds_on_the_base_it_names() {
    let spec = checkpoints::Spec {
        shards: 1,
        ..checkpoints::Spec::tiny("qwen2")
    };
    publish("equipo/base-qwen", &spec);
    let adapter = hub().root.join("equipo/adaptador-lora");
    checkpoints::write_adapter(&adapter, &spec, "equipo/base-qwen", 4, false).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = engine::cache::ModelCache::new(cache_dir.path());
    let space = space_with_model(&format!(
        "hub = {{ repo = \"equipo/adaptador-lora\", revision = \"{COMMIT}\" }}"
    ));
    let (built, answer) = build_and_chat(&space, &cache);
    assert!(
        built.to_string_lossy().ends_with("-q4_k_m.gguf"),
        "{}",
        built.display()
    );
    assert_eq!(answer["usage"]["completion_tokens"], 5, "{answer}");
    // A base given in space.toml wins over the adapter's own, and one the Hub has not is said.
    let space = space_with_model(&format!(
        "hub = {{ repo = \"equipo/adaptador-lora\", revision = \"{COMMIT}\" }}\nbase = {{ repo = \"equipo/no-existe\" }}"
    ));
    let model = ResolvedModel::resolve_with(&space.model.source, &space.model, &cache).unwrap();
    let error = model.fetch(&mut |_, _| {}).map(|_| ()).unwrap_err();
    assert!(
        error.contains("equipo/no-existe") && error.contains("[model] base"),
        "{error}"
    );
}

#[test]
fn a_qwen3_gguf_pinned_by_a_commit_needs_no_sha256_and_a_wrong_one_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("qwen3");
    checkpoints::write(&checkpoint, &checkpoints::Spec::tiny("qwen3")).unwrap();
    let repo = hub().root.join("equipo/modelo-qwen3-GGUF");
    std::fs::create_dir_all(&repo).unwrap();
    let gguf = repo.join("modelo-qwen3-q8_0.gguf");
    engine::convert::convert(
        &engine::convert::Conversion {
            model: &checkpoint,
            adapter: None,
            tokenizer: None,
            quantization: engine::convert::Quantization::Q8_0,
            chat_template: None,
            name: "qwen3",
        },
        &gguf,
        &mut |_| {},
    )
    .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = engine::cache::ModelCache::new(cache_dir.path());
    let space = space_with_model(&format!(
        "hub = {{ repo = \"equipo/modelo-qwen3-GGUF\", file = \"modelo-qwen3-q8_0.gguf\", revision = \"{COMMIT}\" }}"
    ));
    let (built, answer) = build_and_chat(&space, &cache);
    assert_eq!(
        engine::cache::file_sha256(&built).unwrap(),
        engine::cache::file_sha256(&gguf).unwrap()
    );
    assert_eq!(answer["usage"]["completion_tokens"], 5, "{answer}");
    let wrong = space_with_model(&format!(
        "hub = {{ repo = \"equipo/modelo-qwen3-GGUF\", file = \"modelo-qwen3-q8_0.gguf\", revision = \"{COMMIT}\", sha256 = \"{}\" }}",
        "0".repeat(64)
    ));
    let fresh = tempfile::tempdir().unwrap();
    let model = ResolvedModel::resolve_with(
        &wrong.model.source,
        &wrong.model,
        &engine::cache::ModelCache::new(fresh.path()),
    )
    .unwrap();
    let error = model.fetch(&mut |_, _| {}).map(|_| ()).unwrap_err();
    assert!(error.contains("sha256"), "{error}");
}
