//! `cargo xtask dist`: the release layout a Docker image holds, built by the same commands the
//! Dockerfiles run, and the smoke test `cargo xtask test` runs on it so that CI catches what
//! would break the image's layout.
//!
//! ```text
//! OUT/vitrina        the server (release; the smoke test's is the tests' debug build)
//! OUT/site/          hydration and worker bundles, styles
//! OUT/space.toml     the team's file, with README.md and the files it names ([cards],
//!                    [dataset]) at the same relative paths
//! OUT/model-cache/   models, when prefetched
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

use crate::e2e::{RunningServer, free_port, wait_until_healthy, wait_until_listening};
use crate::process::{cargo, run};
use crate::toolchain::{self, Needs};

/// Which build of the server goes into the layout.
#[derive(Clone, Copy)]
pub enum Server {
    /// The image's: optimised, with CUDA when asked.
    Release { cuda: bool },
    /// The one `cargo xtask test` has already built for the end-to-end tests. The smoke test
    /// checks the layout (files, paths, site, model cache), which does not depend on the
    /// optimisation level; compiling the release build there took 460 s of a 44-minute CI run.
    TestsDebug,
}

pub fn build(out: &Path, prefetch: bool, server_build: Server) -> Result<PathBuf> {
    let tools = toolchain::ensure(Needs::to_serve())?;
    crate::site::build(&tools)?;
    let mut server = cargo();
    server.args(["build", "-p", "server", "--bin", crate::SERVER_BINARY]);
    let profile_dir = match server_build {
        Server::Release { cuda } => {
            server.arg("--release");
            if cuda {
                server.args(["--features", "cuda"]);
                crate::cuda::ensure()?.configure(&mut server);
            }
            "target/release"
        }
        Server::TestsDebug => "target/debug",
    };
    crate::step("server", || run(&mut server))?;

    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot empty {}", out.display()))?;
    }
    std::fs::create_dir_all(out.join("model-cache"))?;
    std::fs::copy(
        Path::new(profile_dir).join(crate::SERVER_BINARY),
        out.join(crate::SERVER_BINARY),
    )?;
    crate::site::copy_dir(Path::new(crate::site::SITE_ROOT), &out.join("site"))?;
    std::fs::copy("space.toml", out.join("space.toml"))?;
    for file in std::iter::once(PathBuf::from("README.md")).chain(files_named_in_space()?) {
        let destination = out.join(&file);
        if let Some(folder) = destination.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::copy(&file, &destination).with_context(|| {
            format!(
                "space.toml names {}, which cannot be copied",
                file.display()
            )
        })?;
    }
    if prefetch {
        crate::step("models into model-cache/", || {
            run(Command::new(Path::new(".").join(crate::SERVER_BINARY))
                .current_dir(out)
                .args(["--config", "space.toml", "--prefetch"])
                .env("VITRINA_MODEL_CACHE", "model-cache"))
        })?;
    }
    println!("xtask: the image's layout is in {}", out.display());
    Ok(out.to_owned())
}

/// The team's files that space.toml points to: model and dataset cards, the corpus.
fn files_named_in_space() -> Result<Vec<PathBuf>> {
    let space: toml::Table = std::fs::read_to_string("space.toml")?
        .parse()
        .context("space.toml does not parse")?;
    let named = [
        ("cards", "model"),
        ("cards", "dataset"),
        ("dataset", "file"),
    ]
    .into_iter()
    .filter_map(|(table, key)| space.get(table)?.get(key)?.as_str().map(PathBuf::from));
    let relative: Vec<PathBuf> = named.collect();
    for path in &relative {
        ensure!(
            path.is_relative() && !path.starts_with(".."),
            "space.toml names {}: use a path inside the repository",
            path.display()
        );
    }
    Ok(relative)
}

/// Builds `target/dist`, puts SmolLM2 in its model cache (from the tests' cache, as a build
/// would have downloaded it), starts the binary from there as the image does, and checks that
/// it serves the page and answers a chat.
pub fn smoke_test(tests_model_cache: &std::ffi::OsStr) -> Result<()> {
    let out = build(Path::new("target/dist"), false, Server::TestsDebug)?;
    let file = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let cached = Path::new(tests_model_cache).join(file);
    if cached.is_file() {
        std::fs::copy(&cached, out.join("model-cache").join(file))?;
    }
    run(Command::new(Path::new(".").join(crate::SERVER_BINARY))
        .current_dir(&out)
        .args([
            "--config",
            "space.toml",
            "--model",
            "smollm2-135m",
            "--prefetch",
        ])
        .env("VITRINA_MODEL_CACHE", "model-cache"))?;

    let port = free_port()?;
    let child = Command::new(Path::new(".").join(crate::SERVER_BINARY))
        .current_dir(&out)
        .args([
            "--config",
            "space.toml",
            "--site-root",
            "site",
            "--model",
            "smollm2-135m",
            "--port",
            &port.to_string(),
        ])
        .env("VITRINA_MODEL_CACHE", "model-cache")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the server in the release layout")?;
    let mut server = RunningServer(child);
    wait_until_listening(&mut server, port)?;
    wait_until_healthy(&mut server, &format!("http://127.0.0.1:{port}"))?;

    let page = request(port, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    ensure!(
        status(&page) == Some("200") && page.contains("<h1>"),
        "the page did not render:\n{}",
        head(&page)
    );
    let wasm = request(
        port,
        "HEAD /pkg/vitrina_worker_bg.wasm HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    )?;
    ensure!(
        status(&wasm) == Some("200"),
        "the worker bundle is not served:\n{}",
        head(&wasm)
    );
    let body = r#"{"messages":[{"role":"user","content":"¿Cuál es la capital de Francia?"}],"temperature":0,"max_tokens":8}"#;
    let chat = request(
        port,
        &format!(
            "POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )?;
    ensure!(
        status(&chat) == Some("200")
            && chat.contains(r#""content":""#)
            && chat.contains("completion_tokens"),
        "no answer:\n{}",
        head(&chat)
    );
    println!(
        "xtask: the release layout serves the page and answers: {}",
        chat.lines().last().unwrap_or_default()
    );
    Ok(())
}

fn request(port: u16, text: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(text.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The status code of a raw HTTP response (the server answers HTTP/1.0 requests in kind).
fn status(response: &str) -> Option<&str> {
    response.split_whitespace().nth(1)
}

fn head(text: &str) -> String {
    text.chars().take(600).collect()
}
