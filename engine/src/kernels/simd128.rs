//! The browser's kernels: WebAssembly SIMD has no byte multiply-add like AVX2's, so the bytes
//! are widened to 16 bits and `i32x4_dot_i16x8` sums pairs; adding neighbouring pairs gives the
//! same eight lane sums, and the float steps are the portable loop's. Like AVX2's, they take up
//! to four rows per pass, widening the activations once for all.

use std::arch::wasm32::*;

use super::blocks::{
    ActivationBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, WeightBlock, block_in_group,
};
use super::lanes::sum_lanes;

pub fn dot_q4_1(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    group!(sums, q4_1_rows::<N>(weights, blocks))
}

pub fn dot_q5_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    group!(sums, q5_0_rows::<N>(weights, blocks))
}

pub fn dot_q8_0(weights: &[u8], blocks: &[ActivationBlock], sums: &mut [f32]) {
    group!(sums, q8_0_rows::<N>(weights, blocks))
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

fn widen_unsigned(bytes: v128) -> [v128; 2] {
    [
        u16x8_extend_low_u8x16(bytes),
        u16x8_extend_high_u8x16(bytes),
    ]
}

/// A block's 32 activations as four vectors of eight 16-bit values.
fn widen_activations(activations: &ActivationBlock) -> [[v128; 2]; 2] {
    [0, 1].map(|half| widen_signed(load(half_of(&activations.qs, half))))
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

fn q4_1_rows<const ROWS: usize>(weights: &[u8], blocks: &[ActivationBlock]) -> [f32; ROWS] {
    let mut lanes = [[f32x4_splat(0.0); 2]; ROWS];
    let mut offsets = [0f32; ROWS];
    for (index, activations) in blocks.iter().enumerate() {
        let values = widen_activations(activations);
        for row in 0..ROWS {
            let block: &BlockQ4_1 = block_in_group(weights, row, ROWS, index);
            let packed = load(&block.qs);
            let (low, high) = (v128_and(packed, u8x16_splat(0x0f)), u8x16_shr(packed, 4));
            accumulate(
                &mut lanes[row],
                block.scale() * activations.d,
                [
                    quad_sums(widen_unsigned(low), values[0]),
                    quad_sums(widen_unsigned(high), values[1]),
                ],
            );
            offsets[row] += block.minimum() * activations.scaled_sum;
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
            let block: &BlockQ5_0 = block_in_group(weights, row, ROWS, index);
            let packed = load(&block.qs);
            let nibbles = [v128_and(packed, u8x16_splat(0x0f)), u8x16_shr(packed, 4)];
            let signed = |half: usize| {
                let (first, second) = (block.qh[2 * half], block.qh[2 * half + 1]);
                let spread = u8x16(
                    first, first, first, first, first, first, first, first, second, second, second,
                    second, second, second, second, second,
                );
                let fifth = v128_and(
                    u8x16_ne(v128_and(spread, bit_of_byte), u8x16_splat(0)),
                    u8x16_splat(0x10),
                );
                widen_signed(i8x16_sub(v128_or(nibbles[half], fifth), i8x16_splat(16)))
            };
            accumulate(
                lanes,
                block.scale() * activations.d,
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
            let block: &BlockQ8_0 = block_in_group(weights, row, ROWS, index);
            accumulate(
                lanes,
                block.scale() * activations.d,
                [0, 1].map(|half| {
                    quad_sums(widen_signed(load(half_of(&block.qs, half))), values[half])
                }),
            );
        }
    }
    lanes.map(finish)
}
