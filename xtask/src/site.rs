//! The site folder the server serves: the hydration bundle (`pkg/`) and `public/`'s files.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::run;
use crate::toolchain::{Memory, SHARED_TARGET_DIR, Tools, WASM_TARGET};

pub const SITE_ROOT: &str = "target/site";
/// Must equal the server's `output_name`: Leptos asks for `/pkg/vitrina.js` and `vitrina_bg.wasm`.
const OUTPUT_NAME: &str = "vitrina";

/// The browser model's bundles, loaded by `public/worker.js`: one thread, and threads sharing
/// memory (loaded on cross-origin isolated pages).
const WORKER_OUTPUT_NAME: &str = "vitrina_worker";
const THREADED_WORKER_OUTPUT_NAME: &str = "vitrina_worker_threads";

pub fn build(tools: &Tools) -> Result<()> {
    crate::step("hydrate bundle (wasm)", || {
        bundle(
            tools,
            Bundle {
                package: "app",
                features: &["--no-default-features", "--features", "hydrate"],
                profile: "wasm-release",
                output_name: OUTPUT_NAME,
                wasm_opt: Some("-Oz"),
                name: "hydrate",
                memory: Memory::Private,
            },
        )
    })?;
    // Built for speed: it runs the model. No wasm-opt: on this 6 MB bundle `-O2` takes 80 s
    // and `-Os` 290 s for 5% less gzip (measured 2026-12-06), after LLVM's own -O3 with LTO.
    for (step, output_name, name, memory) in [
        (
            "browser worker bundle (wasm: engine + worker)",
            WORKER_OUTPUT_NAME,
            "worker",
            Memory::Private,
        ),
        (
            "browser worker bundle with threads (wasm: atomics)",
            THREADED_WORKER_OUTPUT_NAME,
            "worker-threads",
            Memory::Shared,
        ),
    ] {
        crate::step(step, || {
            bundle(
                tools,
                Bundle {
                    package: "worker",
                    features: &[],
                    profile: "wasm-worker",
                    output_name,
                    wasm_opt: None,
                    name,
                    memory,
                },
            )
        })?;
    }
    crate::step("static files", || {
        copy_dir(Path::new("public"), Path::new(SITE_ROOT))
    })
}

struct Bundle<'a> {
    package: &'a str,
    features: &'a [&'a str],
    profile: &'a str,
    output_name: &'a str,
    /// wasm-opt's level, if it runs.
    wasm_opt: Option<&'a str>,
    /// For the size report.
    name: &'a str,
    memory: Memory,
}

fn bundle(tools: &Tools, bundle: Bundle) -> Result<()> {
    run(tools
        .wasm_cargo("rustc", bundle.profile, bundle.memory)
        .args(["-p", bundle.package, "--lib", "--crate-type", "cdylib"])
        .args(bundle.features))?;
    let pkg = Path::new(SITE_ROOT).join("pkg");
    let target_dir = match bundle.memory {
        Memory::Private => "target",
        Memory::Shared => SHARED_TARGET_DIR,
    };
    let compiled = Path::new(target_dir)
        .join(WASM_TARGET)
        .join(bundle.profile)
        .join(format!("{}.wasm", bundle.package));
    run(Command::new(&tools.wasm_bindgen)
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            bundle.output_name,
            "--out-dir",
        ])
        .arg(&pkg)
        .arg(&compiled))?;
    let wasm = pkg.join(format!("{}_bg.wasm", bundle.output_name));
    if let Some(level) = bundle.wasm_opt {
        optimize(tools, &wasm, level)?;
    }
    report_size(&wasm, bundle.name)
}

fn optimize(tools: &Tools, wasm: &Path, level: &str) -> Result<()> {
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
    run(Command::new(&tools.wasm_opt)
        .arg(level)
        .args(features)
        .arg(wasm)
        .arg("-o")
        .arg(wasm))
}

fn report_size(wasm: &Path, bundle: &str) -> Result<()> {
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bytes)?;
    let gzipped = encoder.finish()?.len();
    println!(
        "xtask: {} is {} KiB ({} KiB gzip)",
        wasm.display(),
        bytes.len() / 1024,
        gzipped / 1024
    );
    println!(
        r#"{{"metric":"wasm_size","bundle":"{bundle}","raw_bytes":{},"gzip_bytes":{gzipped}}}"#,
        bytes.len()
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
