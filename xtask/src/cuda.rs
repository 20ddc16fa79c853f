//! The CUDA build without a GPU and without a system CUDA: NVIDIA's compiler and libraries
//! from pinned PyPI wheels in the tools cache, the environment candle's build reads, a link
//! stub for the driver library (no wheel has it), and the device check a GPU machine runs.
//!
//! CUDA 13.0 on purpose: the lent GPU machine's driver (580) runs CUDA 13.0, and PTX from a
//! newer nvcc can be refused by an older driver; CUDA 13 still targets compute 7.5 (the T4).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::process::{cargo, output, run};
use crate::toolchain::{cache_dir, locked_version};

/// The T4's compute capability. Its PTX also runs on every later GPU through the driver's JIT,
/// so this one build serves a T4 Space and the H200 the device check runs on.
pub const COMPUTE_CAP: &str = "75";
/// The CUDA release of the wheels below (cudarc reads it from `nvcc --version`).
pub const CUDA_VERSION: &str = "13.0";

/// What candle's CUDA build compiles and links against. cublas is a 423 MB download, hence the
/// cache outside the clone.
const WHEELS: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-curand==10.4.0.35",
    "nvidia-cublas==13.1.1.3",
];

/// The libraries candle's objects link by their unversioned names, and the file each wheel
/// ships. libcuda, the driver, is the stub's.
const LINKED: &[(&str, &str)] = &[
    ("libcudart.so", "libcudart.so.13"),
    ("libnvrtc.so", "libnvrtc.so.13"),
    ("libcurand.so", "libcurand.so.10"),
    ("libcublas.so", "libcublas.so.13"),
    ("libcublasLt.so", "libcublasLt.so.13"),
];

/// The CUDA error every stub function returns: a program that runs against the stub instead of
/// a driver hears "no CUDA-capable device", the answer candle turns into a CPU fallback.
const CUDA_ERROR_NO_DEVICE: u32 = 100;

pub struct Toolkit {
    /// The wheels' CUDA root (`bin/nvcc`, `include/`, `lib/`, `nvvm/`).
    root: PathBuf,
}

impl Toolkit {
    /// The environment candle-kernels (cudaforge) and cudarc read at build time.
    pub fn configure(&self, command: &mut Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.root.join("bin")];
        paths.extend(std::env::split_paths(&path));
        let include = self.root.join("include");
        command
            .env(
                "PATH",
                std::env::join_paths(paths).expect("no ':' in the cache's path"),
            )
            .env("CUDA_ROOT", &self.root)
            .env("CUDA_HOME", &self.root)
            .env("CUDA_COMPUTE_CAP", COMPUTE_CAP)
            // cudaforge compiles candle's kernels on half the cores unless told: on CI's two,
            // one nvcc at a time, 675 s of the CUDA step; on both, 336 s (2026-12-07).
            .env("CUDAFORGE_THREADS", crate::cores().to_string())
            // The wheels split the headers (cccl apart); and PTX goes into the static kernels
            // too (cudaforge asks for sm_75 machine code only), so they also run past Turing.
            .env(
                "NVCC_APPEND_FLAGS",
                format!(
                    "-I{} -I{} -gencode=arch=compute_{COMPUTE_CAP},code=compute_{COMPUTE_CAP}",
                    include.display(),
                    include.join("cccl").display()
                ),
            );
    }

    /// The driver link stub, which also stands in for a missing driver at run time.
    pub fn stub_dir(&self) -> PathBuf {
        self.root.join("lib/stubs")
    }
}

/// Installs the wheels (once), the unversioned library links and the driver stub.
pub fn ensure() -> Result<Toolkit> {
    crate::step("CUDA toolkit (PyPI wheels)", || {
        let prefix = cache_dir().join(format!("cuda-{CUDA_VERSION}"));
        let root = prefix.join("nvidia/cu13");
        let stamp = prefix.join("wheels.txt");
        let wanted = WHEELS.join("\n");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            println!(
                "xtask: installing CUDA {CUDA_VERSION}'s compiler and libraries into {} (about 1 GB, once)",
                prefix.display()
            );
            if prefix.exists() {
                std::fs::remove_dir_all(&prefix)?;
            }
            run(Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--target",
                ])
                .arg(&prefix)
                .args(WHEELS))?;
            std::fs::write(&stamp, &wanted)?;
        }
        let lib = root.join("lib");
        for (link, file) in LINKED {
            ensure!(
                lib.join(file).exists(),
                "{} is missing from the CUDA wheels",
                lib.join(file).display()
            );
            let link = lib.join(link);
            if std::fs::read_link(&link).is_err() {
                std::os::unix::fs::symlink(file, &link)?;
            }
        }
        let toolkit = Toolkit { root };
        write_driver_stub(&toolkit.stub_dir())?;
        let version = output(Command::new(toolkit.root.join("bin/nvcc")).arg("--version"))
            .context("the wheels' nvcc does not run")?;
        ensure!(
            version.contains(&format!("release {CUDA_VERSION}")),
            "the wheels' nvcc is not CUDA {CUDA_VERSION}: {version}"
        );
        Ok(toolkit)
    })
}

/// `libcuda.so` for the linker, with the soname of the real driver (`libcuda.so.1`), defining
/// every `cu*` function cudarc declares, each returning [`CUDA_ERROR_NO_DEVICE`]: what NVIDIA's
/// toolkit ships as `stubs/libcuda.so`. Rebuilt when cudarc's version changes.
fn write_driver_stub(dir: &Path) -> Result<()> {
    let cudarc = locked_version("cudarc")?;
    let library = dir.join("libcuda.so");
    let stamp = dir.join("cudarc-version");
    if library.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&cudarc) {
        return Ok(());
    }
    run(cargo().args(["fetch", "--quiet"]))?;
    let bindings = cargo_registry_sources()?
        .into_iter()
        .map(|registry| registry.join(format!("cudarc-{cudarc}/src/driver/sys/mod.rs")))
        .find(|path| path.exists())
        .with_context(|| format!("cudarc {cudarc}'s sources are not in cargo's registry"))?;
    let functions = driver_functions(&std::fs::read_to_string(&bindings)?);
    ensure!(
        functions.iter().any(|name| name == "cuInit"),
        "no driver functions found in {}",
        bindings.display()
    );
    std::fs::create_dir_all(dir)?;
    let source: String = functions
        .iter()
        .map(|name| format!("int {name}(void) {{ return {CUDA_ERROR_NO_DEVICE}; }}\n"))
        .collect();
    let c_file = dir.join("libcuda-stub.c");
    std::fs::write(&c_file, source)?;
    run(Command::new("cc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(&library)
        .arg(&c_file))?;
    let runtime_name = dir.join("libcuda.so.1");
    if std::fs::read_link(&runtime_name).is_err() {
        std::os::unix::fs::symlink("libcuda.so", &runtime_name)?;
    }
    std::fs::write(&stamp, &cudarc)?;
    println!(
        "xtask: wrote the driver link stub {} ({} functions)",
        library.display(),
        functions.len()
    );
    Ok(())
}

/// The names of the `extern "C"` driver functions in cudarc's bindings, each once.
fn driver_functions(bindings: &str) -> Vec<String> {
    let mut names: Vec<String> = bindings
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("fn cu"))
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest[name.len()..]
                .starts_with('(')
                .then(|| format!("cu{name}"))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn cargo_registry_sources() -> Result<Vec<PathBuf>> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let sources = home.join("registry/src");
    Ok(std::fs::read_dir(&sources)
        .with_context(|| format!("cannot read {}", sources.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect())
}

/// The device check, compiled and linked for compute 7.5: the engine, candle and its kernels
/// with CUDA, as the T4 image's server has them. The server itself is not built here: it has
/// no code of its own behind `cuda`, and compiling it again took a minute of CI after nvcc's
/// (the image's build compiles it, `cargo xtask dist --cuda`). It is named on the command line
/// all the same, because cargo resolves features for the packages named: for the engine alone
/// (without the server's leptos asking more of serde, syn, rand…) some 90 crates compiled a
/// second time. In the workspace's own target directory, where cargo keeps a crate built with
/// other features beside the one built without: on a fresh clone, as in CI, only what CUDA
/// changes is compiled again (24 units in cargo's unit graph, 2026-12-07). The feature asked
/// for is the server's, which the image's build asks for: the check (`required-features`)
/// builds only if it turns on the engine's.
pub fn build(toolkit: &Toolkit) -> Result<()> {
    crate::step("device check with CUDA (compute 7.5)", || {
        let mut check = cargo();
        check.args([
            "build",
            "-p",
            "server",
            "-p",
            "engine",
            "--bin",
            GPU_CHECK,
            "--features",
            "server/cuda",
        ]);
        toolkit.configure(&mut check);
        run(&mut check)
    })
}

/// The engine binary that checks a GPU (engine/src/bin/gpu_check.rs).
const GPU_CHECK: &str = "gpu_check";
/// What a GPU machine may be sent: the device tool carries 64 MiB, and teams download it.
const PREPARED_LIMIT_BYTES: u64 = 60 << 20;

/// `cargo xtask gpu-check --prepare DIR`: the check's binary, compressed, and `run.sh`.
pub fn prepare(toolkit: &Toolkit, out: &Path) -> Result<()> {
    build(toolkit)?;
    std::fs::create_dir_all(out)?;
    let binary = Path::new("target/debug").join(GPU_CHECK);
    let stripped = out.join(GPU_CHECK);
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&binary))?;
    let compressed = out.join(format!("{GPU_CHECK}.gz"));
    {
        let mut input = std::fs::File::open(&stripped)?;
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&compressed)?,
            flate2::Compression::best(),
        );
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?;
    }
    std::fs::remove_file(&stripped)?;
    let script = out.join("run.sh");
    std::fs::write(&script, RUN_SH)?;
    set_executable(&script)?;
    let size: u64 = std::fs::read_dir(out)?
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    ensure!(
        size <= PREPARED_LIMIT_BYTES,
        "{} holds {} MiB, over the {} MiB a GPU machine is sent",
        out.display(),
        size >> 20,
        PREPARED_LIMIT_BYTES >> 20
    );
    println!(
        "xtask: {} is ready ({:.1} MiB): run {}/run.sh on a machine with an NVIDIA GPU",
        out.display(),
        size as f64 / (1 << 20) as f64,
        out.display()
    );
    Ok(())
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)?;
    Ok(())
}

/// Runs the prepared check here, where no GPU is: it must end with a clear "no CUDA" and a
/// non-zero status, never a loader error or a panic: through `run.sh` (which finds no driver),
/// and the binary itself against the driver stub (whose CUDA finds no device).
pub fn check_refuses_without_gpu(toolkit: &Toolkit, prepared: &Path) -> Result<()> {
    let work = prepared.join("work");
    let through_script = Command::new(prepared.join("run.sh"))
        .env("GPU_CHECK_WORK", &work)
        .output()
        .context("cannot start run.sh")?;
    if through_script.status.success() {
        println!(
            "xtask: this machine has a GPU; the device check ran:\n{}",
            said(&through_script)
        );
        return Ok(());
    }
    refused_clearly("run.sh", &through_script, 2)?;
    let lib = toolkit.root.join("lib");
    let against_stub = Command::new(work.join(GPU_CHECK))
        .arg("--dir")
        .arg(&work)
        .env(
            "LD_LIBRARY_PATH",
            std::env::join_paths([toolkit.stub_dir(), lib])?,
        )
        .output()
        .context("cannot start the device check's binary")?;
    refused_clearly("the binary against the driver stub", &against_stub, 2)
}

fn said(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout)
}

fn refused_clearly(what: &str, output: &std::process::Output, status: i32) -> Result<()> {
    let said = said(output);
    if output.status.code() != Some(status)
        || !said.contains("no CUDA")
        || said.contains("panicked")
    {
        bail!(
            "the device check ({what}), run without a GPU, did not say so clearly with status {status} ({}):\n{said}",
            output.status
        );
    }
    println!("xtask: without a GPU, {what} says: {}", said.trim());
    Ok(())
}

const RUN_SH: &str = include_str!("gpu_check_run.sh");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_driver_functions_from_cudarcs_bindings() {
        let bindings = "pub unsafe fn cuInit(Flags: c_uint) -> CUresult {\n    extern \"C\" {\n        fn cuInit(Flags: c_uint) -> CUresult;\n    }\n}\n        fn cuMemAlloc_v2(dptr: *mut CUdeviceptr) -> CUresult;\n        fn cuInit(Flags: c_uint) -> CUresult;\n";
        assert_eq!(driver_functions(bindings), ["cuInit", "cuMemAlloc_v2"]);
    }
}
