//! The 32-value kernels for several inputs with AVX-512 (F, BW and VNNI): a group's four rows
//! as two vectors of two rows, each row in its own 256-bit half with the eight lanes AVX2 gives
//! it, so that the sums are [`avx2`](super::avx2)'s — and the portable loop's — to the bit.
//!
//! A block's products are one `vpdpbusd`, whose first operand must be unsigned: Q4_1's nibbles
//! are; Q5_0 takes q in 0..32 and the −16 as −16·Σx added first (Σ(q − 16)·x exactly); Q8_0
//! takes the activations as x + 128 and −128·Σw added first. Where AVX2 spends a sign, two
//! multiplies and an add on each row and input, this is one instruction for two rows.

use std::arch::x86_64::*;

use super::avx2::{Kernel, block_unchecked, horizontal_sum, load_values, prefetch_ahead};
use super::blocks::{ActivationBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, ROW_GROUP};

/// A block type whose products take one `vpdpbusd` per pair of rows and input.
pub trait Pairs: Kernel {
    /// Two rows' blocks, prepared once for every input.
    type Weights: Copy;
    /// One input's block, prepared once for every pair of rows.
    type Input: Copy;

    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI.
    unsafe fn pair(first: &Self, second: &Self) -> Self::Weights;

    /// `values`: the block's 32 activations in both halves.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI.
    unsafe fn input(values: __m512i) -> Self::Input;

    /// The eight lane sums of each row.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI.
    unsafe fn lanes(weights: Self::Weights, input: Self::Input) -> __m512i;
}

/// Two blocks' 16 bytes of nibbles → each row's low nibbles then high ones, in its half.
#[target_feature(enable = "avx512f,avx512bw")]
fn unpack_pair(first: &[u8; 16], second: &[u8; 16]) -> __m512i {
    // SAFETY: the references hold the 16 bytes each load reads; loadu takes any alignment.
    let packed = unsafe { _mm256_loadu2_m128i(second.as_ptr().cast(), first.as_ptr().cast()) };
    // [first, second, first >> 4, second >> 4] in 128-bit quarters, put in row order.
    let both = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(packed),
        _mm256_srli_epi16::<4>(packed),
    );
    let ordered = _mm512_shuffle_i64x2::<0b11_01_10_00>(both, both);
    _mm512_and_si512(ordered, _mm512_set1_epi8(0x0f))
}

impl Pairs for BlockQ4_1 {
    type Weights = __m512i;
    type Input = __m512i;

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn pair(first: &Self, second: &Self) -> __m512i {
        unpack_pair(&first.qs, &second.qs)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn input(values: __m512i) -> __m512i {
        values
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn lanes(nibbles: __m512i, values: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles, values)
    }
}

impl Pairs for BlockQ5_0 {
    /// q in 0..32.
    type Weights = __m512i;
    /// The activations, and −16·Σx in each lane.
    type Input = (__m512i, __m512i);

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn pair(first: &Self, second: &Self) -> __m512i {
        // Bit i of the mask is value i's fifth bit: the first row's 32, then the second's.
        let fifth = first.fifth_bits() as u64 | (second.fifth_bits() as u64) << 32;
        let nibbles = unpack_pair(&first.qs, &second.qs);
        _mm512_mask_add_epi8(nibbles, fifth, nibbles, _mm512_set1_epi8(0x10))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn input(values: __m512i) -> (__m512i, __m512i) {
        let sixteen_times =
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(16), values);
        (
            values,
            _mm512_sub_epi32(_mm512_setzero_si512(), sixteen_times),
        )
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn lanes(quants: __m512i, (values, offset): (__m512i, __m512i)) -> __m512i {
        _mm512_dpbusd_epi32(offset, quants, values)
    }
}

impl Pairs for BlockQ8_0 {
    /// The signed weights, and −128·Σw in each lane.
    type Weights = (__m512i, __m512i);
    /// The activations as x + 128.
    type Input = __m512i;

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn pair(first: &Self, second: &Self) -> (__m512i, __m512i) {
        // SAFETY: each block's `qs` holds the 32 bytes read; loadu takes any alignment.
        let (first, second) = unsafe {
            (
                _mm256_loadu_si256(first.qs.as_ptr().cast()),
                _mm256_loadu_si256(second.qs.as_ptr().cast()),
            )
        };
        let weights = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(first), second);
        let times_128 =
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), weights);
        (weights, _mm512_sub_epi32(_mm512_setzero_si512(), times_128))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn input(values: __m512i) -> __m512i {
        _mm512_xor_si512(values, _mm512_set1_epi8(-128))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn lanes((weights, offset): (__m512i, __m512i), shifted: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(offset, shifted, weights)
    }
}

/// A whole group of [`ROW_GROUP`] rows against `INPUTS` inputs: `[input][row]` sums.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn group<B: Pairs, const INPUTS: usize>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
) -> [[f32; ROW_GROUP]; INPUTS] {
    const { assert!(ROW_GROUP == 4, "two pairs of rows") };
    let blocks = inputs[0].len();
    assert!(inputs.len() == INPUTS && inputs.iter().all(|input| input.len() == blocks));
    assert_eq!(weights.len(), ROW_GROUP * blocks * size_of::<B>());
    let mut lanes = [[_mm512_setzero_ps(); 2]; INPUTS];
    let mut offsets = [_mm_setzero_ps(); INPUTS];
    for index in 0..blocks {
        // SAFETY: row < ROW_GROUP and index < blocks: inside the length asserted above.
        let block = |row| unsafe { block_unchecked::<B>(weights, row, ROW_GROUP, index) };
        prefetch_ahead(block(0));
        let pairs = [0, 2].map(|row| {
            let (first, second) = (block(row), block(row + 1));
            let scales = _mm512_mask_blend_ps(
                0xff00,
                _mm512_set1_ps(first.scale()),
                _mm512_set1_ps(second.scale()),
            );
            // SAFETY: this function runs with the features `pair` needs.
            (unsafe { B::pair(first, second) }, scales)
        });
        let minimums = if B::OFFSET {
            _mm_setr_ps(
                block(0).offset(),
                block(1).offset(),
                block(2).offset(),
                block(3).offset(),
            )
        } else {
            _mm_setzero_ps()
        };
        for (input, lanes) in lanes.iter_mut().enumerate() {
            // SAFETY: index < blocks, the length of every input (asserted above).
            let activations = unsafe { inputs[input].get_unchecked(index) };
            let values = _mm512_broadcast_i64x4(load_values(activations));
            // SAFETY: this function runs with the features `input` needs.
            let prepared = unsafe { B::input(values) };
            let d = _mm512_set1_ps(activations.d);
            for (lanes, &(weights, scales)) in lanes.iter_mut().zip(&pairs) {
                // SAFETY: this function runs with the features `lanes` needs.
                let sums = _mm512_cvtepi32_ps(unsafe { B::lanes(weights, prepared) });
                *lanes = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(scales, d), sums), *lanes);
            }
            if B::OFFSET {
                offsets[input] = _mm_add_ps(
                    offsets[input],
                    _mm_mul_ps(minimums, _mm_set1_ps(activations.scaled_sum)),
                );
            }
        }
    }
    std::array::from_fn(|input| {
        let [first, second] = lanes[input];
        let halves = |pair: __m512| {
            let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(pair));
            [_mm512_castps512_ps256(pair), _mm256_castpd_ps(high)].map(|half| horizontal_sum(half))
        };
        let [a, b] = halves(first);
        let [c, d] = halves(second);
        let mut offset = [0f32; ROW_GROUP];
        // SAFETY: the array holds the four floats stored; storeu takes any alignment.
        unsafe { _mm_storeu_ps(offset.as_mut_ptr(), offsets[input]) };
        if B::OFFSET {
            [a + offset[0], b + offset[1], c + offset[2], d + offset[3]]
        } else {
            [a, b, c, d]
        }
    })
}

/// [`avx2::dot_inputs`](super::avx2::dot_inputs) for a whole group and 2 or 4 inputs: the same
/// bits.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI, and AVX2.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
pub unsafe fn dot_inputs<B: Pairs>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
    sums: &mut [[f32; ROW_GROUP]],
) {
    match inputs.len() {
        2 => sums.copy_from_slice(&group::<B, 2>(weights, inputs)),
        4 => sums.copy_from_slice(&group::<B, 4>(weights, inputs)),
        count => panic!("{count} inputs: the kernel takes 2 or 4"),
    }
}
