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

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor, bail};

/// Values per block, in every type here.
const BLOCK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `d: f16, m: f16, 16 bytes of nibbles`: value = d·q + m, q in 0..16.
    Q4_1,
    /// `d: f16, 4 bytes of fifth bits, 16 bytes of nibbles`: value = d·(q − 16), q in 0..32.
    Q5_0,
    /// `d: f16, 32 signed bytes`: value = d·q.
    Q8_0,
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => 20,
            Kind::Q5_0 => 22,
            Kind::Q8_0 => 34,
        }
    }
}

/// A weight matrix (rows × columns, row-major, as in the GGUF) in Q4_1, Q5_0 or Q8_0.
pub struct QuantMatMul {
    kind: Kind,
    weights: Vec<u8>,
    rows: usize,
    columns: usize,
}

/// 32 activations as `d · qs`, and `d · Σqs` (what Q4_1's offset multiplies).
struct ActivationBlock {
    d: f32,
    scaled_sum: f32,
    qs: [i8; BLOCK],
}

impl QuantMatMul {
    /// `None` for the other types (candle's kernels multiply them) and for rows that are not
    /// whole blocks.
    pub fn new(tensor: &QTensor) -> Result<Option<Self>> {
        let kind = match tensor.dtype() {
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q5_0 => Kind::Q5_0,
            GgmlDType::Q8_0 => Kind::Q8_0,
            _ => return Ok(None),
        };
        let (rows, columns) = tensor.shape().dims2()?;
        if columns % BLOCK != 0 {
            return Ok(None);
        }
        let weights = tensor.data()?.into_owned();
        if weights.len() != rows * columns / BLOCK * kind.block_bytes() {
            bail!(
                "{kind:?} weights of {rows}×{columns} take {} bytes, not {}",
                rows * columns / BLOCK * kind.block_bytes(),
                weights.len()
            );
        }
        let weights = interleave(
            &weights,
            rows,
            columns / BLOCK * kind.block_bytes(),
            kind.block_bytes(),
        );
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
        let input_rows = inputs.len() / self.columns;
        let activations: Vec<ActivationBlock> = inputs.chunks_exact(BLOCK).map(quantize).collect();
        let blocks_per_row = self.columns / BLOCK;
        let row_bytes = blocks_per_row * self.kind.block_bytes();

        let mut result = vec![0f32; input_rows * self.rows];
        let output = SharedOutput::new(&mut result);
        let dot = rows_function(self.kind);
        let pair_dot = pair_function(self.kind);
        let groups = self.rows.div_ceil(ROW_GROUP);
        candle_core::utils::barrier_pool().execute_chunked(groups, |groups| {
            let mut sums = [[0f32; ROW_GROUP]; 2];
            for group in groups {
                let rows = group * ROW_GROUP..((group + 1) * ROW_GROUP).min(self.rows);
                let weights = &self.weights[rows.start * row_bytes..rows.end * row_bytes];
                let [first_sums, second_sums] = &mut sums;
                let (first_sums, second_sums) = (
                    &mut first_sums[..rows.len()],
                    &mut second_sums[..rows.len()],
                );
                // A group's weights stay in the cache while every input row meets them; a
                // prompt's rows meet them two at a time where a kernel does pairs.
                let mut inputs = activations.chunks_exact(blocks_per_row).enumerate();
                while let Some((input, blocks)) = inputs.next() {
                    // SAFETY (writes): each group of rows is written by exactly one task.
                    if let Some(pair_dot) = pair_dot {
                        if let Some((_, second)) = inputs.clone().next() {
                            inputs.next();
                            pair_dot(weights, [blocks, second], first_sums, second_sums);
                            unsafe {
                                output.write_row(input * self.rows + rows.start, first_sums);
                                output.write_row((input + 1) * self.rows + rows.start, second_sums);
                            }
                            continue;
                        }
                    }
                    dot(weights, blocks, first_sums);
                    unsafe { output.write_row(input * self.rows + rows.start, first_sums) };
                }
            }
        });
        *shape.last_mut().expect("checked above") = self.rows;
        Tensor::from_vec(result, shape, x.device())
    }
}

/// Weight rows multiplied per pass over the activations.
const ROW_GROUP: usize = 4;

/// Row-major blocks regrouped so that each group of [`ROW_GROUP`] rows (fewer in the last one)
/// holds its rows' first blocks, then their second blocks, and so on: a group's kernel then
/// reads memory in one sequential stream, which the CPU prefetches well (four rows read side
/// by side made it wait for memory most of the time).
fn interleave(weights: &[u8], rows: usize, row_bytes: usize, block_bytes: usize) -> Vec<u8> {
    let mut grouped = Vec::with_capacity(weights.len());
    for group in weights.chunks(ROW_GROUP * row_bytes) {
        let group_rows: Vec<&[u8]> = group.chunks_exact(row_bytes).collect();
        for start in (0..row_bytes).step_by(block_bytes) {
            for row in &group_rows {
                grouped.extend_from_slice(&row[start..start + block_bytes]);
            }
        }
    }
    debug_assert_eq!(grouped.len(), rows * row_bytes);
    grouped
}

/// Where block `index` of row `row` starts in an interleaved group of `rows` rows.
fn block_start(row: usize, rows: usize, index: usize, block_bytes: usize) -> usize {
    (index * rows + row) * block_bytes
}

/// The blocks of row `row` of an interleaved group of `rows` rows.
fn row_blocks(group: &[u8], row: usize, rows: usize, block_bytes: usize) -> RowBlocks<'_> {
    group.chunks_exact(block_bytes).skip(row).step_by(rows)
}

type RowBlocks<'a> = std::iter::StepBy<std::iter::Skip<std::slice::ChunksExact<'a, u8>>>;

/// An output buffer that the thread pool's tasks fill in disjoint parts.
#[derive(Clone, Copy)]
pub(crate) struct SharedOutput(*mut f32);
// SAFETY: callers write disjoint elements (see `write`).
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    pub(crate) fn new(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// # Safety
    /// `start..start + row.len()` is inside the buffer, which outlives the tasks, and no other
    /// task writes there.
    pub(crate) unsafe fn write_row(&self, start: usize, row: &[f32]) {
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.0.add(start), row.len()) };
    }
}

/// Σ a·b in eight interleaved lanes added up by [`sum_lanes`]: the same order on every machine,
/// and one the compiler vectorises.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = a.chunks_exact(8).zip(b.chunks_exact(8));
    for (a, b) in &mut chunks {
        for lane in 0..8 {
            lanes[lane] += a[lane] * b[lane];
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(a, b)| a * b)
        .sum();
    sum_lanes(lanes) + tail
}

fn quantize(values: &[f32]) -> ActivationBlock {
    let largest = values
        .iter()
        .fold(0f32, |largest, value| largest.max(value.abs()));
    let d = largest / 127.0;
    let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut qs = [0i8; BLOCK];
    let mut sum = 0i32;
    for (q, value) in qs.iter_mut().zip(values) {
        *q = (value * inverse).round() as i8;
        sum += *q as i32;
    }
    ActivationBlock {
        d,
        scaled_sum: d * sum as f32,
        qs,
    }
}

/// `weights` holds a group of `sums.len()` (1 to [`ROW_GROUP`]) interleaved rows; `sums` gets
/// their products with `blocks`.
type RowsDot = fn(&[u8], &[ActivationBlock], &mut [f32]);

fn rows_function(kind: Kind) -> RowsDot {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        return match kind {
            // SAFETY: AVX2 is present (checked just above).
            Kind::Q4_1 => |weights, blocks, sums| unsafe { avx2::dot_q4_1(weights, blocks, sums) },
            Kind::Q5_0 => |weights, blocks, sums| unsafe { avx2::dot_q5_0(weights, blocks, sums) },
            Kind::Q8_0 => |weights, blocks, sums| unsafe { avx2::dot_q8_0(weights, blocks, sums) },
        };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return match kind {
        Kind::Q4_1 => simd128::dot_q4_1,
        Kind::Q5_0 => simd128::dot_q5_0,
        Kind::Q8_0 => simd128::dot_q8_0,
    };
    #[allow(unreachable_code)]
    match kind {
        Kind::Q4_1 => {
            |weights, blocks, sums| each_row(weights, blocks, sums, 20, portable::dot_q4_1)
        }
        Kind::Q5_0 => {
            |weights, blocks, sums| each_row(weights, blocks, sums, 22, portable::dot_q5_0)
        }
        Kind::Q8_0 => {
            |weights, blocks, sums| each_row(weights, blocks, sums, 34, portable::dot_q8_0)
        }
    }
}

/// Like [`RowsDot`] for two input rows at once (the first sums, then the second).
type PairDot = fn(&[u8], [&[ActivationBlock]; 2], &mut [f32], &mut [f32]);

/// Where a kernel takes two input rows per pass over the weights: Q8_0 with AVX2, the server's
/// usual type, whose prompts are otherwise bound by the loads of weights and activations.
fn pair_function(kind: Kind) -> Option<PairDot> {
    #[cfg(target_arch = "x86_64")]
    if kind == Kind::Q8_0 && std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return Some(|weights, inputs, first, second| unsafe {
            avx2::dot_q8_0_pair(weights, inputs, first, second)
        });
    }
    let _ = kind;
    None
}

/// A group of rows through a one-row kernel.
fn each_row(
    weights: &[u8],
    blocks: &[ActivationBlock],
    sums: &mut [f32],
    block_bytes: usize,
    dot: impl Fn(RowBlocks<'_>, &[ActivationBlock]) -> f32,
) {
    let rows = sums.len();
    for (row, sum) in sums.iter_mut().enumerate() {
        *sum = dot(row_blocks(weights, row, rows, block_bytes), blocks);
    }
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// The f16 scales of the blocks as f32, exactly for every finite value (the only kind sane
/// weights hold): the exponent and mantissa bits moved into place, then rebiased by multiplying
/// by 2¹¹², which also scales subnormals right. WebAssembly has no conversion instruction and
/// the `half` crate's software one made the browser's kernels 7% slower; every kernel uses this
/// one so that all give the same bits.
fn f16_to_f32(bits: u16) -> f32 {
    let bits = bits as u32;
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | ((bits & 0x8000) << 16))
}

/// The eight lane sums added as AVX2's horizontal sum does: halves, then pairs, then the last two.
pub(crate) fn sum_lanes(lanes: [f32; 8]) -> f32 {
    let quarters = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    let pairs = [quarters[0] + quarters[2], quarters[1] + quarters[3]];
    pairs[0] + pairs[1]
}

/// Lane `l` of eight holds the products of values 4l..4l+4 of each block, as `_mm256_madd_epi16`
/// leaves them.
mod portable {
    use super::{ActivationBlock, BLOCK, RowBlocks, half_at, sum_lanes};

    fn nibble(quants: &[u8], index: usize) -> i32 {
        if index < BLOCK / 2 {
            (quants[index] & 0x0f) as i32
        } else {
            (quants[index - BLOCK / 2] >> 4) as i32
        }
    }

    pub fn dot_q4_1(row: RowBlocks<'_>, blocks: &[ActivationBlock]) -> f32 {
        let mut lanes = [0f32; 8];
        let mut offsets = 0f32;
        for (block, activations) in row.zip(blocks) {
            let (d, m, quants) = (half_at(block, 0), half_at(block, 2), &block[4..]);
            let scale = d * activations.d;
            for (lane, total) in lanes.iter_mut().enumerate() {
                let sum: i32 = (4 * lane..4 * lane + 4)
                    .map(|i| nibble(quants, i) * activations.qs[i] as i32)
                    .sum();
                *total += scale * sum as f32;
            }
            offsets += m * activations.scaled_sum;
        }
        sum_lanes(lanes) + offsets
    }

    pub fn dot_q5_0(row: RowBlocks<'_>, blocks: &[ActivationBlock]) -> f32 {
        let mut lanes = [0f32; 8];
        for (block, activations) in row.zip(blocks) {
            let d = half_at(block, 0);
            let high_bits = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            let quants = &block[6..];
            let scale = d * activations.d;
            let value = |i: usize| (nibble(quants, i) | (((high_bits >> i) & 1) << 4) as i32) - 16;
            for (lane, total) in lanes.iter_mut().enumerate() {
                let sum: i32 = (4 * lane..4 * lane + 4)
                    .map(|i| value(i) * activations.qs[i] as i32)
                    .sum();
                *total += scale * sum as f32;
            }
        }
        sum_lanes(lanes)
    }

    pub fn dot_q8_0(row: RowBlocks<'_>, blocks: &[ActivationBlock]) -> f32 {
        let mut lanes = [0f32; 8];
        for (block, activations) in row.zip(blocks) {
            let (d, quants) = (half_at(block, 0), &block[2..]);
            let scale = d * activations.d;
            for (lane, total) in lanes.iter_mut().enumerate() {
                let sum: i32 = (4 * lane..4 * lane + 4)
                    .map(|i| quants[i] as i8 as i32 * activations.qs[i] as i32)
                    .sum();
                *total += scale * sum as f32;
            }
        }
        sum_lanes(lanes)
    }
}

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

/// Up to [`ROW_GROUP`] rows at once: each row keeps its own eight lanes, added in the one-row
/// order, while the activations (and what the rows share of them) are loaded once for all.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ActivationBlock, block_start, f16_to_f32};

    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_q4_1(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
        unsafe { group!(sums, rows::<Q4_1, N>(weights, blocks)) }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_q5_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
        unsafe { group!(sums, rows::<Q5_0, N>(weights, blocks)) }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_q8_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
        unsafe { group!(sums, rows::<Q8_0, N>(weights, blocks)) }
    }

    /// Two input rows against the group: the same sums, in the same order, as two calls to
    /// [`dot_q8_0`], with each weight block loaded once.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_q8_0_pair(
        weights: &[u8],
        inputs: [&[ActivationBlock]; 2],
        first: &mut [f32],
        second: &mut [f32],
    ) {
        macro_rules! pair {
            ($rows:literal) => {{
                let [a, b] = unsafe { q8_0_pair_rows::<$rows>(weights, inputs) };
                first.copy_from_slice(&a);
                second.copy_from_slice(&b);
            }};
        }
        match first.len() {
            4 => pair!(4),
            3 => pair!(3),
            2 => pair!(2),
            _ => pair!(1),
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn horizontal_sum(x: __m256) -> f32 {
        let quarters = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let pairs = _mm_add_ps(quarters, _mm_movehl_ps(quarters, quarters));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
    }

    fn half_at(at: *const u8) -> f32 {
        // SAFETY: callers point inside a block, whose first bytes are f16 values.
        f16_to_f32(unsafe { (at as *const u16).read_unaligned() })
    }

    /// 16 bytes of nibbles → 32 bytes: the low nibbles, then the high ones.
    #[target_feature(enable = "avx2")]
    unsafe fn unpack_nibbles(packed: *const u8) -> __m256i {
        let packed = unsafe { _mm_loadu_si128(packed as *const __m128i) };
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// Products of unsigned `weights` and signed `activations`, four by four into eight lanes.
    #[target_feature(enable = "avx2")]
    unsafe fn lane_sums(weights: __m256i, activations: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(weights, activations);
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }

    /// `lanes + scale · sums`, multiplied then added as the portable loop does.
    #[target_feature(enable = "avx2")]
    unsafe fn accumulate(lanes: __m256, scale: f32, sums: __m256i) -> __m256 {
        _mm256_add_ps(
            _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums)),
            lanes,
        )
    }

    #[target_feature(enable = "avx2")]
    unsafe fn load_values(activations: &ActivationBlock) -> __m256i {
        unsafe { _mm256_loadu_si256(activations.qs.as_ptr() as *const __m256i) }
    }

    /// What one quantisation's kernel does with a block; [`rows`] runs the loop all share.
    trait Block {
        const BYTES: usize;
        /// Q4_1's minimum: `m · d·Σx` per block, summed apart from the lanes.
        const OFFSET: bool = false;
        /// Worked out once per activation block for every row.
        type Shared: Copy;
        unsafe fn shared(values: __m256i) -> Self::Shared;
        /// The block's products with the activations, four by four into eight integer lanes.
        unsafe fn lane_sums(block: *const u8, values: __m256i, shared: Self::Shared) -> __m256i;
    }

    struct Q4_1;
    struct Q5_0;
    struct Q8_0;

    impl Block for Q4_1 {
        const BYTES: usize = 20;
        const OFFSET: bool = true;
        type Shared = ();
        unsafe fn shared(_: __m256i) {}

        #[target_feature(enable = "avx2")]
        unsafe fn lane_sums(block: *const u8, values: __m256i, _: ()) -> __m256i {
            unsafe { lane_sums(unpack_nibbles(block.add(4)), values) }
        }
    }

    impl Block for Q5_0 {
        const BYTES: usize = 22;
        /// The weights are multiplied as q in 0..32 (unsigned, as maddubs wants them); each
        /// lane then gives back 16 times its activations, which leaves exactly Σ(q − 16)·x.
        type Shared = __m256i;

        #[target_feature(enable = "avx2")]
        unsafe fn shared(values: __m256i) -> __m256i {
            unsafe { lane_sums(_mm256_set1_epi8(16), values) }
        }

        #[target_feature(enable = "avx2")]
        unsafe fn lane_sums(block: *const u8, values: __m256i, sixteen_times: __m256i) -> __m256i {
            // Byte i of the 32 picks byte i/8 of the fifth bits; OR-ing every bit but bit i%8
            // and comparing with all-ones tells whether that bit is set.
            let spread = _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0,
            );
            let other_bits = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
            let high_bits = unsafe { (block.add(2) as *const i32).read_unaligned() };
            let set = _mm256_cmpeq_epi8(
                _mm256_or_si256(
                    _mm256_shuffle_epi8(_mm256_set1_epi32(high_bits), spread),
                    other_bits,
                ),
                _mm256_set1_epi64x(-1),
            );
            let quants = _mm256_or_si256(
                unsafe { unpack_nibbles(block.add(6)) },
                _mm256_and_si256(set, _mm256_set1_epi8(0x10)),
            );
            _mm256_sub_epi32(unsafe { lane_sums(quants, values) }, sixteen_times)
        }
    }

    impl Block for Q8_0 {
        const BYTES: usize = 34;
        type Shared = ();
        unsafe fn shared(_: __m256i) {}

        #[target_feature(enable = "avx2")]
        unsafe fn lane_sums(block: *const u8, values: __m256i, _: ()) -> __m256i {
            let quants = unsafe { _mm256_loadu_si256(block.add(2) as *const __m256i) };
            // maddubs wants its first operand unsigned: move the sign onto the activations.
            unsafe {
                lane_sums(
                    _mm256_sign_epi8(quants, quants),
                    _mm256_sign_epi8(values, quants),
                )
            }
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn rows<B: Block, const ROWS: usize>(
        weights: &[u8],
        blocks: &[ActivationBlock],
    ) -> [f32; ROWS] {
        assert_eq!(weights.len(), ROWS * blocks.len() * B::BYTES);
        let mut lanes = [_mm256_setzero_ps(); ROWS];
        let mut offsets = [0f32; ROWS];
        for (index, activations) in blocks.iter().enumerate() {
            let values = unsafe { load_values(activations) };
            let shared = unsafe { B::shared(values) };
            for row in 0..ROWS {
                // In bounds: the length is asserted above.
                let block = weights
                    .as_ptr()
                    .wrapping_add(block_start(row, ROWS, index, B::BYTES));
                let sums = unsafe { B::lane_sums(block, values, shared) };
                lanes[row] =
                    unsafe { accumulate(lanes[row], half_at(block) * activations.d, sums) };
                if B::OFFSET {
                    offsets[row] += half_at(block.wrapping_add(2)) * activations.scaled_sum;
                }
            }
        }
        std::array::from_fn(|row| {
            let sum = unsafe { horizontal_sum(lanes[row]) };
            if B::OFFSET { sum + offsets[row] } else { sum }
        })
    }

    #[target_feature(enable = "avx2")]
    unsafe fn q8_0_pair_rows<const ROWS: usize>(
        weights: &[u8],
        inputs: [&[ActivationBlock]; 2],
    ) -> [[f32; ROWS]; 2] {
        let blocks = inputs[0].len();
        assert_eq!(inputs[1].len(), blocks);
        assert_eq!(weights.len(), ROWS * blocks * 34);
        let mut lanes = [[_mm256_setzero_ps(); ROWS]; 2];
        for index in 0..blocks {
            let activations = [&inputs[0][index], &inputs[1][index]];
            let values = activations.map(|activations| unsafe { load_values(activations) });
            for row in 0..ROWS {
                // In bounds: the length is asserted above.
                let block = weights
                    .as_ptr()
                    .wrapping_add(block_start(row, ROWS, index, 34));
                let quants = unsafe { _mm256_loadu_si256(block.add(2) as *const __m256i) };
                let magnitudes = _mm256_sign_epi8(quants, quants);
                let d = half_at(block);
                for input in 0..2 {
                    let sums =
                        unsafe { lane_sums(magnitudes, _mm256_sign_epi8(values[input], quants)) };
                    lanes[input][row] =
                        unsafe { accumulate(lanes[input][row], d * activations[input].d, sums) };
                }
            }
        }
        lanes.map(|lanes| lanes.map(|lanes| unsafe { horizontal_sum(lanes) }))
    }
}

/// The browser's kernels: WebAssembly SIMD has no byte multiply-add like AVX2's, so the bytes
/// are widened to 16 bits and `i32x4_dot_i16x8` sums pairs; adding neighbouring pairs gives the
/// same eight lane sums, and the float steps are the portable loop's. Like AVX2's, they take up
/// to four rows per pass, widening the activations once for all.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use std::arch::wasm32::*;

    use super::{ActivationBlock, block_start, half_at, sum_lanes};

    pub fn dot_q4_1(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
        group!(sums, q4_1_rows::<N>(weights, blocks))
    }

    pub fn dot_q5_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
        group!(sums, q5_0_rows::<N>(weights, blocks))
    }

    pub fn dot_q8_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
        group!(sums, q8_0_rows::<N>(weights, blocks))
    }

    /// 16 bytes (weights or activations) from the start of `bytes`.
    fn load<T>(bytes: &[T]) -> v128 {
        assert!(std::mem::size_of_val(bytes) >= 16);
        // SAFETY: 16 bytes are there (checked); v128_load reads unaligned.
        unsafe { v128_load(bytes.as_ptr() as *const v128) }
    }

    fn widen_signed(bytes: v128) -> [v128; 2] {
        [
            i16x8_extend_low_i8x16(bytes),
            i16x8_extend_high_i8x16(bytes),
        ]
    }

    fn widen_unsigned(bytes: v128) -> [v128; 2] {
        [
            u16x8_extend_low_u8x16(bytes),
            u16x8_extend_high_u8x16(bytes),
        ]
    }

    /// A block's 32 activations as four vectors of eight 16-bit values.
    fn widen_activations(activations: &ActivationBlock) -> [[v128; 2]; 2] {
        [
            widen_signed(load(&activations.qs[..16])),
            widen_signed(load(&activations.qs[16..])),
        ]
    }

    /// Sums of four neighbouring products of 16 widened weights and 16 widened activations.
    fn quad_sums(weights: [v128; 2], activations: [v128; 2]) -> v128 {
        let first = i32x4_dot_i16x8(weights[0], activations[0]);
        let second = i32x4_dot_i16x8(weights[1], activations[1]);
        i32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(first, second),
            i32x4_shuffle::<1, 3, 5, 7>(first, second),
        )
    }

    fn accumulate(lanes: &mut [v128; 2], scale: f32, sums: [v128; 2]) {
        for (total, sum) in lanes.iter_mut().zip(sums) {
            *total = f32x4_add(
                f32x4_mul(f32x4_splat(scale), f32x4_convert_i32x4(sum)),
                *total,
            );
        }
    }

    fn finish(lanes: [v128; 2]) -> f32 {
        let lane = |vector: v128, index: usize| match index {
            0 => f32x4_extract_lane::<0>(vector),
            1 => f32x4_extract_lane::<1>(vector),
            2 => f32x4_extract_lane::<2>(vector),
            _ => f32x4_extract_lane::<3>(vector),
        };
        sum_lanes(std::array::from_fn(|index| {
            lane(lanes[index / 4], index % 4)
        }))
    }

    fn block_at(
        weights: &[u8],
        row: usize,
        rows: usize,
        index: usize,
        block_bytes: usize,
    ) -> &[u8] {
        let start = block_start(row, rows, index, block_bytes);
        &weights[start..start + block_bytes]
    }

    fn q4_1_rows<const ROWS: usize>(weights: &[u8], blocks: &[ActivationBlock]) -> [f32; ROWS] {
        let mut lanes = [[f32x4_splat(0.0); 2]; ROWS];
        let mut offsets = [0f32; ROWS];
        for (index, activations) in blocks.iter().enumerate() {
            let values = widen_activations(activations);
            for row in 0..ROWS {
                let block = block_at(weights, row, ROWS, index, 20);
                let (d, m) = (half_at(block, 0), half_at(block, 2));
                let packed = load(&block[4..]);
                let (low, high) = (v128_and(packed, u8x16_splat(0x0f)), u8x16_shr(packed, 4));
                accumulate(
                    &mut lanes[row],
                    d * activations.d,
                    [
                        quad_sums(widen_unsigned(low), values[0]),
                        quad_sums(widen_unsigned(high), values[1]),
                    ],
                );
                offsets[row] += m * activations.scaled_sum;
            }
        }
        std::array::from_fn(|row| finish(lanes[row]) + offsets[row])
    }

    fn q5_0_rows<const ROWS: usize>(weights: &[u8], blocks: &[ActivationBlock]) -> [f32; ROWS] {
        let bit_of_byte = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        let mut lanes = [[f32x4_splat(0.0); 2]; ROWS];
        for (index, activations) in blocks.iter().enumerate() {
            let values = widen_activations(activations);
            for (row, lanes) in lanes.iter_mut().enumerate() {
                let block = block_at(weights, row, ROWS, index, 22);
                let packed = load(&block[6..]);
                let nibbles = [v128_and(packed, u8x16_splat(0x0f)), u8x16_shr(packed, 4)];
                let signed = |half: usize| {
                    let (first, second) = (block[2 + 2 * half], block[3 + 2 * half]);
                    let spread = u8x16(
                        first, first, first, first, first, first, first, first, second, second,
                        second, second, second, second, second, second,
                    );
                    let fifth = v128_and(
                        u8x16_ne(v128_and(spread, bit_of_byte), u8x16_splat(0)),
                        u8x16_splat(0x10),
                    );
                    widen_signed(i8x16_sub(v128_or(nibbles[half], fifth), i8x16_splat(16)))
                };
                accumulate(
                    lanes,
                    half_at(block, 0) * activations.d,
                    [
                        quad_sums(signed(0), values[0]),
                        quad_sums(signed(1), values[1]),
                    ],
                );
            }
        }
        lanes.map(finish)
    }

    fn q8_0_rows<const ROWS: usize>(weights: &[u8], blocks: &[ActivationBlock]) -> [f32; ROWS] {
        let mut lanes = [[f32x4_splat(0.0); 2]; ROWS];
        for (index, activations) in blocks.iter().enumerate() {
            let values = widen_activations(activations);
            for (row, lanes) in lanes.iter_mut().enumerate() {
                let block = block_at(weights, row, ROWS, index, 34);
                accumulate(
                    lanes,
                    half_at(block, 0) * activations.d,
                    [
                        quad_sums(widen_signed(load(&block[2..])), values[0]),
                        quad_sums(widen_signed(load(&block[18..])), values[1]),
                    ],
                );
            }
        }
        lanes.map(finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Weights and inputs with every nibble, every fifth bit and both signs.
    fn matrices(
        dtype: GgmlDType,
        rows: usize,
        columns: usize,
        input_rows: usize,
    ) -> (QTensor, Tensor) {
        let weights: Vec<f32> = (0..rows * columns)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
            .collect();
        let weights = Tensor::from_vec(weights, (rows, columns), &Device::Cpu).unwrap();
        let inputs: Vec<f32> = (0..input_rows * columns)
            .map(|i| ((i * 104729 % 997) as f32 / 498.5 - 1.0) * 3.0)
            .collect();
        let inputs = Tensor::from_vec(inputs, (input_rows, columns), &Device::Cpu).unwrap();
        (QTensor::quantize(&weights, dtype).unwrap(), inputs)
    }

    /// The products of the dequantised weights and the f32 inputs, within what quantising the
    /// inputs to 8 bits costs (1% of Σ|w·x|), like candle's own kernels; for one input row
    /// (decoding) and several (a prompt).
    #[test]
    fn products_are_those_of_the_dequantised_weights() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
            for input_rows in [1, 5] {
                let (weights, inputs) = matrices(dtype, 70, 256, input_rows);
                let dequantised = weights.dequantize(&Device::Cpu).unwrap();
                let exact = inputs.matmul(&dequantised.t().unwrap()).unwrap();
                let magnitude = inputs
                    .abs()
                    .unwrap()
                    .matmul(&dequantised.abs().unwrap().t().unwrap())
                    .unwrap();
                let ours = QuantMatMul::new(&weights)
                    .unwrap()
                    .unwrap()
                    .forward(&inputs)
                    .unwrap();
                let candle = candle_core::quantized::QMatMul::from_qtensor(weights).unwrap();
                let candle = candle_core::Module::forward(&candle, &inputs).unwrap();
                assert_eq!(ours.dims(), exact.dims());
                let flat = |tensor: &Tensor| -> Vec<f32> {
                    tensor.flatten_all().unwrap().to_vec1().unwrap()
                };
                for (((got, by_candle), want), magnitude) in flat(&ours)
                    .iter()
                    .zip(flat(&candle))
                    .zip(flat(&exact))
                    .zip(flat(&magnitude))
                {
                    let bound = 0.01 * magnitude;
                    assert!(
                        (got - want).abs() <= bound,
                        "{dtype:?}: {got}, exactly {want} (bound {bound})"
                    );
                    assert!(
                        (by_candle - want).abs() <= bound,
                        "{dtype:?}: candle {by_candle}, exactly {want}"
                    );
                }
            }
        }
    }

    /// A prompt's rows (several at once, in pairs where a kernel does pairs) get the very bits
    /// each row gets alone, as when decoding.
    #[test]
    fn rows_of_a_prompt_get_the_bits_of_one_row_alone() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
            let (weights, inputs) = matrices(dtype, 7, 256, 5);
            let matmul = QuantMatMul::new(&weights).unwrap().unwrap();
            let together = matmul.forward(&inputs).unwrap();
            for row in 0..5 {
                let alone = matmul.forward(&inputs.narrow(0, row, 1).unwrap()).unwrap();
                let bits = |tensor: &Tensor| -> Vec<u32> {
                    let values: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
                    values.into_iter().map(f32::to_bits).collect()
                };
                assert_eq!(
                    bits(&together.narrow(0, row, 1).unwrap()),
                    bits(&alone),
                    "{dtype:?}, row {row}"
                );
            }
        }
    }

    /// The scales' conversion agrees with the `half` crate's for every finite f16.
    #[test]
    fn f16_scales_convert_exactly() {
        for bits in 0..=u16::MAX {
            let reference = half::f16::from_bits(bits);
            if reference.is_finite() {
                assert_eq!(
                    f16_to_f32(bits).to_bits(),
                    reference.to_f32().to_bits(),
                    "{bits:#06x}"
                );
            }
        }
    }

    /// The AVX2 kernels and the portable ones (the browser's) give the same bits, for whole and
    /// partial groups of rows.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_and_portable_agree_to_the_bit() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        type Portable = fn(RowBlocks<'_>, &[ActivationBlock]) -> f32;
        let kinds: [(GgmlDType, Portable); 3] = [
            (GgmlDType::Q4_1, portable::dot_q4_1),
            (GgmlDType::Q5_0, portable::dot_q5_0),
            (GgmlDType::Q8_0, portable::dot_q8_0),
        ];
        for (dtype, portable) in kinds {
            let rows = 7;
            let (weights, inputs) = matrices(dtype, rows, 512, 1);
            let matmul = QuantMatMul::new(&weights).unwrap().unwrap();
            let inputs: Vec<f32> = inputs.flatten_all().unwrap().to_vec1().unwrap();
            let blocks: Vec<ActivationBlock> = inputs.chunks_exact(BLOCK).map(quantize).collect();
            let block_bytes = matmul.kind.block_bytes();
            let (first, rest) = matmul
                .weights
                .split_at(ROW_GROUP * 512 / BLOCK * block_bytes);
            let mut fast = vec![0f32; rows];
            let mut slow = vec![0f32; rows];
            for (group, range) in [(first, 0..ROW_GROUP), (rest, ROW_GROUP..rows)] {
                rows_function(matmul.kind)(group, &blocks, &mut fast[range.clone()]);
                each_row(group, &blocks, &mut slow[range], block_bytes, portable);
            }
            for (fast, slow) in fast.iter().zip(&slow) {
                assert_eq!(
                    fast.to_bits(),
                    slow.to_bits(),
                    "{dtype:?}: {fast} against {slow}"
                );
            }
        }
    }
}
