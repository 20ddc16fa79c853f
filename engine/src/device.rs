//! Where generation runs: the first CUDA GPU when this build has candle's CUDA kernels
//! (`--features cuda`) and the machine a GPU they run on, else the CPU.
//!
//! A GPU is only taken once a quantized product has run on it and come back right: a driver
//! too old for the build's PTX, or a GPU whose kernels are missing, shows there, at start-up,
//! instead of as a failed first answer.

use candle_core::Device;

/// The device generation runs on, and the GPU's name when it is one.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub device: Device,
    /// The GPU's name as its driver gives it (`Tesla T4`, `NVIDIA H200`).
    pub gpu: Option<String>,
    /// Why a build with CUDA runs on the CPU (no driver, no device, a failed check).
    pub cpu_because: Option<String>,
}

impl Chosen {
    pub fn cpu(because: Option<String>) -> Self {
        Self {
            device: Device::Cpu,
            gpu: None,
            cpu_because: because,
        }
    }
}

/// The GPU when there is one that works, else the CPU (saying why in a build with CUDA).
pub fn choose() -> Chosen {
    match cuda() {
        Ok(Some((device, name))) => Chosen {
            device,
            gpu: Some(name),
            cpu_because: None,
        },
        Ok(None) => Chosen::cpu(None),
        Err(reason) => Chosen::cpu(Some(reason)),
    }
}

/// GPU 0 with its name, `None` in a build without CUDA, or why it cannot be used.
#[cfg(feature = "cuda")]
pub fn cuda() -> Result<Option<(Device, String)>, String> {
    let device = Device::new_cuda(0)
        .map_err(|error| format!("no CUDA device found ({})", without_backtrace(error)))?;
    let name = device
        .as_cuda_device()
        .map_err(without_backtrace)
        .and_then(|gpu| {
            gpu.cuda_stream()
                .context()
                .name()
                .map_err(|error| error.to_string())
        })
        .map_err(|error| format!("the GPU does not say its name ({error})"))?;
    check(&device).map_err(|error| {
        format!(
            "{name} failed a quantized product ({})",
            without_backtrace(error)
        )
    })?;
    Ok(Some((device, name)))
}

/// candle's error without the backtrace it captures when `RUST_BACKTRACE` is set: these
/// reasons go into one log line and `/health`, where a backtrace says nothing to a team.
#[cfg(feature = "cuda")]
fn without_backtrace(error: candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        error => error.to_string(),
    }
}

#[cfg(not(feature = "cuda"))]
pub fn cuda() -> Result<Option<(Device, String)>, String> {
    Ok(None)
}

/// A Q8_0 matrix times a vector (the decode kernel) and times a matrix (the prompt's), on
/// `device`, compared with the CPU's result.
#[cfg(feature = "cuda")]
fn check(device: &Device) -> candle_core::Result<()> {
    use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
    use candle_core::{Module, Tensor};

    let (rows, columns) = (64, 256);
    let values: Vec<f32> = (0..rows * columns)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let weights = Tensor::from_vec(values, (rows, columns), &Device::Cpu)?;
    let quantized = QTensor::quantize(&weights, GgmlDType::Q8_0)?;
    let uploaded = QStorage::from_data(quantized.data()?, device, GgmlDType::Q8_0)?;
    let on_gpu = QMatMul::from_qtensor(QTensor::new(uploaded, (rows, columns))?)?;
    let on_cpu = QMatMul::from_qtensor(quantized)?;
    for batch in [1, 16] {
        let input = Tensor::ones((batch, columns), candle_core::DType::F32, &Device::Cpu)?;
        let expected: Vec<Vec<f32>> = on_cpu.forward(&input)?.to_vec2()?;
        let got: Vec<Vec<f32>> = on_gpu.forward(&input.to_device(device)?)?.to_vec2()?;
        let worst = expected
            .iter()
            .flatten()
            .zip(got.iter().flatten())
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0f32, f32::max);
        if got.iter().flatten().any(|value| !value.is_finite()) || worst >= 0.05 {
            candle_core::bail!("{batch} row(s): off by {worst} of the CPU's result");
        }
    }
    Ok(())
}
