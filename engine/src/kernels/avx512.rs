//! The 32-value kernels for several inputs with AVX-512 (F, BW and VNNI): a group's four rows
//! against four inputs in one vector of sixteen lanes, lane `4·row + input`, each lane one
//! (row, input) pair's block sum — the exact integer the portable loop adds, so the float steps
//! that follow are its very ones.
//!
//! `vpdpbusd` adds four byte products into each lane: step k (of eight) meets bytes 4k..4k+4
//! of every row and every input. The weights' side of each step is laid out once per group in
//! a scratch buffer (row r's four bytes in every lane of quarter r), where the hundreds of
//! inputs of a prompt find it; the inputs' side is one permutation per step. The unsigned
//! operand is the activations as x + 128 (x ^ 0x80); the weights' 128·Σw is taken back by
//! starting each block's sums at −128·Σw. Where AVX2 spends nine instructions on a row and an
//! input, this spends about one.

use std::arch::x86_64::*;

use super::avx2::{Kernel, block_unchecked, load_values, prefetch_ahead};
use super::blocks::{ActivationBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, ROW_GROUP};

/// Inputs per pass: four rows × four inputs fill the sixteen lanes.
const INPUTS: usize = 4;

/// Steps of four bytes in a 32-value block.
const STEPS: usize = 8;

/// A block type whose weights unpack to signed bytes, two rows per vector.
pub trait Unpack: Kernel {
    /// Two rows' blocks as 32 signed bytes each, the first row in the low half.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW.
    unsafe fn unpack(first: &Self, second: &Self) -> __m512i;
}

/// Two blocks' 16 bytes of nibbles → each row's low nibbles then high ones, in its half.
#[target_feature(enable = "avx512f,avx512bw")]
fn unpack_nibbles(first: &[u8; 16], second: &[u8; 16]) -> __m512i {
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

impl Unpack for BlockQ4_1 {
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn unpack(first: &Self, second: &Self) -> __m512i {
        unpack_nibbles(&first.qs, &second.qs)
    }
}

impl Unpack for BlockQ5_0 {
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn unpack(first: &Self, second: &Self) -> __m512i {
        // Bit i of the mask is value i's fifth bit: the first row's 32, then the second's.
        let fifth = first.fifth_bits() as u64 | (second.fifth_bits() as u64) << 32;
        let nibbles = unpack_nibbles(&first.qs, &second.qs);
        let quants = _mm512_mask_add_epi8(nibbles, fifth, nibbles, _mm512_set1_epi8(0x10));
        _mm512_sub_epi8(quants, _mm512_set1_epi8(16))
    }
}

impl Unpack for BlockQ8_0 {
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn unpack(first: &Self, second: &Self) -> __m512i {
        // SAFETY: each block's `qs` holds the 32 bytes read; loadu takes any alignment.
        unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(first.qs.as_ptr().cast())),
                _mm256_loadu_si256(second.qs.as_ptr().cast()),
            )
        }
    }
}

/// One block of a group, laid out for every input to meet.
#[derive(Clone, Copy)]
struct Prepared {
    /// Step k: row r's bytes 4k..4k+4 in each lane of quarter r.
    steps: [__m512i; STEPS],
    /// −128·Σw of row r in quarter r: where each block's sums start.
    start: __m512i,
    /// Row r's scale in quarter r.
    scales: __m512,
    /// Row r's minimum in quarter r (Q4_1).
    minimums: __m512,
}

/// Four values, value r in every lane of quarter r.
#[target_feature(enable = "avx512f")]
fn by_quarter(values: [f32; 4]) -> __m512 {
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    // SAFETY: the array holds the four floats read; loadu takes any alignment.
    let values = unsafe { _mm_loadu_ps(values.as_ptr()) };
    _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(values))
}

/// Four values, value i in lane i of every quarter.
#[target_feature(enable = "avx512f")]
fn by_lane(values: [f32; 4]) -> __m512 {
    // SAFETY: the array holds the four floats read; loadu takes any alignment.
    _mm512_broadcast_f32x4(unsafe { _mm_loadu_ps(values.as_ptr()) })
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn prepare<B: Unpack>(rows: [&B; ROW_GROUP]) -> Prepared {
    // SAFETY: this function runs with the features `unpack` needs.
    let (low, high) = unsafe { (B::unpack(rows[0], rows[1]), B::unpack(rows[2], rows[3])) };
    let steps: [__m512i; STEPS] = std::array::from_fn(|k| {
        let pick = lanes(|lane| (8 * (lane / 4) + k) as i32);
        _mm512_permutex2var_epi32(low, pick, high)
    });
    let times_128 = steps.iter().fold(_mm512_setzero_si512(), |sums, &step| {
        _mm512_dpbusd_epi32(sums, _mm512_set1_epi8(-128), step)
    });
    Prepared {
        steps,
        start: _mm512_sub_epi32(_mm512_setzero_si512(), times_128),
        scales: by_quarter(rows.map(|block| block.scale())),
        minimums: if B::OFFSET {
            by_quarter(rows.map(|block| block.offset()))
        } else {
            _mm512_setzero_ps()
        },
    }
}

/// Four inputs' block (x + 128) for step k: input i's bytes 4k..4k+4 in lane i of every
/// quarter.
#[target_feature(enable = "avx512f")]
fn input_steps(first: __m512i, second: __m512i) -> [__m512i; STEPS] {
    std::array::from_fn(|k| {
        let pick = lanes(|lane| (8 * (lane % 4) + k) as i32);
        _mm512_permutex2var_epi32(first, pick, second)
    })
}

/// Sixteen 32-bit lanes, lane `l` holding `value(l)`.
#[target_feature(enable = "avx512f")]
fn lanes(value: impl Fn(usize) -> i32) -> __m512i {
    let values: [i32; 16] = std::array::from_fn(value);
    // SAFETY: the array holds the 64 bytes read; loadu takes any alignment.
    unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
}

/// Every input against a whole group of [`ROW_GROUP`] rows; `sums[input]` gets the group's
/// sums. Inputs are taken four at a time, the last ones repeated to fill the lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn group<B: Unpack>(weights: &[u8], inputs: &[&[ActivationBlock]], sums: &mut [[f32; ROW_GROUP]]) {
    const { assert!(ROW_GROUP == 4, "a quarter of sixteen lanes per row") };
    let blocks = inputs[0].len();
    assert!(inputs.iter().all(|input| input.len() == blocks) && sums.len() == inputs.len());
    assert_eq!(weights.len(), ROW_GROUP * blocks * size_of::<B>());
    let prepared: Vec<Prepared> = (0..blocks)
        .map(|index| {
            // SAFETY: row < ROW_GROUP and index < blocks: inside the length asserted above.
            let rows = std::array::from_fn(|row| unsafe {
                block_unchecked::<B>(weights, row, ROW_GROUP, index)
            });
            prefetch_ahead(rows[0]);
            prepare(rows)
        })
        .collect();
    let shift = _mm512_set1_epi8(-128);
    for first in (0..inputs.len()).step_by(INPUTS) {
        let chunk: [&[ActivationBlock]; INPUTS] =
            std::array::from_fn(|i| inputs[(first + i).min(inputs.len() - 1)]);
        let mut totals = _mm512_setzero_ps();
        let mut offsets = _mm512_setzero_ps();
        for (index, block) in prepared.iter().enumerate() {
            // SAFETY: index < blocks, the length of every input (asserted above).
            let activations = chunk.map(|input| unsafe { input.get_unchecked(index) });
            let pair = |a: &ActivationBlock, b: &ActivationBlock| {
                _mm512_xor_si512(
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load_values(a)), load_values(b)),
                    shift,
                )
            };
            let steps = input_steps(
                pair(activations[0], activations[1]),
                pair(activations[2], activations[3]),
            );
            // Two chains of four steps: the additions' latency half hidden.
            let mut even = block.start;
            let mut odd = _mm512_setzero_si512();
            for k in (0..STEPS).step_by(2) {
                even = _mm512_dpbusd_epi32(even, steps[k], block.steps[k]);
                odd = _mm512_dpbusd_epi32(odd, steps[k + 1], block.steps[k + 1]);
            }
            let block_sums = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
            let scales = _mm512_mul_ps(block.scales, by_lane(activations.map(|x| x.d)));
            totals = _mm512_add_ps(totals, _mm512_mul_ps(scales, block_sums));
            if B::OFFSET {
                offsets = _mm512_add_ps(
                    offsets,
                    _mm512_mul_ps(block.minimums, by_lane(activations.map(|x| x.scaled_sum))),
                );
            }
        }
        if B::OFFSET {
            totals = _mm512_add_ps(totals, offsets);
        }
        let mut lanes = [0f32; 16];
        // SAFETY: the array holds the sixteen floats stored; storeu takes any alignment.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), totals) };
        for (i, sums) in sums[first..].iter_mut().take(INPUTS).enumerate() {
            *sums = std::array::from_fn(|row| lanes[INPUTS * row + i]);
        }
    }
}

/// [`avx2::dot_inputs`](super::avx2::dot_inputs) for a whole group: the same bits.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI, and AVX2.
pub unsafe fn dot_inputs<B: Unpack>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
    sums: &mut [[f32; ROW_GROUP]],
) {
    // SAFETY: the features are present (the caller's promise).
    unsafe { group::<B>(weights, inputs, sums) }
}
