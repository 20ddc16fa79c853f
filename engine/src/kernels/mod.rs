//! Matrix products for the quantisations of the models this project runs on the CPU: Q4_1
//! (SmolLM2-135M's file), Q5_0 (most of Qwen2.5-0.5B's "Q4_K_M" file: its 896-wide rows
//! cannot hold 256-value K-quant blocks, so llama.cpp stores them as Q5_0) and Q8_0 (output
//! matrices, and what the server rewrites Q4_1/Q5_0 as).
//!
//! candle takes a scalar loop for the first two and one weight row at a time for Q8_0. Here each
//! weight block meets the activations quantised to 8 bits, 32 at a time, with AVX2 where the CPU
//! has it; Q8_0 takes four rows per pass over the activations, so that four independent sums
//! hide each other's latency. The portable loop (the browser, old
//! CPUs) adds the very same integers in the very same order, lane by lane, so every machine
//! gets the same bits — the browser fallback promises the server's tokens. No fused
//! multiply-add for the same reason: WebAssembly has none.

//! One file per part: [`blocks`] (the formats and the row interleave), [`lanes`] (the
//! summation order all share), [`parallel`] (the thread pool's output), and one per back-end:
//! [`portable`], `avx2`, `simd128`.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor, bail};

/// Evaluates `$rows`, a call generic over the number of rows `N`, for the N rows that `$sums`
/// asks for, into `$sums`.
macro_rules! group {
    ($sums:expr, $rows:expr) => {
        match $sums.len() {
            4 => {
                const N: usize = 4;
                $sums.copy_from_slice(&$rows)
            }
            3 => {
                const N: usize = 3;
                $sums.copy_from_slice(&$rows)
            }
            2 => {
                const N: usize = 2;
                $sums.copy_from_slice(&$rows)
            }
            _ => {
                const N: usize = 1;
                $sums.copy_from_slice(&$rows)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod blocks;
pub mod exp;
pub mod k_quants;
pub mod lanes;
pub mod parallel;
mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
mod web_threads;

use blocks::{
    ActivationBlock, BLOCK, BlockQ4_1, BlockQ5_0, BlockQ8_0, ROW_GROUP, WeightBlock, interleave,
    quantize, row_blocks,
};
use k_quants::KQuant;
use k_quants::tiles::{ActivationSuperBlock, SUPER_BLOCK, TILE_ROWS, quantize_super};
use parallel::SharedOutput;

/// The 32-value block types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Q4_1,
    Q5_0,
    Q8_0,
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => size_of::<BlockQ4_1>(),
            Kind::Q5_0 => size_of::<BlockQ5_0>(),
            Kind::Q8_0 => size_of::<BlockQ8_0>(),
        }
    }
}

/// How a matrix's weights are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// 32-value blocks, interleaved by [`ROW_GROUP`] rows.
    Blocks(Kind),
    /// Q4_K or Q6_K, as [`k_quants`]' tiles.
    Tiles(KQuant),
}

/// A weight matrix (rows × columns, row-major, as in the GGUF) in Q4_1, Q5_0, Q8_0, Q4_K or
/// Q6_K.
pub struct QuantMatMul {
    format: Format,
    weights: Vec<u8>,
    rows: usize,
    columns: usize,
}

impl QuantMatMul {
    /// `None` for the other types (candle's kernels multiply them) and for rows that are not
    /// whole blocks.
    pub fn new(tensor: &QTensor) -> Result<Option<Self>> {
        let format = match tensor.dtype() {
            GgmlDType::Q4_1 => Format::Blocks(Kind::Q4_1),
            GgmlDType::Q5_0 => Format::Blocks(Kind::Q5_0),
            GgmlDType::Q8_0 => Format::Blocks(Kind::Q8_0),
            GgmlDType::Q4K => Format::Tiles(KQuant::Q4K),
            GgmlDType::Q6K => Format::Tiles(KQuant::Q6K),
            _ => return Ok(None),
        };
        let (rows, columns) = tensor.shape().dims2()?;
        let (values_per_block, block_bytes) = match format {
            Format::Tiles(k_quant) => (SUPER_BLOCK, k_quant.block_bytes()),
            Format::Blocks(kind) => (BLOCK, kind.block_bytes()),
        };
        if columns % values_per_block != 0 {
            return Ok(None);
        }
        let weights = tensor.data()?;
        let row_bytes = columns / values_per_block * block_bytes;
        if weights.len() != rows * row_bytes {
            bail!(
                "{:?} weights of {rows}×{columns} take {} bytes, not {}",
                tensor.dtype(),
                rows * row_bytes,
                weights.len()
            );
        }
        let weights = match format {
            Format::Tiles(k_quant) => k_quants::to_tiles(k_quant, &weights, rows, columns),
            Format::Blocks(_) => interleave(&weights, rows, row_bytes, block_bytes),
        };
        Ok(Some(Self {
            format,
            weights,
            rows,
            columns,
        }))
    }

    /// `x` (…, columns) → (…, rows), on the CPU in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = x.dims().to_vec();
        if shape.last() != Some(&self.columns) {
            bail!(
                "a {:?} input does not fit weights of {} columns",
                x.dims(),
                self.columns
            );
        }
        let inputs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let mut result = vec![0f32; inputs.len() / self.columns * self.rows];
        match self.format {
            Format::Tiles(k_quant) => self.tile_products(k_quant, &inputs, &mut result),
            Format::Blocks(kind) => self.block_products(kind, &inputs, &mut result),
        }
        *shape.last_mut().expect("checked above") = self.rows;
        Tensor::from_vec(result, shape, x.device())
    }

    /// Every input row against every weight row, the groups of eight rows shared out between
    /// the threads; each group meets the inputs up to four at a time.
    fn tile_products(&self, k_quant: KQuant, inputs: &[f32], result: &mut [f32]) {
        let activations: Vec<ActivationSuperBlock> = inputs
            .chunks_exact(SUPER_BLOCK)
            .map(quantize_super)
            .collect();
        let per_row = self.columns / SUPER_BLOCK;
        let input_blocks: Vec<&[ActivationSuperBlock]> =
            activations.chunks_exact(per_row).collect();
        let group_bytes = per_row * k_quant.tile_bytes();
        let [alone, several] = [false, true].map(|several| k_quants::kernel(k_quant, several));
        let output = SharedOutput::new(result);
        crate::kernels::parallel::for_each_range(self.rows.div_ceil(TILE_ROWS), |groups| {
            let mut sums = [[0f32; TILE_ROWS]; MOST_INPUTS];
            for group in groups {
                let rows = group * TILE_ROWS..((group + 1) * TILE_ROWS).min(self.rows);
                let tiles = &self.weights[group * group_bytes..(group + 1) * group_bytes];
                for (chunk, inputs) in input_blocks.chunks(MOST_INPUTS).enumerate() {
                    let dot = if inputs.len() == 1 { alone } else { several };
                    dot(tiles, inputs, &mut sums[..inputs.len()]);
                    for (offset, sums) in sums[..inputs.len()].iter().enumerate() {
                        let input = chunk * MOST_INPUTS + offset;
                        // SAFETY: rows `rows` of input row `input` lie in `result` (one
                        // input row per row of results) and only this task writes them: each group of rows is
                        // one task's.
                        unsafe {
                            output.write_row(input * self.rows + rows.start, &sums[..rows.len()])
                        };
                    }
                }
            }
        });
    }

    /// As [`Self::tile_products`], for the 32-value block types in groups of [`ROW_GROUP`].
    fn block_products(&self, kind: Kind, inputs: &[f32], result: &mut [f32]) {
        let input_rows = result.len() / self.rows;
        let activations: Vec<ActivationBlock> = inputs.chunks_exact(BLOCK).map(quantize).collect();
        let blocks_per_row = self.columns / BLOCK;
        let row_bytes = blocks_per_row * kind.block_bytes();
        let output = SharedOutput::new(result);
        let dot = rows_function(kind);
        let inputs_dot = inputs_function(kind);
        let input_blocks: Vec<&[ActivationBlock]> =
            activations.chunks_exact(blocks_per_row).collect();
        let groups = self.rows.div_ceil(ROW_GROUP);
        crate::kernels::parallel::for_each_range(groups, |groups| {
            let mut sums = vec![[0f32; ROW_GROUP]; input_rows];
            for group in groups {
                let rows = group * ROW_GROUP..((group + 1) * ROW_GROUP).min(self.rows);
                let weights = &self.weights[rows.start * row_bytes..rows.end * row_bytes];
                // A group's weights stay in the cache while every input row meets them; where a
                // kernel takes several input rows (a prompt's, or a batch's next tokens) it
                // unpacks each weight block once for several of them.
                match inputs_dot {
                    Some(inputs_dot) if input_rows > 1 => {
                        inputs_dot(weights, &input_blocks, &mut sums, rows.len())
                    }
                    _ => {
                        for (input, sums) in input_blocks.iter().zip(&mut sums) {
                            dot(weights, input, &mut sums[..rows.len()]);
                        }
                    }
                }
                for (input, sums) in sums.iter().enumerate() {
                    // SAFETY: rows `rows` of input row `input` lie in `result` (input <
                    // input_rows) and only this task writes them: each group of rows is one
                    // task's.
                    unsafe {
                        output.write_row(input * self.rows + rows.start, &sums[..rows.len()])
                    };
                }
            }
        });
    }
}

/// `weights` holds a group of `sums.len()` (1 to [`ROW_GROUP`]) interleaved rows; `sums` gets
/// their products with `blocks`.
type RowsDot = fn(&[u8], &[ActivationBlock], &mut [f32]);

fn rows_function(kind: Kind) -> RowsDot {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        return match kind {
            Kind::Q4_1 => |weights, blocks, sums| {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { avx2::dot_q4_1(weights, blocks, sums) }
            },
            Kind::Q5_0 => |weights, blocks, sums| {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { avx2::dot_q5_0(weights, blocks, sums) }
            },
            Kind::Q8_0 => |weights, blocks, sums| {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { avx2::dot_q8_0(weights, blocks, sums) }
            },
        };
    }
    #[cfg(all(
        target_arch = "wasm32",
        target_feature = "simd128",
        feature = "relaxed-simd"
    ))]
    return match kind {
        Kind::Q4_1 => simd128::relaxed_dot::<BlockQ4_1>,
        Kind::Q5_0 => simd128::relaxed_dot::<BlockQ5_0>,
        Kind::Q8_0 => simd128::dot::<BlockQ8_0>,
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[allow(unreachable_code)]
    return simd128_rows(kind);
    #[allow(unreachable_code)]
    portable_rows(kind)
}

/// The browser's kernels without relaxed SIMD.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn simd128_rows(kind: Kind) -> RowsDot {
    match kind {
        Kind::Q4_1 => simd128::dot::<BlockQ4_1>,
        Kind::Q5_0 => simd128::dot::<BlockQ5_0>,
        Kind::Q8_0 => simd128::dot::<BlockQ8_0>,
    }
}

/// The one-row portable kernels, row after row: the reference the others match bit for bit.
fn portable_rows(kind: Kind) -> RowsDot {
    match kind {
        Kind::Q4_1 => |weights, blocks, sums| {
            each_row::<BlockQ4_1>(weights, blocks, sums, |row, blocks| {
                portable::dot_q4_1(row, blocks)
            })
        },
        Kind::Q5_0 => |weights, blocks, sums| {
            each_row::<BlockQ5_0>(weights, blocks, sums, |row, blocks| {
                portable::dot_q5_0(row, blocks)
            })
        },
        Kind::Q8_0 => |weights, blocks, sums| {
            each_row::<BlockQ8_0>(weights, blocks, sums, |row, blocks| {
                portable::dot_q8_0(row, blocks)
            })
        },
    }
}

/// Like [`RowsDot`] for any number of input rows: `sums[input]` gets the group's sums.
type InputsDot = fn(&[u8], &[&[ActivationBlock]], &mut [[f32; ROW_GROUP]], usize);

/// The most input rows a kernel takes at once.
const MOST_INPUTS: usize = 4;

/// Where a kernel takes several input rows per pass over the weights (AVX2, simd128): a
/// prompt's rows and a batch's next tokens then unpack each weight block once for all of them,
/// instead of reading the weights again for every row.
#[allow(unreachable_code)]
fn inputs_function(kind: Kind) -> Option<InputsDot> {
    #[cfg(target_arch = "x86_64")]
    if let Some(several) = avx512_inputs_function(kind) {
        return Some(several);
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        let vnni = std::is_x86_feature_detected!("avxvnni");
        // SAFETY: AVX2 is present, and AVX-VNNI where asked for (checked just above).
        return Some(unsafe { avx2_inputs_function(kind, vnni) });
    }
    #[cfg(all(
        target_arch = "wasm32",
        target_feature = "simd128",
        feature = "relaxed-simd"
    ))]
    return Some(match kind {
        Kind::Q4_1 => simd128::relaxed_dot_inputs::<BlockQ4_1>,
        Kind::Q5_0 => simd128::relaxed_dot_inputs::<BlockQ5_0>,
        Kind::Q8_0 => simd128::dot_inputs::<BlockQ8_0>,
    });
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Some(simd128_inputs(kind));
    let _ = kind;
    None
}

/// The browser's several-inputs kernels without relaxed SIMD.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn simd128_inputs(kind: Kind) -> InputsDot {
    match kind {
        Kind::Q4_1 => simd128::dot_inputs::<BlockQ4_1>,
        Kind::Q5_0 => simd128::dot_inputs::<BlockQ5_0>,
        Kind::Q8_0 => simd128::dot_inputs::<BlockQ8_0>,
    }
}

/// `$several::<Block, VNNI>` for a kind of block and whether AVX-VNNI runs: the several-inputs
/// kernels are handed out as plain function pointers, so each choice is its own instance.
#[cfg(target_arch = "x86_64")]
macro_rules! by_block_and_vnni {
    ($several:ident, $kind:expr, $vnni:expr) => {
        match ($kind, $vnni) {
            (Kind::Q4_1, false) => $several::<BlockQ4_1, false>,
            (Kind::Q4_1, true) => $several::<BlockQ4_1, true>,
            (Kind::Q5_0, false) => $several::<BlockQ5_0, false>,
            (Kind::Q5_0, true) => $several::<BlockQ5_0, true>,
            (Kind::Q8_0, false) => $several::<BlockQ8_0, false>,
            (Kind::Q8_0, true) => $several::<BlockQ8_0, true>,
        }
    };
}

/// The several-inputs kernel with or without AVX-VNNI (the tests run both).
///
/// # Safety
/// The CPU has AVX2, and AVX-VNNI where `vnni`: what is returned runs with them.
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_inputs_function(kind: Kind, vnni: bool) -> InputsDot {
    fn several<B: avx2::Kernel, const VNNI: bool>(
        weights: &[u8],
        inputs: &[&[ActivationBlock]],
        sums: &mut [[f32; ROW_GROUP]],
        rows: usize,
    ) {
        // SAFETY: handed out only by `avx2_inputs_function`, whose caller checked the features.
        unsafe { avx2::dot_inputs::<B>(weights, inputs, sums, rows, VNNI) }
    }
    by_block_and_vnni!(several, kind, vnni)
}

/// The several-inputs kernel with AVX-512, where the CPU has F, BW and VNNI, for a prompt's
/// rows: Qwen2.5-0.5B's 512-token prompt (Q5_0 and Q8_0 nearly all through here) 125 → 185
/// tok/s beside AVX2's, 2 threads. Its layout of a group's weights pays only when many inputs
/// meet it: fewer than [`AVX512_FROM_INPUTS`] (a batch's next tokens), and groups of fewer than
/// four rows (a matrix's last), go through AVX2, with the same bits.
/// Measured with four answers decoded together (Qwen2.5-0.5B, `bench --batch 4`, 2 threads):
/// 76 tok/s with AVX-512 for all, 99.6 with AVX2 below eight inputs (87–88 before either).
#[cfg(target_arch = "x86_64")]
const AVX512_FROM_INPUTS: usize = 8;

#[cfg(target_arch = "x86_64")]
fn avx512_inputs_function(kind: Kind) -> Option<InputsDot> {
    /// Fewer inputs (a batch's next tokens) or a matrix's last rows go through the AVX2
    /// kernel, with AVX-VNNI where the CPU has it (not every AVX-512 VNNI CPU does).
    fn several<B: avx512::Unpack, const VNNI: bool>(
        weights: &[u8],
        inputs: &[&[ActivationBlock]],
        sums: &mut [[f32; ROW_GROUP]],
        rows: usize,
    ) {
        if rows == ROW_GROUP && inputs.len() >= AVX512_FROM_INPUTS {
            // SAFETY: handed out only below, once the features were found.
            unsafe { avx512::dot_inputs::<B>(weights, inputs, sums) }
        } else {
            // SAFETY: AVX2 is present, and AVX-VNNI where `VNNI` (found below).
            unsafe { avx2::dot_inputs::<B>(weights, inputs, sums, rows, VNNI) }
        }
    }
    let present = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("avx2");
    let vnni = std::is_x86_feature_detected!("avxvnni");
    present.then_some(by_block_and_vnni!(several, kind, vnni))
}

/// The blocks of one weight row, as the one-row kernels take them.
type RowBlocks<'a, B> = std::iter::Map<
    std::iter::StepBy<std::iter::Skip<std::slice::ChunksExact<'a, u8>>>,
    fn(&'a [u8]) -> &'a B,
>;

/// A group of rows through a one-row kernel.
fn each_row<B: WeightBlock>(
    weights: &[u8],
    blocks: &[ActivationBlock],
    sums: &mut [f32],
    dot: impl for<'a> Fn(RowBlocks<'a, B>, &[ActivationBlock]) -> f32,
) {
    let rows = sums.len();
    for (row, sum) in sums.iter_mut().enumerate() {
        *sum = dot(row_blocks(weights, row, rows), blocks);
    }
}

#[cfg(test)]
mod tests;
