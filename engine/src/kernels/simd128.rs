//! The browser's kernels: WebAssembly SIMD has no byte multiply-add like AVX2's, so the bytes
//! are widened to 16 bits and `i32x4_dot_i16x8` sums pairs. Each block's sums of up to four
//! rows are added up into one vector, lane r for row r — the exact integers of the portable
//! loop — which then takes its float steps for the four rows at once. Like AVX2's, they take up
//! to four rows per pass, widening the activations once for all, and a prompt's rows four at
//! a time, unpacking the weights once for all.
//!
//! Browsers with relaxed SIMD get a bundle of their own (feature `relaxed-simd`), where Q4_1 and
//! Q5_0 blocks take `i32x4.relaxed_dot_i8x16_i7x16_add`: a multiply-add of bytes, exact when one
//! side's values fit 7 bits, as their unsigned values do ([`SevenBit`]). Its results differ
//! between machines only for bytes over 127, which these kernels never give it.

use std::arch::wasm32::*;

use super::blocks::{
    ActivationBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, ROW_GROUP, WeightBlock, block_in_group,
};

/// A group of 1 to [`ROW_GROUP`] rows (`sums.len()`) against one input row.
pub fn dot<B: Unpack>(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    dot_with::<B, Widened>(weights, blocks, sums)
}

/// [`dot`] with relaxed SIMD's byte products.
#[cfg(feature = "relaxed-simd")]
#[target_feature(enable = "relaxed-simd")]
pub fn relaxed_dot<B: SevenBit>(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    dot_with::<B, ByteDot>(weights, blocks, sums)
}

/// Any number of input rows (a prompt's) against a group of `rows` rows: the sums of [`dot`]
/// for each, with each weight block unpacked once for four inputs where the group is whole.
/// Unpacking is most of a block's instructions here (WebAssembly multiplies no bytes), so the
/// browser read a prompt hardly faster than it decoded.
pub fn dot_inputs<B: Unpack>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
    sums: &mut [[f32; ROW_GROUP]],
    rows: usize,
) {
    dot_inputs_with::<B, Widened>(weights, inputs, sums, rows)
}

/// [`dot_inputs`] with relaxed SIMD's byte products.
#[cfg(feature = "relaxed-simd")]
#[target_feature(enable = "relaxed-simd")]
pub fn relaxed_dot_inputs<B: SevenBit>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
    sums: &mut [[f32; ROW_GROUP]],
    rows: usize,
) {
    dot_inputs_with::<B, ByteDot>(weights, inputs, sums, rows)
}

// Always inlined, here and below: into the relaxed kernels, whose target feature the byte
// products need, and which cannot inline a function compiled without it.
#[inline(always)]
fn dot_with<B: Unpack, P: Products<B>>(
    weights: &[u8],
    blocks: &[ActivationBlock],
    sums: &mut [f32],
) {
    group!(sums, rows_and_inputs::<B, P, N, 1>(weights, [blocks])[0])
}

/// Input rows taken at once by [`dot_inputs`].
const SEVERAL_INPUTS: usize = 4;

#[inline(always)]
fn dot_inputs_with<B: Unpack, P: Products<B>>(
    weights: &[u8],
    inputs: &[&[ActivationBlock]],
    sums: &mut [[f32; ROW_GROUP]],
    rows: usize,
) {
    let mut done = 0;
    if rows == ROW_GROUP {
        for (chunk, sums) in inputs
            .chunks_exact(SEVERAL_INPUTS)
            .zip(sums.chunks_exact_mut(SEVERAL_INPUTS))
        {
            let chunk = std::array::from_fn(|input| chunk[input]);
            sums.copy_from_slice(&rows_and_inputs::<B, P, ROW_GROUP, SEVERAL_INPUTS>(
                weights, chunk,
            ));
            done += SEVERAL_INPUTS;
        }
    }
    for (input, sums) in inputs[done..].iter().zip(&mut sums[done..]) {
        dot_with::<B, P>(weights, input, &mut sums[..rows]);
    }
}

/// 16 bytes (weights or activations).
fn load<T: Copy>(bytes: &[T; 16]) -> v128 {
    // SAFETY: the reference holds the 16 bytes read; v128_load takes any alignment.
    unsafe { v128_load(bytes.as_ptr().cast()) }
}

/// The `half`-th 16 of a block's 32 values.
fn half_of<T: Copy>(values: &[T; 32], half: usize) -> &[T; 16] {
    values[16 * half..16 * half + 16]
        .try_into()
        .expect("16 of 32")
}

fn widen_signed(bytes: v128) -> [v128; 2] {
    [
        i16x8_extend_low_i8x16(bytes),
        i16x8_extend_high_i8x16(bytes),
    ]
}

/// Each row's partial sums added up: lane r is row r's block sum (zero past `ROWS`).
fn block_sums<const ROWS: usize>(rows: [v128; ROWS]) -> v128 {
    let row = |r: usize| rows.get(r).copied().unwrap_or(i32x4_splat(0));
    let pairs = |a: v128, b: v128| {
        i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(a, b),
            i32x4_shuffle::<2, 6, 3, 7>(a, b),
        )
    };
    let (first, second) = (pairs(row(0), row(1)), pairs(row(2), row(3)));
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(first, second),
        i32x4_shuffle::<2, 3, 6, 7>(first, second),
    )
}

/// An f16 per row, lane r for row r (zero past `ROWS`), converted four at a time with
/// [`super::lanes::f16_to_f32`]'s steps: one at a time, the conversions of a group's scales
/// and minimums were near half of the instructions of its Q4_1 block products.
fn f16_by_row<const ROWS: usize>(bits: impl Fn(usize) -> u16) -> v128 {
    let lane = |r: usize| if r < ROWS { u32::from(bits(r)) } else { 0 };
    let bits = u32x4(lane(0), lane(1), lane(2), lane(3));
    let magnitude = f32x4_mul(
        i32x4_shl(v128_and(bits, u32x4_splat(0x7fff)), 13),
        f32x4_splat(f32::from_bits(0x7780_0000)),
    );
    v128_or(
        magnitude,
        i32x4_shl(v128_and(bits, u32x4_splat(0x8000)), 16),
    )
}

/// `totals + (d·dx)·Σ` for each row, as the portable loop adds.
fn accumulate(totals: v128, scales: v128, dx: f32, sums: v128) -> v128 {
    f32x4_add(
        totals,
        f32x4_mul(
            f32x4_mul(scales, f32x4_splat(dx)),
            f32x4_convert_i32x4(sums),
        ),
    )
}

fn lanes<const ROWS: usize>(totals: v128) -> [f32; ROWS] {
    let lane = |r: usize| match r {
        0 => f32x4_extract_lane::<0>(totals),
        1 => f32x4_extract_lane::<1>(totals),
        2 => f32x4_extract_lane::<2>(totals),
        _ => f32x4_extract_lane::<3>(totals),
    };
    std::array::from_fn(lane)
}

/// The blocks `index` of the group's rows.
fn rows_of<B: WeightBlock, const ROWS: usize>(weights: &[u8], index: usize) -> [&B; ROWS] {
    std::array::from_fn(|row| block_in_group(weights, row, ROWS, index))
}

/// A Q4_1 or Q5_0 block's 16 bytes of nibbles read as eight 16-bit lanes, each holding two
/// bytes, and so four nibbles, which 16-bit shifts and masks take apart without widening a
/// byte: values 2k, 2k + 1, 16 + 2k and 17 + 2k in lane k of the four vectors. A third fewer
/// instructions per block than masking the bytes and widening them (x86 has no byte shift, and
/// a high half widens in two).
fn nibbles_by_parity(packed: v128) -> [v128; 4] {
    let nibble = u16x8_splat(0x0f);
    [
        v128_and(packed, nibble),
        v128_and(u16x8_shr(packed, 8), nibble),
        v128_and(u16x8_shr(packed, 4), nibble),
        u16x8_shr(packed, 12),
    ]
}

/// The block's activations widened in [`nibbles_by_parity`]' order: each half's even-numbered
/// values, then its odd-numbered ones. The products are the same integers, paired otherwise,
/// and their sum is exact.
fn activations_by_parity(activations: &ActivationBlock) -> [v128; 4] {
    let [first, second] = [0, 1].map(|half| {
        let bytes = load(half_of(&activations.qs, half));
        let split =
            i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15>(bytes, bytes);
        widen_signed(split)
    });
    [first[0], first[1], second[0], second[1]]
}

/// A Q5_0 block's values `q − 16` in [`nibbles_by_parity`]' order. Value i's fifth bit is bit
/// i of the block's 32: each lane tests its own bit of a 16-bit half and takes 16 away where
/// it is clear — in place of building two byte vectors from the bits (16 lane inserts) and
/// widening (Qwen2.5-0.5B's Q4_K_M file holds most of its matrices in Q5_0: 38% of the
/// browser's time was this loop).
fn q5_0_by_parity(block: &BlockQ5_0) -> [v128; 4] {
    let fifth_bits = block.fifth_bits();
    let halves = [
        u16x8_splat(fifth_bits as u16),
        u16x8_splat((fifth_bits >> 16) as u16),
    ];
    let even_bits = u16x8(
        1 << 0,
        1 << 2,
        1 << 4,
        1 << 6,
        1 << 8,
        1 << 10,
        1 << 12,
        1 << 14,
    );
    let odd_bits = u16x8_shl(even_bits, 1);
    let nibbles = nibbles_by_parity(load(&block.qs));
    let tests = [
        (halves[0], even_bits),
        (halves[0], odd_bits),
        (halves[1], even_bits),
        (halves[1], odd_bits),
    ];
    std::array::from_fn(|j| {
        let (half, bits) = tests[j];
        let clear = i16x8_eq(v128_and(half, bits), i16x8_splat(0));
        i16x8_add(nibbles[j], v128_and(clear, i16x8_splat(-16)))
    })
}

/// What the kernel does with each quantisation's blocks.
pub trait Unpack: WeightBlock {
    /// Q4_1's minimum: `m · d·Σx` per block, added up apart from the products.
    const OFFSET: bool = false;

    /// The block's 32 weights as four vectors of eight 16-bit values, in the order of
    /// [`Self::activations`].
    fn weights(&self) -> [v128; 4];

    /// A block of activations in the order of [`Self::weights`].
    fn activations(activations: &ActivationBlock) -> [v128; 4];

    /// Q4_1's minimum, as f16 bits.
    fn offset_bits(&self) -> u16 {
        0
    }
}

impl Unpack for BlockQ4_1 {
    const OFFSET: bool = true;

    fn weights(&self) -> [v128; 4] {
        nibbles_by_parity(load(&self.qs))
    }

    fn activations(activations: &ActivationBlock) -> [v128; 4] {
        activations_by_parity(activations)
    }

    fn offset_bits(&self) -> u16 {
        self.minimum_bits()
    }
}

impl Unpack for BlockQ5_0 {
    fn weights(&self) -> [v128; 4] {
        q5_0_by_parity(self)
    }

    fn activations(activations: &ActivationBlock) -> [v128; 4] {
        activations_by_parity(activations)
    }
}

impl Unpack for BlockQ8_0 {
    fn weights(&self) -> [v128; 4] {
        in_order(&self.qs)
    }

    fn activations(activations: &ActivationBlock) -> [v128; 4] {
        in_order(&activations.qs)
    }
}

/// 32 signed bytes widened to 16 bits, in their order.
fn in_order(bytes: &[i8; 32]) -> [v128; 4] {
    let [first, second] = [0, 1].map(|half| widen_signed(load(half_of(bytes, half))));
    [first[0], first[1], second[0], second[1]]
}

/// How a block's products are summed, for one row: a vector of exact partial sums of integers,
/// which [`block_sums`] adds up with the other rows'.
trait Products<B> {
    /// A weight block, unpacked once for every input.
    type Weights: Copy;
    /// An activation block, unpacked once for every row.
    type Activations: Copy;
    fn weights(block: &B) -> Self::Weights;
    fn activations(block: &ActivationBlock) -> Self::Activations;
    fn sums(weights: Self::Weights, activations: Self::Activations) -> v128;
}

/// Every browser's: bytes widened to 16 bits, products summed in pairs.
struct Widened;

impl<B: Unpack> Products<B> for Widened {
    type Weights = [v128; 4];
    type Activations = [v128; 4];

    #[inline(always)]
    fn weights(block: &B) -> [v128; 4] {
        block.weights()
    }

    #[inline(always)]
    fn activations(block: &ActivationBlock) -> [v128; 4] {
        B::activations(block)
    }

    #[inline(always)]
    fn sums(weights: [v128; 4], activations: [v128; 4]) -> v128 {
        i32x4_add(
            i32x4_add(
                i32x4_dot_i16x8(weights[0], activations[0]),
                i32x4_dot_i16x8(weights[1], activations[1]),
            ),
            i32x4_add(
                i32x4_dot_i16x8(weights[2], activations[2]),
                i32x4_dot_i16x8(weights[3], activations[3]),
            ),
        )
    }
}

/// Blocks whose values, plus an excess, fit 7 bits: Q4_1's nibbles (0–15) and Q5_0's five-bit
/// values before 16 is taken away (0–31). `Σ (q − excess)·x = Σ q·x − excess·Σ x`, exactly.
#[cfg(feature = "relaxed-simd")]
pub trait SevenBit: Unpack {
    /// What the unsigned values exceed the block's values by.
    const EXCESS: i8;

    /// The block's values plus [`Self::EXCESS`], as bytes in order: values 0–15, then 16–31.
    fn excess_values(&self) -> [v128; 2];
}

#[cfg(feature = "relaxed-simd")]
impl SevenBit for BlockQ4_1 {
    const EXCESS: i8 = 0;

    #[inline(always)]
    fn excess_values(&self) -> [v128; 2] {
        nibbles_in_order(&self.qs)
    }
}

#[cfg(feature = "relaxed-simd")]
impl SevenBit for BlockQ5_0 {
    const EXCESS: i8 = 16;

    #[inline(always)]
    fn excess_values(&self) -> [v128; 2] {
        let fifth_bits = self.fifth_bits();
        // Byte i of a half tests bit i of the half's 16 bits.
        let bit_of_byte = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        let sixteens = |bits: u32| {
            let bits = u16x8_splat(bits as u16);
            let spread =
                i8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(bits, bits);
            v128_and(
                i8x16_eq(v128_and(spread, bit_of_byte), bit_of_byte),
                u8x16_splat(16),
            )
        };
        let [low, high] = nibbles_in_order(&self.qs);
        [
            v128_or(low, sixteens(fifth_bits)),
            v128_or(high, sixteens(fifth_bits >> 16)),
        ]
    }
}

/// A block's 16 bytes of nibbles as its values 0–15 (the low nibbles) and 16–31, a byte each.
#[cfg(feature = "relaxed-simd")]
#[inline(always)]
fn nibbles_in_order(packed: &[u8; 16]) -> [v128; 2] {
    let packed = load(packed);
    let nibble = u8x16_splat(0x0f);
    [
        v128_and(packed, nibble),
        v128_and(u16x8_shr(packed, 4), nibble),
    ]
}

/// Relaxed SIMD's: products of bytes added four to a lane, the weights' side unsigned.
#[cfg(feature = "relaxed-simd")]
struct ByteDot;

#[cfg(feature = "relaxed-simd")]
impl<B: SevenBit> Products<B> for ByteDot {
    type Weights = [v128; 2];
    /// The activations' two halves, and `excess·Σx` in the lanes of the products.
    type Activations = ([v128; 2], v128);

    #[inline(always)]
    fn weights(block: &B) -> [v128; 2] {
        block.excess_values()
    }

    #[inline(always)]
    fn activations(block: &ActivationBlock) -> ([v128; 2], v128) {
        let halves = [0, 1].map(|half| load(half_of(&block.qs, half)));
        let excess = if B::EXCESS == 0 {
            i32x4_splat(0)
        } else {
            byte_products([i8x16_splat(B::EXCESS); 2], halves)
        };
        (halves, excess)
    }

    #[inline(always)]
    fn sums(weights: [v128; 2], (activations, excess): ([v128; 2], v128)) -> v128 {
        let products = byte_products(weights, activations);
        if B::EXCESS == 0 {
            products
        } else {
            i32x4_sub(products, excess)
        }
    }
}

/// Each lane: the sum of four lanes' products of bytes, over both halves of a block. Exact:
/// the weights' bytes are at most 31 and the activations' at most 127 apart from their sign,
/// so no 16-bit pair sum saturates.
#[cfg(feature = "relaxed-simd")]
#[inline(always)]
fn byte_products(weights: [v128; 2], activations: [v128; 2]) -> v128 {
    i32x4_relaxed_dot_i8x16_i7x16_add(
        activations[1],
        weights[1],
        i32x4_relaxed_dot_i8x16_i7x16_add(activations[0], weights[0], i32x4_splat(0)),
    )
}

/// `ROWS` rows of a group against `INPUTS` input rows, `[input][row]`: each input's sums
/// take the same float steps, in the same order, as when it is alone.
#[inline(always)]
fn rows_and_inputs<B: Unpack, P: Products<B>, const ROWS: usize, const INPUTS: usize>(
    weights: &[u8],
    inputs: [&[ActivationBlock]; INPUTS],
) -> [[f32; ROWS]; INPUTS] {
    let mut totals = [f32x4_splat(0.0); INPUTS];
    let mut offsets = [f32x4_splat(0.0); INPUTS];
    for index in 0..inputs[0].len() {
        let rows: [&B; ROWS] = rows_of(weights, index);
        let unpacked = rows.map(P::weights);
        let scales = f16_by_row::<ROWS>(|row| rows[row].scale_bits());
        let minimums = f16_by_row::<ROWS>(|row| rows[row].offset_bits());
        for (input, (totals, offsets)) in inputs.iter().zip(totals.iter_mut().zip(&mut offsets)) {
            let activations = &input[index];
            let values = P::activations(activations);
            let sums = unpacked.map(|weights| P::sums(weights, values));
            *totals = accumulate(*totals, scales, activations.d, block_sums(sums));
            if B::OFFSET {
                *offsets = f32x4_add(
                    *offsets,
                    f32x4_mul(minimums, f32x4_splat(activations.scaled_sum)),
                );
            }
        }
    }
    std::array::from_fn(|input| {
        lanes(if B::OFFSET {
            f32x4_add(totals[input], offsets[input])
        } else {
            totals[input]
        })
    })
}

/// Four floats.
fn floats(values: &[f32]) -> v128 {
    let values: &[f32; 4] = values.try_into().expect("four floats");
    // SAFETY: the array holds the four floats read; v128_load takes any alignment.
    unsafe { v128_load(values.as_ptr().cast()) }
}

/// [`super::lanes::dots`] for `query.len()` a multiple of 8: each key's eight lane sums held in
/// two vectors (lanes 0–3 and 4–7), then added as [`super::lanes::sum_lanes`] does. The browser
/// spent a sixth of a long conversation's decode in attention's scalar loops.
pub fn dots(query: &[f32], keys: &[f32], scores: &mut [f32]) {
    let dim = query.len();
    for (score, key) in scores.iter_mut().zip(keys.chunks_exact(dim)) {
        let (mut low, mut high) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for (query, key) in query.chunks_exact(8).zip(key.chunks_exact(8)) {
            low = f32x4_add(low, f32x4_mul(floats(&query[..4]), floats(&key[..4])));
            high = f32x4_add(high, f32x4_mul(floats(&query[4..]), floats(&key[4..])));
        }
        // Halves (lane i with lane i + 4), then pairs (0 with 2, 1 with 3), then the last two.
        let quarters = f32x4_add(low, high);
        let pairs = f32x4_add(quarters, i32x4_shuffle::<2, 3, 2, 3>(quarters, quarters));
        *score = f32x4_extract_lane::<0>(pairs) + f32x4_extract_lane::<1>(pairs);
    }
}

/// [`super::lanes::largest`]: `f32x4_pmax` keeps its first operand where the second is a NaN,
/// as the portable comparison does, and the largest of a set is the same in any order.
pub fn largest(values: &[f32]) -> f32 {
    let mut chunks = values.chunks_exact(4);
    let lanes = (&mut chunks).fold(f32x4_splat(f32::NEG_INFINITY), |largest, chunk| {
        f32x4_pmax(largest, floats(chunk))
    });
    chunks
        .remainder()
        .iter()
        .fold(largest_lane(lanes), |largest, &value| {
            if value > largest { value } else { largest }
        })
}

/// The largest of four lanes, none of them a NaN.
fn largest_lane(lanes: v128) -> f32 {
    let halves = f32x4_pmax(lanes, i32x4_shuffle::<2, 3, 0, 1>(lanes, lanes));
    f32x4_extract_lane::<0>(f32x4_pmax(
        halves,
        i32x4_shuffle::<1, 0, 3, 2>(halves, halves),
    ))
}

/// [`super::blocks::quantize_into`] for a multiple of 16 values, to the bit: `f32x4_pmax`
/// passes a NaN over as the portable comparison does, the fraction decides the rounding as
/// there, and the saturating conversions and narrowings give what `as i8` gives.
pub fn quantize_into(values: &[f32], qs: &mut [i8]) -> f32 {
    let largest = values
        .chunks_exact(4)
        .fold(f32x4_splat(0.0), |largest, chunk| {
            f32x4_pmax(largest, f32x4_abs(floats(chunk)))
        });
    let d = largest_lane(largest) / 127.0;
    let inverse = f32x4_splat(if d == 0.0 { 0.0 } else { 1.0 / d });
    let rounded = |chunk: &[f32]| {
        let scaled = f32x4_mul(floats(chunk), inverse);
        let whole = f32x4_trunc(scaled);
        let one_signed = v128_or(v128_and(scaled, f32x4_splat(-0.0)), f32x4_splat(1.0));
        let halfway_or_more = f32x4_ge(f32x4_abs(f32x4_sub(scaled, whole)), f32x4_splat(0.5));
        i32x4_trunc_sat_f32x4(v128_bitselect(
            f32x4_add(whole, one_signed),
            whole,
            halfway_or_more,
        ))
    };
    for (values, qs) in values.chunks_exact(16).zip(qs.chunks_exact_mut(16)) {
        let [first, second, third, fourth] = [0, 4, 8, 12].map(|at| rounded(&values[at..at + 4]));
        let bytes = i8x16_narrow_i16x8(
            i16x8_narrow_i32x4(first, second),
            i16x8_narrow_i32x4(third, fourth),
        );
        let qs: &mut [i8; 16] = qs.try_into().expect("sixteen values");
        // SAFETY: the array holds the 16 bytes stored; v128_store takes any alignment.
        unsafe { v128_store(qs.as_mut_ptr().cast(), bytes) };
    }
    d
}

/// [`super::lanes::weighted_sum`] for `out.len()` a multiple of 8: 32 of `out` kept in eight
/// vectors while every row passes, each still summed from the first row to the last.
pub fn weighted_sum(weights: &[f32], values: &[f32], out: &mut [f32]) {
    for start in (0..out.len()).step_by(32) {
        match out.len() - start {
            8 => columns::<8>(weights, values, start, out),
            16 => columns::<16>(weights, values, start, out),
            24 => columns::<24>(weights, values, start, out),
            _ => columns::<32>(weights, values, start, out),
        }
    }
}

/// `WIDTH` (8 to 32) columns of [`weighted_sum`] from `start`. Each row's columns are read as
/// an array of a length known when compiling: read through a slice of a length known only at
/// run time, the loop ran 1.65× slower (SmolLM2's 64-wide heads, Node's WASI).
fn columns<const WIDTH: usize>(weights: &[f32], values: &[f32], start: usize, out: &mut [f32]) {
    let dim = out.len();
    let mut sums = [f32x4_splat(0.0); 8];
    for (row, &weight) in values.chunks_exact(dim).zip(weights) {
        let row: &[f32; WIDTH] = row[start..start + WIDTH].try_into().expect("WIDTH floats");
        let weight = f32x4_splat(weight);
        for (lane, sum) in sums.iter_mut().take(WIDTH / 4).enumerate() {
            *sum = f32x4_add(
                *sum,
                f32x4_mul(weight, floats(&row[4 * lane..4 * lane + 4])),
            );
        }
    }
    for (lane, sum) in sums.iter().take(WIDTH / 4).enumerate() {
        let chunk: &mut [f32; 4] = (&mut out[start + 4 * lane..start + 4 * lane + 4])
            .try_into()
            .expect("four floats");
        // SAFETY: the array holds the four floats stored; v128_store takes any alignment.
        unsafe { v128_store(chunk.as_mut_ptr().cast(), *sum) };
    }
}
