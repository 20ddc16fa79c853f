//! The site folder the server serves: the hydration bundle (`pkg/`) and `public/`'s files.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::run;
use crate::toolchain::{Tools, WASM_TARGET};

pub const SITE_ROOT: &str = "target/site";
/// Must equal the server's `output_name`: Leptos asks for `/pkg/vitrina.js` and `vitrina_bg.wasm`.
const OUTPUT_NAME: &str = "vitrina";

pub fn build(tools: &Tools) -> Result<()> {
    crate::step("hydrate bundle (wasm)", || {
        run(tools
            .wasm_cargo("rustc")
            .args(["-p", "app", "--lib", "--crate-type", "cdylib", "--no-default-features", "--features", "hydrate"]))?;
        let pkg = Path::new(SITE_ROOT).join("pkg");
        let compiled = Path::new("target").join(WASM_TARGET).join("wasm-release/app.wasm");
        run(Command::new(&tools.wasm_bindgen)
            .args(["--target", "web", "--no-typescript", "--out-name", OUTPUT_NAME, "--out-dir"])
            .arg(&pkg)
            .arg(&compiled))?;
        let wasm = pkg.join(format!("{OUTPUT_NAME}_bg.wasm"));
        optimize(tools, &wasm)?;
        report_size(&wasm)
    })?;
    crate::step("static files", || copy_dir(Path::new("public"), Path::new(SITE_ROOT)))
}

fn optimize(tools: &Tools, wasm: &Path) -> Result<()> {
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
    run(Command::new(&tools.wasm_opt).arg("-Oz").args(features).arg(wasm).arg("-o").arg(wasm))
}

fn report_size(wasm: &Path) -> Result<()> {
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bytes)?;
    let gzipped = encoder.finish()?.len();
    println!("xtask: {} is {} KiB ({} KiB gzip)", wasm.display(), bytes.len() / 1024, gzipped / 1024);
    println!(
        r#"{{"metric":"wasm_size","bundle":"hydrate","raw_bytes":{},"gzip_bytes":{gzipped}}}"#,
        bytes.len()
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
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
