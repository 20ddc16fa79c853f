//! The kernels without SIMD (old CPUs, and the reference the others are tested against): lane
//! `l` of eight holds the products of values 4l..4l+4 of each block, as `_mm256_madd_epi16`
//! leaves them.

use super::blocks::{ActivationBlock, BLOCK, BlockQ4_1, BlockQ5_0, BlockQ8_0, WeightBlock};
use super::lanes::sum_lanes;

fn nibble(quants: &[u8; BLOCK / 2], index: usize) -> i32 {
    if index < BLOCK / 2 {
        (quants[index] & 0x0f) as i32
    } else {
        (quants[index - BLOCK / 2] >> 4) as i32
    }
}

/// Σ over the blocks of `scale · (Σ four products)`, lane by lane.
fn lanes_of<'a, B: WeightBlock + 'a>(
    row: impl Iterator<Item = &'a B>,
    blocks: &[ActivationBlock],
    value: impl Fn(&B, usize) -> i32,
) -> [f32; 8] {
    let mut lanes = [0f32; 8];
    for (block, activations) in row.zip(blocks) {
        let scale = block.scale() * activations.d;
        for (lane, total) in lanes.iter_mut().enumerate() {
            let sum: i32 = (4 * lane..4 * lane + 4)
                .map(|i| value(block, i) * activations.qs[i] as i32)
                .sum();
            *total += scale * sum as f32;
        }
    }
    lanes
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
    sum_lanes(lanes_of(row, blocks, |block, i| nibble(&block.qs, i))) + offsets
}

pub fn dot_q5_0<'a>(row: impl Iterator<Item = &'a BlockQ5_0>, blocks: &[ActivationBlock]) -> f32 {
    sum_lanes(lanes_of(row, blocks, |block, i| {
        (nibble(&block.qs, i) | (((block.fifth_bits() >> i) & 1) << 4) as i32) - 16
    }))
}

pub fn dot_q8_0<'a>(row: impl Iterator<Item = &'a BlockQ8_0>, blocks: &[ActivationBlock]) -> f32 {
    sum_lanes(lanes_of(row, blocks, |block, i| block.qs[i] as i32))
}
