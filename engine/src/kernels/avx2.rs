//! Up to [`ROW_GROUP`](super::blocks::ROW_GROUP) rows at once with AVX2: each row keeps its own
//! eight lanes, added in the one-row order, while the activations (and what the rows share of
//! them) are loaded once for all.
//!
//! The functions are safe to call wherever AVX2 is enabled; callers outside such a function
//! check for it at run time first.

use std::arch::x86_64::*;

use super::blocks::{
    ActivationBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, ROW_GROUP, WeightBlock, block_start,
};

#[target_feature(enable = "avx2")]
pub fn dot_q4_1(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    group!(
        sums,
        input_rows::<BlockQ4_1, N, 1>(weights, N, 0, &[blocks])[0]
    )
}

#[target_feature(enable = "avx2")]
pub fn dot_q5_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    group!(
        sums,
        input_rows::<BlockQ5_0, N, 1>(weights, N, 0, &[blocks])[0]
    )
}

#[target_feature(enable = "avx2")]
pub fn dot_q8_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    group!(
        sums,
        input_rows::<BlockQ8_0, N, 1>(weights, N, 0, &[blocks])[0]
    )
}

/// Any number of input rows (a prompt's, or the next tokens of a batch of answers) against the
/// group: the same sums as one call to the one-input kernel per input, with each weight block
/// loaded and unpacked once for four or two of them. `sums[input]` gets the group's `rows`
/// sums.
///
/// # Safety
/// With `vnni`, the CPU has AVX-VNNI.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_inputs<B: Kernel>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
    sums: &mut [[f32; ROW_GROUP]],
    rows: usize,
    vnni: bool,
) {
    macro_rules! pass {
        ($rows:literal, $inputs:literal, $first:expr, $chunk:expr, $sums:expr) => {{
            let totals = if vnni {
                // SAFETY: AVX-VNNI is present (the caller's promise).
                unsafe { input_rows_vnni::<B, $rows, $inputs>(weights, rows, $first, $chunk) }
            } else {
                input_rows::<B, $rows, $inputs>(weights, rows, $first, $chunk)
            };
            place(totals, $sums, $first)
        }};
    }
    let mut first_input = 0;
    while first_input < inputs.len() {
        let count = match inputs.len() - first_input {
            4.. => 4,
            2 | 3 => 2,
            _ => 1,
        };
        let chunk = &inputs[first_input..first_input + count];
        let sums = &mut sums[first_input..first_input + count];
        // Eight pairs (input, row) at most, the lanes of one vector: four inputs take the group
        // two rows at a time (its weights are still in L1 for the second pass).
        match (count, rows) {
            (1, 4) => pass!(4, 1, 0, chunk, sums),
            (1, 3) => pass!(3, 1, 0, chunk, sums),
            (1, 2) => pass!(2, 1, 0, chunk, sums),
            (1, _) => pass!(1, 1, 0, chunk, sums),
            (2, 4) => pass!(4, 2, 0, chunk, sums),
            (2, 3) => pass!(3, 2, 0, chunk, sums),
            (2, 2) => pass!(2, 2, 0, chunk, sums),
            (2, _) => pass!(1, 2, 0, chunk, sums),
            _ => {
                let mut first = 0;
                while first + 2 <= rows {
                    pass!(2, 4, first, chunk, sums);
                    first += 2;
                }
                if first < rows {
                    pass!(1, 4, first, chunk, sums);
                }
            }
        }
        first_input += count;
    }
}

fn place<const ROWS: usize, const INPUTS: usize>(
    totals: [[f32; ROWS]; INPUTS],
    sums: &mut [[f32; ROW_GROUP]],
    first_row: usize,
) {
    for (sums, totals) in sums.iter_mut().zip(totals) {
        sums[first_row..first_row + ROWS].copy_from_slice(&totals);
    }
}

/// How far ahead of the kernel the weights are asked into the cache. Without it the kernel
/// waited on memory most of the time: the hardware's prefetcher stops at each 4 KiB page.
/// Measured on the llama-1b shape (Q4_K/Q6_K), 2 threads: decode 19.6 → 25.0 tok/s at 2 KiB,
/// 26.0 at 4 KiB.
const PREFETCH_BYTES: usize = 4096;

/// Asks for the cache line `PREFETCH_BYTES` after `at`: the weights are read in one stream.
#[target_feature(enable = "avx2")]
pub(crate) fn prefetch_ahead<T>(at: *const T) {
    let ahead = at.cast::<i8>().wrapping_add(PREFETCH_BYTES);
    // A prefetch never faults, even past the end of the weights.
    _mm_prefetch::<_MM_HINT_T0>(ahead);
}

/// 16 bytes of nibbles → 32 bytes: the low nibbles, then the high ones.
#[target_feature(enable = "avx2")]
fn unpack_nibbles(packed: &[u8; 16]) -> __m256i {
    // SAFETY: the reference holds the 16 bytes read; loadu takes any alignment.
    let packed = unsafe { _mm_loadu_si128(packed.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Products of unsigned `weights` and signed `activations`, four by four into eight lanes.
#[target_feature(enable = "avx2")]
fn lane_sums(weights: __m256i, activations: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(weights, activations);
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// Each vector's eight lanes added up: lane p of the result is vector p's sum; past `used`
/// (the vectors that are not zero) nothing is added. The sums are exact integers, so the order
/// does not matter.
#[target_feature(enable = "avx2")]
fn block_sums(lanes: [__m256i; 8], used: usize) -> __m256i {
    let lane = |p: usize| lanes[p];
    // [v0 0..4, v1 0..4, v2 0..4, v3 0..4 | the same of lanes 4..8], and so on for v4..v8.
    let quads = |p: usize| {
        _mm256_hadd_epi32(
            _mm256_hadd_epi32(lane(p), lane(p + 1)),
            _mm256_hadd_epi32(lane(p + 2), lane(p + 3)),
        )
    };
    if used <= 4 {
        let first = quads(0);
        _mm256_zextsi128_si256(_mm_add_epi32(
            _mm256_castsi256_si128(first),
            _mm256_extracti128_si256::<1>(first),
        ))
    } else {
        let (first, second) = (quads(0), quads(4));
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(first, second),
            _mm256_permute2x128_si256::<0x31>(first, second),
        )
    }
}

#[target_feature(enable = "avx2")]
pub(super) fn load_values(activations: &ActivationBlock) -> __m256i {
    // SAFETY: `qs` holds the 32 bytes read; loadu takes any alignment.
    unsafe { _mm256_loadu_si256(activations.qs.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn load_q8_0(block: &BlockQ8_0) -> __m256i {
    // SAFETY: `qs` holds the 32 bytes read; loadu takes any alignment.
    unsafe { _mm256_loadu_si256(block.qs.as_ptr().cast()) }
}

/// Block `index` of row `row` in an interleaved group of `rows` rows, without a bounds check
/// (this loop is the decoder's hottest).
///
/// # Safety
/// The group holds that block: `(index * rows + row + 1) · size_of::<B>() <= group.len()`.
pub(super) unsafe fn block_unchecked<B: WeightBlock>(
    group: &[u8],
    row: usize,
    rows: usize,
    index: usize,
) -> &B {
    let start = block_start::<B>(row, rows, index);
    // SAFETY: in bounds (the caller's promise); B has alignment 1 and takes any bits
    // (`Plain`'s contract).
    unsafe { &*group.as_ptr().add(start).cast::<B>() }
}

/// What one quantisation's kernel does with a block; [`input_rows`] runs the loop all share.
pub trait Kernel: WeightBlock {
    /// Q4_1's minimum: `m · d·Σx` per block, summed apart from the lanes.
    const OFFSET: bool = false;
    /// The block's weights as the products need them, worked out once for every input.
    type Prepared: Copy;

    /// # Safety
    /// The CPU has AVX2.
    unsafe fn prepare(&self) -> Self::Prepared;

    /// The unsigned weights and the signed activations whose products, four by four into eight
    /// integer lanes, are the block's.
    ///
    /// # Safety
    /// The CPU has AVX2.
    unsafe fn operands(prepared: Self::Prepared, values: __m256i) -> (__m256i, __m256i);

    fn offset(&self) -> f32 {
        0.0
    }
}

impl Kernel for BlockQ4_1 {
    const OFFSET: bool = true;
    type Prepared = __m256i;

    #[target_feature(enable = "avx2")]
    unsafe fn prepare(&self) -> __m256i {
        unpack_nibbles(&self.qs)
    }

    #[target_feature(enable = "avx2")]
    unsafe fn operands(nibbles: __m256i, values: __m256i) -> (__m256i, __m256i) {
        (nibbles, values)
    }

    fn offset(&self) -> f32 {
        self.minimum()
    }
}

/// Signed weights `w` as maddubs wants them: |w|, and `(w, |w|)` from which each input's signs
/// follow.
#[target_feature(enable = "avx2")]
fn magnitudes(weights: __m256i) -> (__m256i, __m256i) {
    (weights, _mm256_sign_epi8(weights, weights))
}

/// The activations with the weights' signs moved onto them.
#[target_feature(enable = "avx2")]
fn signed_operands(
    (weights, magnitudes): (__m256i, __m256i),
    values: __m256i,
) -> (__m256i, __m256i) {
    (magnitudes, _mm256_sign_epi8(values, weights))
}

impl Kernel for BlockQ5_0 {
    /// The weights as q − 16, in −16..16.
    type Prepared = (__m256i, __m256i);

    #[target_feature(enable = "avx2")]
    unsafe fn prepare(&self) -> (__m256i, __m256i) {
        // Byte i of the 32 picks byte i/8 of the fifth bits; OR-ing every bit but bit i%8
        // and comparing with all-ones tells whether that bit is set.
        let spread = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        );
        let other_bits = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
        let set = _mm256_cmpeq_epi8(
            _mm256_or_si256(
                _mm256_shuffle_epi8(_mm256_set1_epi32(self.fifth_bits() as i32), spread),
                other_bits,
            ),
            _mm256_set1_epi64x(-1),
        );
        let quants = _mm256_or_si256(
            unpack_nibbles(&self.qs),
            _mm256_and_si256(set, _mm256_set1_epi8(0x10)),
        );
        magnitudes(_mm256_sub_epi8(quants, _mm256_set1_epi8(16)))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn operands(prepared: (__m256i, __m256i), values: __m256i) -> (__m256i, __m256i) {
        signed_operands(prepared, values)
    }
}

impl Kernel for BlockQ8_0 {
    type Prepared = (__m256i, __m256i);

    #[target_feature(enable = "avx2")]
    unsafe fn prepare(&self) -> (__m256i, __m256i) {
        magnitudes(load_q8_0(self))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn operands(prepared: (__m256i, __m256i), values: __m256i) -> (__m256i, __m256i) {
        signed_operands(prepared, values)
    }
}

/// `value(input, row)` in lane `input · ROWS + row`, zero past the pairs.
#[target_feature(enable = "avx2")]
fn by_pair<const ROWS: usize, const INPUTS: usize>(value: impl Fn(usize, usize) -> f32) -> __m256 {
    let lane = |lane: usize| {
        if lane < ROWS * INPUTS {
            value(lane / ROWS, lane % ROWS)
        } else {
            0.0
        }
    };
    _mm256_setr_ps(
        lane(0),
        lane(1),
        lane(2),
        lane(3),
        lane(4),
        lane(5),
        lane(6),
        lane(7),
    )
}

/// Defines a function computing rows `first_row..first_row + ROWS` of a group of `group_rows`
/// against `INPUTS` inputs (at most eight pairs), with `$features` enabled and `$lane_sums`
/// multiplying. Each block's sums of the pairs (input, row) are added up into one vector, lane
/// `input · ROWS + row`, which then takes the portable loop's float steps.
macro_rules! input_rows {
    ($name:ident, $features:literal, $lane_sums:ident) => {
        #[target_feature(enable = $features)]
        fn $name<B: Kernel, const ROWS: usize, const INPUTS: usize>(
            weights: &[u8],
            group_rows: usize,
            first_row: usize,
            inputs: &[&[ActivationBlock]],
        ) -> [[f32; ROWS]; INPUTS] {
            const { assert!(ROWS * INPUTS <= 8, "eight lanes") };
            let blocks = inputs[0].len();
            assert!(inputs.len() == INPUTS && inputs.iter().all(|input| input.len() == blocks));
            assert!(first_row + ROWS <= group_rows);
            assert_eq!(weights.len(), group_rows * blocks * size_of::<B>());
            let mut totals = _mm256_setzero_ps();
            let mut offsets = _mm256_setzero_ps();
            for index in 0..blocks {
                let activations: [&ActivationBlock; INPUTS] = std::array::from_fn(|input| {
                    // SAFETY: index < blocks, the length of every input (asserted above).
                    unsafe { inputs[input].get_unchecked(index) }
                });
                let values = activations.map(|activations| load_values(activations));
                prefetch_ahead(
                    weights
                        .as_ptr()
                        .wrapping_add(block_start::<B>(first_row, group_rows, index)),
                );
                let rows: [&B; ROWS] = std::array::from_fn(|row| {
                    // SAFETY: first_row + row < group_rows and index < blocks: inside the
                    // length asserted above.
                    unsafe { block_unchecked(weights, first_row + row, group_rows, index) }
                });
                let mut lanes = [[_mm256_setzero_si256(); ROWS]; INPUTS];
                for (row, block) in rows.iter().enumerate() {
                    // SAFETY: this function runs with AVX2 enabled.
                    let prepared = unsafe { block.prepare() };
                    for input in 0..INPUTS {
                        // SAFETY: this function runs with AVX2 enabled.
                        let (weights, values) = unsafe { B::operands(prepared, values[input]) };
                        lanes[input][row] = $lane_sums(weights, values);
                    }
                }
                let sums = block_sums(
                    std::array::from_fn(|lane| {
                        lanes
                            .get(lane / ROWS)
                            .map_or(_mm256_setzero_si256(), |lanes| lanes[lane % ROWS])
                    }),
                    ROWS * INPUTS,
                );
                let scales = _mm256_mul_ps(
                    by_pair::<ROWS, INPUTS>(|_, row| rows[row].scale()),
                    by_pair::<ROWS, INPUTS>(|input, _| activations[input].d),
                );
                totals = _mm256_add_ps(totals, _mm256_mul_ps(scales, _mm256_cvtepi32_ps(sums)));
                if B::OFFSET {
                    offsets = _mm256_add_ps(
                        offsets,
                        _mm256_mul_ps(
                            by_pair::<ROWS, INPUTS>(|_, row| rows[row].offset()),
                            by_pair::<ROWS, INPUTS>(|input, _| activations[input].scaled_sum),
                        ),
                    );
                }
            }
            if B::OFFSET {
                totals = _mm256_add_ps(totals, offsets);
            }
            let mut lanes = [0f32; 8];
            // SAFETY: the array holds the eight floats stored; storeu takes any alignment.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), totals) };
            std::array::from_fn(|input| std::array::from_fn(|row| lanes[input * ROWS + row]))
        }
    };
}

input_rows!(input_rows, "avx2", lane_sums);
input_rows!(input_rows_vnni, "avx2,avxvnni", lane_sums_vnni);

/// [`lane_sums`] in one instruction (AVX-VNNI): the same exact integers, as the products of
/// weights up to 128 and activations up to 127 never saturate maddubs's 16-bit pairs.
#[target_feature(enable = "avx2,avxvnni")]
fn lane_sums_vnni(weights: __m256i, activations: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), weights, activations)
}
