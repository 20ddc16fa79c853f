//! End-to-end tests: the real server binary on a free loopback port, driven by the tests in
//! `tests/e2e/` (node's test runner + playwright-core, through the system's headless Chromium)
//! and `tests/api/` (pytest + the official `openai` client, once the model is loaded).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{cargo, run};
use crate::toolchain::Tools;

/// Kills the server however the tests end.
pub(crate) struct RunningServer(pub(crate) Child);

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the hostile test model answers, every token: markup that would run if the page ever
/// turned model text into HTML (see tests/e2e/hostile_model.test.js).
/// The exports' token on the end-to-end server (the tests read the corpus they made).
const E2E_ADMIN_TOKEN: &str = "e2e-admin-token";

const HOSTILE_ANSWER: &str = r#"<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>[clic](javascript:window.__xss=1) "#;

pub fn run_tests(tools: &Tools, model_cache: &std::ffi::OsStr) -> Result<()> {
    run(cargo().args(["build", "-p", "server", "--bin", crate::SERVER_BINARY]))?;
    std::fs::create_dir_all("target/e2e")?;
    // The small real model, from the cache the other tests filled; the same model again as
    // `[compare]`'s base model, for the judges' page; the exports unlocked for the tests. The
    // server keeps the GGUF's own weights (no Q8_0 rewrite), as the browser does by default:
    // a test checks that both then give the same tokens.
    let space_with_compare = Path::new("target/e2e/space-compare.toml");
    let space = std::fs::read_to_string("space.toml")?;
    anyhow::ensure!(
        space.contains("\n[model]\n"),
        "space.toml has no [model] table for the end-to-end server"
    );
    std::fs::write(
        space_with_compare,
        space.replacen("\n[model]\n", "\n[model]\nrequantize = false\n", 1)
            + "\n[compare]\ncatalog = \"smollm2-135m\"\nrequantize = false\n",
    )?;
    let (mut server, url) = start_server_with(
        space_with_compare,
        &[("VITRINA_ADMIN_TOKEN", E2E_ADMIN_TOKEN)],
        &["--model", "smollm2-135m"],
        model_cache,
    )?;
    let hostile_model = Path::new("target/e2e/hostile.gguf");
    // The example as `cargo test --workspace` built it: `cargo run -p engine --example` resolves
    // the features of engine's dependencies alone (serde without what the server asks, …) and
    // compiled some 200 crates again (4 min 55 s here, 2026-12-06).
    run(cargo().args(["build", "--quiet", "--workspace", "--examples"]))?;
    run(Command::new("target/debug/examples/tiny_model")
        .arg(hostile_model)
        .arg(HOSTILE_ANSWER))?;
    let (mut hostile_server, hostile_url) = start_server(
        &["--model".as_ref(), hostile_model.as_os_str()],
        model_cache,
    )?;
    // A team's checkpoint converted as `--prefetch` converts it: served, run in the browser,
    // and read by Python's own GGUF reader.
    let converted = Path::new("target/e2e/converted");
    run(Command::new("target/debug/examples/tiny_checkpoint").arg(converted))?;
    let converted_model = converted.join("converted.gguf");
    let (mut converted_server, converted_url) = start_server(
        &["--model".as_ref(), converted_model.as_os_str()],
        model_cache,
    )?;
    // No model of its own: every answer comes from the visitor's browser, which runs the
    // Space's model (space.toml names no browser model).
    let (mut browser_only_server, browser_only_url) = start_server(&["--no-model"], model_cache)?;
    // Without the isolation headers: the browser's threads cannot start.
    let (mut not_isolated_server, not_isolated_url) = start_server(
        &[
            "--no-model",
            "--browser-model",
            "smollm2-135m",
            "--no-isolation",
        ],
        model_cache,
    )?;
    // A model file cut in half: the server must say why it cannot answer, and the page too.
    let broken_model = Path::new("target/e2e/broken.gguf");
    let whole = std::fs::read(hostile_model)?;
    std::fs::write(broken_model, &whole[..whole.len() / 2])?;
    let (mut broken_server, broken_url) =
        start_server(&["--model".as_ref(), broken_model.as_os_str()], model_cache)?;
    wait_until_healthy(&mut server, &url)?;
    wait_until_healthy(&mut hostile_server, &hostile_url)?;
    wait_until_healthy(&mut converted_server, &converted_url)?;
    wait_until_serving_the_browser_model(&mut browser_only_server, &browser_only_url)?;
    wait_until_serving_the_browser_model(&mut broken_server, &broken_url)?;
    wait_until_serving_the_browser_model(&mut not_isolated_server, &not_isolated_url)?;

    let chromium = tools.chromium.as_ref().context("Chromium was not set up")?;
    let mut browser_tests = Command::new("node");
    browser_tests.args(["--test", "--test-reporter=spec", "tests/e2e/"]);
    browser_tests
        .env("VITRINA_URL", &url)
        .env("VITRINA_HOSTILE_URL", &hostile_url)
        .env("VITRINA_BROWSER_ONLY_URL", &browser_only_url)
        .env("VITRINA_CONVERTED_URL", &converted_url);
    browser_tests
        .env("VITRINA_BROKEN_MODEL_URL", &broken_url)
        .env("VITRINA_NOT_ISOLATED_URL", &not_isolated_url)
        .env("VITRINA_ADMIN_TOKEN", E2E_ADMIN_TOKEN);
    browser_tests.env("CHROMIUM_PATH", chromium);
    run(&mut browser_tests)?;

    let python = tools
        .test_python
        .as_ref()
        .context("the API tests' Python was not set up")?;
    run(Command::new(python)
        .args(["-m", "pytest", "-q", "tests/api"])
        .env("VITRINA_CONVERTED_DIR", converted)
        .env("VITRINA_URL", &url)
        .env("VITRINA_ADMIN_TOKEN", E2E_ADMIN_TOKEN))
}

/// Runs `tests/e2e/browser_bench.mjs` against a server that serves `model` to browsers and
/// runs none itself, for each of `threads` in each of `rounds` rounds; returns its JSON lines.
pub fn run_browser_bench(
    tools: &Tools,
    model_cache: &std::ffi::OsStr,
    model: &str,
    threads: &[usize],
    rounds: usize,
) -> Result<String> {
    run(cargo().args(["build", "-p", "server", "--bin", crate::SERVER_BINARY]))?;
    let (mut server, url) = start_server(&["--no-model", "--browser-model", model], model_cache)?;
    wait_until_serving_the_browser_model(&mut server, &url)?;
    let chromium = tools.chromium.as_ref().context("Chromium was not set up")?;
    let output = Command::new("node")
        .arg("tests/e2e/browser_bench.mjs")
        .env("VITRINA_URL", &url)
        .env(
            "BENCH_THREADS",
            threads
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("BENCH_ROUNDS", rounds.to_string())
        .env("CHROMIUM_PATH", chromium)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run node")?;
    anyhow::ensure!(
        output.status.success(),
        "the browser benchmark failed ({})",
        output.status
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Starts the built server with the repository's space.toml on a free loopback port.
fn start_server(
    model: &[impl AsRef<std::ffi::OsStr>],
    model_cache: &std::ffi::OsStr,
) -> Result<(RunningServer, String)> {
    start_server_with(Path::new("space.toml"), &[], model, model_cache)
}

/// Starts the built server with `config` and environment `env`, its feedback in a fresh
/// folder of its own.
fn start_server_with(
    config: &Path,
    env: &[(&str, &str)],
    model: &[impl AsRef<std::ffi::OsStr>],
    model_cache: &std::ffi::OsStr,
) -> Result<(RunningServer, String)> {
    let port = free_port()?;
    let data_dir = Path::new("target/e2e").join(format!("data-{port}"));
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    let server = Command::new(Path::new("target/debug").join(crate::SERVER_BINARY))
        .arg("--config")
        .arg(config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--site-root", crate::site::SITE_ROOT])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(model)
        .envs(env.iter().copied())
        .env("VITRINA_MODEL_CACHE", model_cache)
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the server for the end-to-end tests")?;
    let mut server = RunningServer(server);
    wait_until_listening(&mut server, port)?;
    Ok((server, format!("http://127.0.0.1:{port}")))
}

/// Waits for `/health` to answer 200: the model is loaded.
pub(crate) fn wait_until_healthy(server: &mut RunningServer, url: &str) -> Result<()> {
    wait_for_200(server, url, "/health")
}

/// Waits for `/models` to answer 200: the browser model is in the cache.
fn wait_until_serving_the_browser_model(server: &mut RunningServer, url: &str) -> Result<()> {
    wait_for_200(server, url, "/models")
}

fn wait_for_200(server: &mut RunningServer, url: &str, path: &str) -> Result<()> {
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .context("the server's URL has no port")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        if let Some(status) = server.0.try_wait()? {
            bail!("the server exited while loading its model ({status})");
        }
        let answer = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream
                .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        if answer.is_ok_and(|answer| {
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
        }) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("the server did not answer GET {path} with 200 within 10 minutes")
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn wait_until_listening(server: &mut RunningServer, port: u16) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = server.0.try_wait()? {
            bail!("the server exited before listening ({status})");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the server did not listen on port {port} within 60 s")
}
