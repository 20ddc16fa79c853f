//! The kernels without SIMD (old CPUs, and the reference the others are tested against). Each
//! block's 32 products are one exact integer (|Σ| < 2²⁰, so exact as f32 too); the float steps
//! are one per block, `total + (d·dx)·Σ`, in block order — what every SIMD back-end does with
//! its rows and inputs side by side in its lanes.

use super::blocks::{ActivationBlock, BLOCK, BlockQ4_1, BlockQ5_0, BlockQ8_0, WeightBlock};

fn nibble(quants: &[u8; BLOCK / 2], index: usize) -> i32 {
    if index < BLOCK / 2 {
        (quants[index] & 0x0f) as i32
    } else {
        (quants[index - BLOCK / 2] >> 4) as i32
    }
}

/// Σ over the blocks of `(d·dx) · Σ products`, in block order.
fn blocks_sum<'a, B: WeightBlock + 'a>(
    row: impl Iterator<Item = &'a B>,
    blocks: &[ActivationBlock],
    value: impl Fn(&B, usize) -> i32,
) -> f32 {
    row.zip(blocks).fold(0.0, |total, (block, activations)| {
        let sum: i32 = (0..BLOCK)
            .map(|i| value(block, i) * activations.qs[i] as i32)
            .sum();
        total + block.scale() * activations.d * sum as f32
    })
}

pub fn dot_q4_1<'a>(
    row: impl Iterator<Item = &'a BlockQ4_1> + Clone,
    blocks: &[ActivationBlock],
) -> f32 {
    let offsets: f32 = row
        .clone()
        .zip(blocks)
        .fold(0.0, |offsets, (block, activations)| {
            offsets + block.minimum() * activations.scaled_sum
        });
    blocks_sum(row, blocks, |block, i| nibble(&block.qs, i)) + offsets
}

pub fn dot_q5_0<'a>(row: impl Iterator<Item = &'a BlockQ5_0>, blocks: &[ActivationBlock]) -> f32 {
    blocks_sum(row, blocks, |block, i| {
        (nibble(&block.qs, i) | (((block.fifth_bits() >> i) & 1) << 4) as i32) - 16
    })
}

pub fn dot_q8_0<'a>(row: impl Iterator<Item = &'a BlockQ8_0>, blocks: &[ActivationBlock]) -> f32 {
    blocks_sum(row, blocks, |block, i| block.qs[i] as i32)
}
