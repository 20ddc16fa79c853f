//! End-to-end tests: the real server binary on a free loopback port, driven by the tests in
//! `tests/e2e/` (node's test runner + playwright-core) through the system's headless Chromium.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{cargo, run};
use crate::toolchain::Tools;

/// Kills the server however the tests end.
struct RunningServer(Child);

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run_tests(tools: &Tools) -> Result<()> {
    run(cargo().args(["build", "-p", "server", "--bin", crate::SERVER_BINARY]))?;
    let port = free_port()?;
    let server = Command::new(Path::new("target/debug").join(crate::SERVER_BINARY))
        .args(["--config", "space.toml", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--site-root", crate::site::SITE_ROOT])
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the server for the end-to-end tests")?;
    let mut server = RunningServer(server);
    wait_until_listening(&mut server, port)?;

    let chromium = tools.chromium.as_ref().context("Chromium was not set up")?;
    let mut tests = Command::new("node");
    tests.args(["--test", "--test-reporter=spec", "tests/e2e/"]);
    tests.env("VITRINA_URL", format!("http://127.0.0.1:{port}"));
    tests.env("CHROMIUM_PATH", chromium);
    run(&mut tests)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn wait_until_listening(server: &mut RunningServer, port: u16) -> Result<()> {
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
