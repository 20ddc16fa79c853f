//! Matrix products for the quantisations of the models this project runs on the CPU: Q4_1
//! (SmolLM2-135M's file), Q5_0 (most of Qwen2.5-0.5B's "Q4_K_M" file: its 896-wide rows
//! cannot hold 256-value K-quant blocks, so llama.cpp stores them as Q5_0), Q8_0 (output
//! matrices, and what the server rewrites Q4_1/Q5_0 as), and Q4_K and Q6_K (nearly every
//! matrix of the 1–7B Q4_K_M files teams publish).
//!
//! The K-quants meet activations quantised 256 at a time (one scale per super-block, as
//! llama.cpp's Q8_K): a super-block's eight sub-blocks then add up in integers, each times its
//! 6- or 8-bit scale, and meet floating point once — per 32 values it was twice as slow as
//! candle's kernel.
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
pub mod blocks;
pub mod lanes;
pub mod parallel;
mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use blocks::{
    ActivationBlock, ActivationSuperBlock, BLOCK, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ6K,
    BlockQ8_0, ROW_GROUP, SUPER_BLOCK, WeightBlock, interleave, quantize, quantize_super,
    row_blocks,
};
use parallel::SharedOutput;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => size_of::<BlockQ4_1>(),
            Kind::Q5_0 => size_of::<BlockQ5_0>(),
            Kind::Q8_0 => size_of::<BlockQ8_0>(),
            Kind::Q4K => size_of::<BlockQ4K>(),
            Kind::Q6K => size_of::<BlockQ6K>(),
        }
    }

    /// Values per weight block: 32, or a K-quant's 256 (eight activation blocks).
    fn block_values(self) -> usize {
        match self {
            Kind::Q4_1 | Kind::Q5_0 | Kind::Q8_0 => BLOCK,
            Kind::Q4K | Kind::Q6K => SUPER_BLOCK,
        }
    }

    fn row_bytes(self, columns: usize) -> usize {
        columns / self.block_values() * self.block_bytes()
    }
}

/// A weight matrix (rows × columns, row-major, as in the GGUF) in Q4_1, Q5_0, Q8_0, Q4_K or
/// Q6_K.
pub struct QuantMatMul {
    kind: Kind,
    weights: Vec<u8>,
    rows: usize,
    columns: usize,
}

impl QuantMatMul {
    /// `None` for the other types (candle's kernels multiply them) and for rows that are not
    /// whole blocks.
    pub fn new(tensor: &QTensor) -> Result<Option<Self>> {
        let kind = match tensor.dtype() {
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q5_0 => Kind::Q5_0,
            GgmlDType::Q8_0 => Kind::Q8_0,
            GgmlDType::Q4K => Kind::Q4K,
            GgmlDType::Q6K => Kind::Q6K,
            _ => return Ok(None),
        };
        let (rows, columns) = tensor.shape().dims2()?;
        if columns % kind.block_values() != 0 {
            return Ok(None);
        }
        let weights = tensor.data()?.into_owned();
        if weights.len() != rows * kind.row_bytes(columns) {
            bail!(
                "{kind:?} weights of {rows}×{columns} take {} bytes, not {}",
                rows * kind.row_bytes(columns),
                weights.len()
            );
        }
        let weights = interleave(&weights, rows, kind.row_bytes(columns), kind.block_bytes());
        Ok(Some(Self {
            kind,
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
        match super_rows_function(self.kind) {
            Some(dot) => {
                let activations: Vec<ActivationSuperBlock> = inputs
                    .chunks_exact(SUPER_BLOCK)
                    .map(quantize_super)
                    .collect();
                self.products(&activations, dot, None, &mut result);
            }
            None => {
                let activations: Vec<ActivationBlock> =
                    inputs.chunks_exact(BLOCK).map(quantize).collect();
                let dot = rows_function(self.kind);
                self.products(&activations, dot, inputs_function(self.kind), &mut result);
            }
        }
        *shape.last_mut().expect("checked above") = self.rows;
        Tensor::from_vec(result, shape, x.device())
    }
}

impl QuantMatMul {
    /// Every input row (`activations`, a row's worth after another) against every weight row
    /// into `result`, the groups of rows shared out between the threads.
    fn products<A: Sync>(
        &self,
        activations: &[A],
        dot: RowsDot<A>,
        inputs_dot: Option<InputsDot<A>>,
        result: &mut [f32],
    ) {
        let input_rows = result.len() / self.rows;
        let row_bytes = self.kind.row_bytes(self.columns);
        let output = SharedOutput::new(result);
        let input_blocks: Vec<&[A]> = activations
            .chunks_exact(activations.len() / input_rows.max(1))
            .collect();
        let groups = self.rows.div_ceil(ROW_GROUP);
        candle_core::utils::barrier_pool().execute_chunked(groups, |groups| {
            let mut sums = [[0f32; ROW_GROUP]; MOST_INPUTS];
            for group in groups {
                let rows = group * ROW_GROUP..((group + 1) * ROW_GROUP).min(self.rows);
                let weights = &self.weights[rows.start * row_bytes..rows.end * row_bytes];
                // A group's weights stay in the cache while every input row meets them; where a
                // kernel takes several input rows (a prompt's, or a batch's next tokens) they
                // meet them four or two at a time.
                let mut first = 0;
                while first < input_rows {
                    let left = input_rows - first;
                    let count = match inputs_dot {
                        Some(_) if left >= 4 => 4,
                        Some(_) if left >= 2 => 2,
                        _ => 1,
                    };
                    let inputs = &input_blocks[first..first + count];
                    match inputs_dot {
                        Some(inputs_dot) if count > 1 => {
                            inputs_dot(weights, inputs, &mut sums[..count], rows.len())
                        }
                        _ => dot(weights, inputs[0], &mut sums[0][..rows.len()]),
                    }
                    for (input, sums) in (first..first + count).zip(&sums) {
                        // SAFETY: rows `rows` of input row `input` lie in `result` (input <
                        // input_rows) and only this task writes them: each group of rows is one
                        // task's.
                        unsafe {
                            output.write_row(input * self.rows + rows.start, &sums[..rows.len()])
                        };
                    }
                    first += count;
                }
            }
        });
    }
}

/// `weights` holds a group of `sums.len()` (1 to [`ROW_GROUP`]) interleaved rows; `sums` gets
/// their products with `blocks` (32-value activation blocks, or a K-quant's 256-value ones).
type RowsDot<A = ActivationBlock> = fn(&[u8], &[A], &mut [f32]);

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
            Kind::Q4K | Kind::Q6K => unreachable!("{kind:?} takes 256-value activation blocks"),
        };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return match kind {
        Kind::Q4_1 => simd128::dot_q4_1,
        Kind::Q5_0 => simd128::dot_q5_0,
        Kind::Q8_0 => simd128::dot_q8_0,
        Kind::Q4K | Kind::Q6K => unreachable!("{kind:?} takes 256-value activation blocks"),
    };
    #[allow(unreachable_code)]
    portable_rows(kind)
}

/// The one-row portable kernels, row after row: the reference the others match bit for bit.
fn portable_rows(kind: Kind) -> RowsDot {
    match kind {
        Kind::Q4_1 => |weights, blocks, sums| {
            each_row::<BlockQ4_1, _>(weights, blocks, sums, |row, blocks| {
                portable::dot_q4_1(row, blocks)
            })
        },
        Kind::Q5_0 => |weights, blocks, sums| {
            each_row::<BlockQ5_0, _>(weights, blocks, sums, |row, blocks| {
                portable::dot_q5_0(row, blocks)
            })
        },
        Kind::Q8_0 => |weights, blocks, sums| {
            each_row::<BlockQ8_0, _>(weights, blocks, sums, |row, blocks| {
                portable::dot_q8_0(row, blocks)
            })
        },
        Kind::Q4K | Kind::Q6K => unreachable!("{kind:?} takes 256-value activation blocks"),
    }
}

/// The K-quants' kernels, which take 256-value activation blocks; `None` for the others.
fn super_rows_function(kind: Kind) -> Option<RowsDot<ActivationSuperBlock>> {
    if !matches!(kind, Kind::Q4K | Kind::Q6K) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        return Some(if kind == Kind::Q4K {
            |weights, blocks, sums| {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { avx2::dot_q4_k(weights, blocks, sums) }
            }
        } else {
            |weights, blocks, sums| {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { avx2::dot_q6_k(weights, blocks, sums) }
            }
        });
    }
    // No simd128 K-quant kernels yet: the browser takes the portable ones (the same bits).
    Some(portable_super_rows(kind))
}

/// The portable K-quant kernels, row after row: the reference the others match bit for bit.
fn portable_super_rows(kind: Kind) -> RowsDot<ActivationSuperBlock> {
    if kind == Kind::Q4K {
        |weights, blocks, sums| {
            each_row::<BlockQ4K, _>(weights, blocks, sums, |row, blocks| {
                portable::dot_q4_k(row, blocks)
            })
        }
    } else {
        |weights, blocks, sums| {
            each_row::<BlockQ6K, _>(weights, blocks, sums, |row, blocks| {
                portable::dot_q6_k(row, blocks)
            })
        }
    }
}

/// Like [`RowsDot`] for 2 or 4 input rows at once: `sums[input]` gets the group's sums.
type InputsDot<A = ActivationBlock> = fn(&[u8], &[&[A]], &mut [[f32; ROW_GROUP]], usize);

/// The most input rows a kernel takes at once.
const MOST_INPUTS: usize = 4;

/// Where a kernel takes several input rows per pass over the weights: Q8_0 with AVX2, the
/// server's usual type, whose prompts and batches are otherwise bound by the loads of weights
/// and activations.
fn inputs_function(kind: Kind) -> Option<InputsDot> {
    #[cfg(target_arch = "x86_64")]
    if kind == Kind::Q8_0 && std::is_x86_feature_detected!("avx2") {
        if std::is_x86_feature_detected!("avxvnni") {
            // SAFETY: AVX2 and AVX-VNNI are present (checked just above).
            return Some(|weights, inputs, sums, rows| unsafe {
                avx2::dot_q8_0_inputs(weights, inputs, sums, rows, true)
            });
        }
        // SAFETY: AVX2 is present (checked just above); AVX-VNNI is not asked for.
        return Some(|weights, inputs, sums, rows| unsafe {
            avx2::dot_q8_0_inputs(weights, inputs, sums, rows, false)
        });
    }
    let _ = kind;
    None
}

/// The blocks of one weight row, as the one-row kernels take them.
type RowBlocks<'a, B> = std::iter::Map<
    std::iter::StepBy<std::iter::Skip<std::slice::ChunksExact<'a, u8>>>,
    fn(&'a [u8]) -> &'a B,
>;

/// A group of rows through a one-row kernel.
fn each_row<B: WeightBlock, A>(
    weights: &[u8],
    blocks: &[A],
    sums: &mut [f32],
    dot: impl for<'a> Fn(RowBlocks<'a, B>, &[A]) -> f32,
) {
    let rows = sums.len();
    for (row, sum) in sums.iter_mut().enumerate() {
        *sum = dot(row_blocks(weights, row, rows), blocks);
    }
}

#[cfg(test)]
mod tests;
