//! The site folder the server serves: the hydration bundle (`pkg/`) and `public/`'s files.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::run_logged;
use crate::toolchain::{Memory, Panics, Tools, WASM_TARGET};

pub const SITE_ROOT: &str = "target/site";

/// Every wasm bundle the site serves, in the order each lane builds them (see [`build`]), with
/// the most each may weigh gzipped (what a visitor downloads): `cargo xtask test` fails on a
/// bundle over it.
const BUNDLES: [Bundle; 5] = [
    Bundle {
        step: "hydrate bundle of the project page (wasm: its islands)",
        package: "app",
        features: &["--features", "hydrate"],
        profile: "wasm-release",
        output_name: wire::pages::HOME_BUNDLE,
        wasm_opt: Some("-Oz"),
        name: "hydrate",
        memory: Memory::Private,
        panics: Panics::Reported,
        target_dir: "target",
        // What every visit downloads first: the chat, the API examples, the language switch.
        // 299,544 before a reasoning model's folded thinking, 300,484 with it (2026-12-08).
        gzip_budget: 301_000,
    },
    Bundle {
        step: "hydrate bundle of every page (wasm: the judges' and permalinks' islands too)",
        // `app` with `hydrate-all-pages`, through a crate of its own (see its doc).
        package: "app-all-pages",
        features: &[],
        profile: "wasm-release",
        output_name: wire::pages::ALL_PAGES_BUNDLE,
        wasm_opt: Some("-Oz"),
        name: "hydrate-all-pages",
        memory: Memory::Private,
        panics: Panics::Reported,
        target_dir: "target",
        gzip_budget: 340_000,
    },
    // They run the model: the engine is compiled for speed and the rest for size (Cargo.toml's
    // `wasm-worker` profile), without function names or panic messages. No wasm-opt: after
    // that, `-Oz` made the gzipped worker 1% larger (measured 2026-12-06).
    Bundle {
        step: "browser worker bundle (wasm: engine + worker)",
        package: "worker",
        features: &[],
        profile: "wasm-worker",
        output_name: "vitrina_worker",
        wasm_opt: None,
        name: "worker",
        memory: Memory::Private,
        panics: Panics::Silent,
        target_dir: "target",
        gzip_budget: 1_200_000,
    },
    Bundle {
        step: "browser worker bundle with threads (wasm: atomics)",
        package: "worker",
        features: &[],
        profile: "wasm-worker",
        output_name: "vitrina_worker_threads",
        wasm_opt: None,
        name: "worker-threads",
        // Loaded by `public/worker.js` on cross-origin isolated pages.
        memory: Memory::Shared,
        panics: Panics::Silent,
        // Its own folder: std and every crate are built with atomics there, and the two
        // worker builds would otherwise undo each other.
        target_dir: "target/wasm-threads",
        gzip_budget: 1_200_000,
    },
    // The same for browsers with relaxed SIMD (others refuse the whole module): its byte dot
    // product for Q4_1 and Q5_0. `worker` with `relaxed-simd` through a crate of its own (see
    // its doc): only the engine and the worker compile again for it.
    Bundle {
        step: "browser worker bundle with threads and relaxed SIMD (wasm: atomics)",
        package: "worker-relaxed-simd",
        features: &[],
        profile: "wasm-worker",
        output_name: "vitrina_worker_threads_relaxed",
        wasm_opt: None,
        name: "worker-threads-relaxed",
        memory: Memory::Shared,
        panics: Panics::Silent,
        target_dir: "target/wasm-threads",
        gzip_budget: 1_200_000,
    },
];

/// Builds the bundles in lanes side by side, one lane per cargo build directory (target folder
/// and profile): bundles that share one reuse each other's crates and would wait for its lock.
/// Each build spends much of its time on one core (a crate everything waits for, then LTO): on
/// two cores the plain and threads workers took 404 s side by side against 483 s one after the
/// other (2026-12-07). Each lane's output goes to a log, printed whole when the lane ends.
pub fn build(tools: &Tools) -> Result<()> {
    let mut lanes: Vec<Vec<&Bundle>> = Vec::new();
    for bundle in &BUNDLES {
        match lanes.iter_mut().find(|lane| {
            lane[0].target_dir == bundle.target_dir && lane[0].profile == bundle.profile
        }) {
            Some(lane) => lane.push(bundle),
            None => lanes.push(vec![bundle]),
        }
    }
    std::fs::create_dir_all(LOGS)?;
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let running: Vec<_> = lanes
            .iter()
            .map(|lane| scope.spawn(|| build_lane(tools, lane)))
            .collect();
        running
            .into_iter()
            .map(|lane| {
                lane.join()
                    .unwrap_or_else(|_| anyhow::bail!("a bundle lane panicked"))
            })
            .collect()
    });
    results.into_iter().collect::<Result<()>>()?;
    crate::step("static files", || {
        copy_dir(Path::new("public"), Path::new(SITE_ROOT))
    })
}

/// Where each lane's output is kept (the last build's), by the lane's first bundle.
const LOGS: &str = "target/bundle-logs";

fn build_lane(tools: &Tools, lane: &[&Bundle]) -> Result<()> {
    let path = Path::new(LOGS).join(format!("{}.log", lane[0].name));
    let mut log = std::fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut result = Ok(());
    for bundle in lane {
        result = crate::step(bundle.step, || build_bundle(tools, bundle, &log));
        if result.is_err() {
            break;
        }
    }
    let mut said = String::new();
    log.rewind()?;
    log.read_to_string(&mut said)?;
    // One `println!`, which holds the terminal for the whole log.
    println!(
        "xtask: ┌ what built {}:\n{said}xtask: └ (kept in {})",
        names(lane),
        path.display()
    );
    result
}

fn names(lane: &[&Bundle]) -> String {
    lane.iter()
        .map(|bundle| bundle.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails when a built bundle weighs more, gzipped, than its budget.
pub fn check_budgets() -> Result<()> {
    let over: Vec<String> = BUNDLES
        .iter()
        .map(|bundle| Ok((bundle, gzip_size(&bundle.wasm())?)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|(bundle, gzipped)| *gzipped > bundle.gzip_budget)
        .map(|(bundle, gzipped)| {
            format!(
                "{} is {gzipped} bytes gzipped, over its budget of {} (xtask/src/site.rs)",
                bundle.wasm().display(),
                bundle.gzip_budget
            )
        })
        .collect();
    anyhow::ensure!(over.is_empty(), "{}", over.join("\n"));
    Ok(())
}

struct Bundle {
    step: &'static str,
    package: &'static str,
    features: &'static [&'static str],
    profile: &'static str,
    output_name: &'static str,
    /// wasm-opt's level, if it runs.
    wasm_opt: Option<&'static str>,
    /// For the size report.
    name: &'static str,
    memory: Memory,
    panics: Panics,
    target_dir: &'static str,
    gzip_budget: usize,
}

impl Bundle {
    fn wasm(&self) -> std::path::PathBuf {
        Path::new(SITE_ROOT)
            .join("pkg")
            .join(format!("{}_bg.wasm", self.output_name))
    }
}

fn build_bundle(tools: &Tools, bundle: &Bundle, log: &std::fs::File) -> Result<()> {
    run_logged(
        tools
            .wasm_cargo(
                "rustc",
                bundle.profile,
                bundle.memory,
                bundle.panics,
                bundle.target_dir,
            )
            .args(["-p", bundle.package, "--lib", "--crate-type", "cdylib"])
            .args(bundle.features),
        log,
    )?;
    let pkg = Path::new(SITE_ROOT).join("pkg");
    let compiled = Path::new(bundle.target_dir)
        .join(WASM_TARGET)
        .join(bundle.profile)
        .join(format!("{}.wasm", bundle.package.replace('-', "_")));
    let wasm = bundle.wasm();
    // wasm-opt alone takes 13 s a hydrate bundle, each time: once per unchanged module is enough.
    let stamp_file = Path::new("target/bundle-stamps").join(bundle.output_name);
    let stamp = made_from(&compiled)?;
    let script = pkg.join(format!("{}.js", bundle.output_name));
    if wasm.exists()
        && script.exists()
        && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp)
    {
        return report_size(&wasm, bundle.name);
    }
    run_logged(
        Command::new(&tools.wasm_bindgen)
            .args([
                "--target",
                "web",
                "--no-typescript",
                // Function names help a debugger, not a visitor: 165 KB of the worker, gzipped.
                "--remove-name-section",
                "--remove-producers-section",
                "--out-name",
                bundle.output_name,
                "--out-dir",
            ])
            .arg(&pkg)
            .arg(&compiled),
        log,
    )?;
    if let Some(level) = bundle.wasm_opt {
        optimize(tools, &wasm, level, log)?;
    }
    std::fs::create_dir_all("target/bundle-stamps")?;
    std::fs::write(&stamp_file, stamp)?;
    report_size(&wasm, bundle.name)
}

/// What a bundle's files are made from: the compiled module (its time and size) and the steps
/// that made them (this xtask's build, whose code holds their settings).
fn made_from(compiled: &Path) -> Result<String> {
    let module = std::fs::metadata(compiled)
        .with_context(|| format!("cargo wrote no {}", compiled.display()))?;
    let xtask = std::fs::metadata(std::env::current_exe()?)?;
    Ok(format!(
        "{:?} {} {:?}",
        module.modified()?,
        module.len(),
        xtask.modified()?
    ))
}

fn optimize(tools: &Tools, wasm: &Path, level: &str, log: &std::fs::File) -> Result<()> {
    // The features rustc's wasm32 target emits by default, plus simd128 (.cargo/config.toml).
    let features = [
        "--enable-bulk-memory",
        "--enable-nontrapping-float-to-int",
        "--enable-sign-ext",
        "--enable-mutable-globals",
        "--enable-reference-types",
        "--enable-multivalue",
        "--enable-simd",
    ];
    run_logged(
        Command::new(&tools.wasm_opt)
            .arg(level)
            .args(features)
            .arg(wasm)
            .arg("-o")
            .arg(wasm),
        log,
    )
}

fn gzip_size(wasm: &Path) -> Result<usize> {
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bytes)?;
    Ok(encoder.finish()?.len())
}

fn report_size(wasm: &Path, bundle: &str) -> Result<()> {
    let bytes = std::fs::metadata(wasm)
        .with_context(|| format!("cannot read {}", wasm.display()))?
        .len();
    let gzipped = gzip_size(wasm)?;
    println!(
        "xtask: {} is {} KiB ({} KiB gzip)",
        wasm.display(),
        bytes / 1024,
        gzipped / 1024
    );
    println!(
        r#"{{"metric":"wasm_size","bundle":"{bundle}","raw_bytes":{bytes},"gzip_bytes":{gzipped}}}"#
    );
    Ok(())
}

pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
