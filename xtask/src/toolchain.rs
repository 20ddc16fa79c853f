//! Finds, or installs, everything Vitrina's build and tests need beyond the base Rust
//! toolchain. Each check is cheap; each install runs only when its check fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{cargo, output, run};

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// npm's binaryen: Debian's wasm-opt (v108) corrupts wasm-bindgen's externref table.
const BINARYEN_VERSION: &str = "132.0.0";
/// The toolchain name under which Debian's compiler is linked when rustup cannot download std.
const DEBIAN_TOOLCHAIN: &str = "debweb";
const RUSTUP_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy)]
pub struct Needs {
    browser_tests: bool,
}

impl Needs {
    pub fn to_serve() -> Self {
        Self {
            browser_tests: false,
        }
    }

    pub fn everything() -> Self {
        Self {
            browser_tests: true,
        }
    }
}

/// How wasm32 code gets compiled on this machine.
enum WasmRoute {
    /// rustup's prebuilt std for the target.
    Rustup,
    /// Debian's rustc with std rebuilt from source (`-Zbuild-std`), for machines where rustup
    /// cannot download.
    DebianBuildStd,
}

pub struct Tools {
    wasm_route: WasmRoute,
    pub wasm_bindgen: PathBuf,
    pub wasm_opt: PathBuf,
    pub chromium: Option<PathBuf>,
    /// The Python of a virtual environment with tests/api/requirements.txt installed.
    pub test_python: Option<PathBuf>,
}

/// Whether a browser bundle's memory is shared between threads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// One thread: what every browser runs.
    Private,
    /// Web Workers sharing the module's memory (the browser model's threads, on cross-origin
    /// isolated pages): atomics, and std rebuilt with them.
    Shared,
}

/// What a browser bundle's code does when it panics.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Panics {
    /// Formats the message and aborts: the page's bundles, whose panic hook prints it to the
    /// console.
    Reported,
    /// Aborts at once, with std rebuilt so that it formats nothing either: the workers. Nothing
    /// reads a worker's panic message (it sets no hook; std's stderr goes nowhere on wasm32),
    /// and the message formatting with every `file:line` was 95 KB of its 1.29 MB gzipped.
    Silent,
}

/// Added to `.cargo/config.toml`'s wasm32 flags for [`Panics::Silent`].
const SILENT_PANICS_RUSTFLAGS: &str = r#"target.wasm32-unknown-unknown.rustflags=["-Z", "unstable-options", "-C", "panic=immediate-abort"]"#;

/// Added to `.cargo/config.toml`'s wasm32 flags (arrays from `--config` are appended) for the
/// shared-memory build: atomics, and the linker told to share (and import) the memory and
/// export the thread-local storage symbols wasm-bindgen sets up for each thread, as
/// wasm-bindgen's parallel example builds it (rustc adds none of these by itself). 4 GiB: the
/// browser model and its file are in memory at once, and shared memory cannot grow past the
/// maximum it declares.
const SHARED_MEMORY_RUSTFLAGS: &str = r#"target.wasm32-unknown-unknown.rustflags=["-C", "target-feature=+atomics,+bulk-memory,+mutable-globals", "-C", "link-arg=--shared-memory", "-C", "link-arg=--import-memory", "-C", "link-arg=--max-memory=4294967296", "-C", "link-arg=--export=__wasm_init_tls", "-C", "link-arg=--export=__tls_size", "-C", "link-arg=--export=__tls_align", "-C", "link-arg=--export=__tls_base"]"#;

impl Tools {
    /// `cargo <subcommand>` set up for a browser bundle: wasm32, with the given profile
    /// (`wasm-release` for the page, `wasm-worker` for inference), in `target_dir`.
    pub fn wasm_cargo(
        &self,
        subcommand: &str,
        profile: &str,
        memory: Memory,
        panics: Panics,
        target_dir: &str,
    ) -> Command {
        let common = [
            subcommand,
            "--target",
            WASM_TARGET,
            "--profile",
            profile,
            "--target-dir",
            target_dir,
        ];
        let mut command = match self.wasm_route {
            WasmRoute::Rustup => {
                let mut command = cargo();
                command.args(common);
                if memory == Memory::Shared || panics == Panics::Silent {
                    // Stable's std is built without atomics, and formats its panics; rebuilt
                    // from rust-src, as wasm-bindgen-rayon documents, with the stable
                    // compiler's own flag.
                    command.arg("-Zbuild-std=std,panic_abort");
                    command.env("RUSTC_BOOTSTRAP", "1");
                }
                command
            }
            WasmRoute::DebianBuildStd => {
                let mut command = Command::new("rustup");
                command
                    .args(["run", DEBIAN_TOOLCHAIN, "cargo"])
                    .args(common);
                command.arg("-Zbuild-std=std,panic_abort");
                command.env("RUSTC_BOOTSTRAP", "1");
                command.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld-19");
                command.env_remove("RUSTUP_TOOLCHAIN").env_remove("RUSTC");
                command
            }
        };
        if memory == Memory::Shared {
            command.args(["--config", SHARED_MEMORY_RUSTFLAGS]);
        }
        if panics == Panics::Silent {
            command.args(["--config", SILENT_PANICS_RUSTFLAGS]);
        }
        command
    }
}

pub fn ensure(needs: Needs) -> Result<Tools> {
    crate::step("toolchain check", || {
        let wasm_route = ensure_wasm_target()?;
        if let WasmRoute::Rustup = wasm_route {
            ensure_rust_src()?;
        }
        let wasm_bindgen = ensure_wasm_bindgen()?;
        let wasm_opt = ensure_wasm_opt()?;
        let (chromium, test_python) = if needs.browser_tests {
            let chromium = ensure_chromium()?;
            ensure_e2e_packages()?;
            (Some(chromium), Some(ensure_test_python()?))
        } else {
            (None, None)
        };
        Ok(Tools {
            wasm_route,
            wasm_bindgen,
            wasm_opt,
            chromium,
            test_python,
        })
    })
}

fn ensure_wasm_target() -> Result<WasmRoute> {
    if rustup_has_wasm_std() {
        return Ok(WasmRoute::Rustup);
    }
    // A machine that already took the fallback once goes straight to it.
    if debian_route_ready() {
        return Ok(WasmRoute::DebianBuildStd);
    }
    println!("xtask: installing the {WASM_TARGET} target with rustup (timeout {RUSTUP_TIMEOUT:?})");
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    match run_with_timeout(&mut add, RUSTUP_TIMEOUT) {
        Ok(()) if rustup_has_wasm_std() => return Ok(WasmRoute::Rustup),
        Ok(()) => println!("xtask: rustup finished but the {WASM_TARGET} std is still missing"),
        Err(error) => println!("xtask: rustup could not add {WASM_TARGET}: {error:#}"),
    }
    println!(
        "xtask: falling back to Debian's compiler and building std for {WASM_TARGET} from source"
    );
    if !debian_packages_present() {
        apt_install(&["rustc-web", "cargo-web", "rust-web-src", "lld-19"])?;
    }
    if !debian_toolchain_linked() {
        run(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]))?;
    }
    Ok(WasmRoute::DebianBuildStd)
}

/// std's source, which the shared-memory bundle rebuilds (Debian's route has it already).
fn ensure_rust_src() -> Result<()> {
    let has_source =
        output(Command::new("rustc").args(["--print", "sysroot"])).is_some_and(|sysroot| {
            Path::new(sysroot.trim())
                .join("lib/rustlib/src/rust/library/std")
                .is_dir()
        });
    if has_source {
        return Ok(());
    }
    println!("xtask: installing rust-src with rustup (timeout {RUSTUP_TIMEOUT:?})");
    run_with_timeout(
        Command::new("rustup").args(["component", "add", "rust-src"]),
        RUSTUP_TIMEOUT,
    )
}

fn debian_route_ready() -> bool {
    debian_packages_present() && debian_toolchain_linked()
}

fn debian_packages_present() -> bool {
    Path::new("/usr/lib/rustlib/src/rust/library").is_dir()
        && output(Command::new("wasm-ld-19").arg("--version")).is_some()
}

fn debian_toolchain_linked() -> bool {
    output(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|list| list.lines().any(|line| line.starts_with(DEBIAN_TOOLCHAIN)))
}

fn rustup_has_wasm_std() -> bool {
    output(Command::new("rustc").args(["--print", "target-libdir", "--target", WASM_TARGET]))
        .map(|dir| PathBuf::from(dir.trim()))
        .is_some_and(|dir| {
            dir.read_dir()
                .is_ok_and(|mut entries| entries.next().is_some())
        })
}

/// wasm-bindgen's CLI must be exactly the version of the `wasm-bindgen` crate in Cargo.lock,
/// or the generated JS does not match the wasm.
fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let wanted = locked_version("wasm-bindgen")?;
    let installed = output(Command::new("wasm-bindgen").arg("--version"));
    if installed.as_deref().map(str::trim) == Some(format!("wasm-bindgen {wanted}").as_str()) {
        return Ok(PathBuf::from("wasm-bindgen"));
    }
    println!(
        "xtask: installing wasm-bindgen-cli {wanted} (found {}); this compiles for several minutes, once",
        installed.as_deref().map_or("none", str::trim)
    );
    // Without --locked: its own lockfile pins a crate version the registry no longer has.
    run(cargo().args(["install", "wasm-bindgen-cli", "--version", &wanted]))?;
    Ok(PathBuf::from("wasm-bindgen"))
}

/// The version of `package` that Cargo.lock pins.
pub fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string("Cargo.lock").context("cannot read Cargo.lock")?;
    let header = format!("name = \"{package}\"\n");
    let after = lock
        .split("[[package]]\n")
        .find_map(|entry| entry.strip_prefix(&header));
    after
        .and_then(|rest| {
            rest.lines()
                .next()?
                .strip_prefix("version = \"")?
                .strip_suffix('"')
        })
        .map(str::to_owned)
        .with_context(|| format!("Cargo.lock has no `{package}` package"))
}

fn ensure_wasm_opt() -> Result<PathBuf> {
    let prefix = cache_dir().join(format!("binaryen-{BINARYEN_VERSION}"));
    let wasm_opt = prefix.join("node_modules/.bin/wasm-opt");
    if output(Command::new(&wasm_opt).arg("--version")).is_some() {
        return Ok(wasm_opt);
    }
    ensure_npm()?;
    println!(
        "xtask: installing wasm-opt (npm binaryen {BINARYEN_VERSION}) into {}",
        prefix.display()
    );
    std::fs::create_dir_all(&prefix)?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(format!("binaryen@{BINARYEN_VERSION}")))?;
    if output(Command::new(&wasm_opt).arg("--version")).is_none() {
        bail!(
            "{} does not run after installing binaryen",
            wasm_opt.display()
        );
    }
    Ok(wasm_opt)
}

fn ensure_chromium() -> Result<PathBuf> {
    let installed = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    if let Some(path) = installed {
        return Ok(path);
    }
    apt_install(&["chromium"])?;
    Ok(PathBuf::from("/usr/bin/chromium"))
}

/// The end-to-end tests' own npm packages (playwright-core, which drives the system Chromium;
/// axe-core, the accessibility checks).
fn ensure_e2e_packages() -> Result<()> {
    let installed = ["playwright-core", "axe-core"].iter().all(|package| {
        Path::new(&format!("tests/e2e/node_modules/{package}/package.json")).exists()
    });
    if installed {
        return Ok(());
    }
    ensure_npm()?;
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix", "tests/e2e"]))
}

/// A virtual environment in the cache with the API tests' pinned packages; rebuilt when
/// tests/api/requirements.txt changes.
fn ensure_test_python() -> Result<PathBuf> {
    let requirements = std::fs::read_to_string("tests/api/requirements.txt")
        .context("cannot read tests/api/requirements.txt")?;
    let venv = cache_dir().join("python-tests");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.txt");
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == requirements)
        && python.exists()
    {
        return Ok(python);
    }
    println!(
        "xtask: installing the API tests' Python packages into {}",
        venv.display()
    );
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        "tests/api/requirements.txt",
    ]))?;
    std::fs::write(&stamp, requirements)?;
    Ok(python)
}

fn ensure_npm() -> Result<()> {
    if output(Command::new("npm").arg("--version")).is_some() {
        return Ok(());
    }
    apt_install(&["nodejs", "npm"])
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let is_root = output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0");
    if !is_root {
        bail!(
            "missing system packages; install them with: sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    let install = || {
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    if install().is_ok() {
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    install()
}

/// Tools installed outside the clone, so a fresh clone reuses them.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VITRINA_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("target"));
    base.join("vitrina")
}

fn run_with_timeout(command: &mut Command, timeout: Duration) -> Result<()> {
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("exited with {status}");
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no answer after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_locked_wasm_bindgen_version() {
        std::env::set_current_dir(crate::workspace_root()).unwrap();
        let version = locked_version("wasm-bindgen").unwrap();
        assert!(version.starts_with("0.2."), "{version}");
        assert!(locked_version("no-such-package").is_err());
    }
}
