//! The kernels without SIMD (old CPUs, and the reference the others are tested against): lane
//! `l` of eight holds the products of values 4l..4l+4 of each block, as `_mm256_madd_epi16`
//! leaves them.

use super::blocks::{
    ActivationBlock, ActivationSuperBlock, BLOCK, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ6K,
    BlockQ8_0, SUPER_BLOCK, WeightBlock,
};
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

/// A super-block's lanes in integers: lane `l` of sub-block `j` holds the products of values
/// 32j + 4l .. 32j + 4l + 4, times that sub-block's scale.
fn super_lanes(
    activations: &ActivationSuperBlock,
    quant: impl Fn(usize) -> i32,
    scale: impl Fn(usize) -> i32,
) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for j in 0..SUPER_BLOCK / BLOCK {
        for (lane, total) in lanes.iter_mut().enumerate() {
            let first = 32 * j + 4 * lane;
            let sum: i32 = (first..first + 4)
                .map(|v| quant(v) * activations.qs[v] as i32)
                .sum();
            *total += scale(first / 16) * sum;
        }
    }
    lanes
}

/// `d·d_x` times each lane's integers, super-block by super-block, and `dmin·d_x·Σ min·Σx`
/// apart, taken off at the end (as Q4_1's minimum is added).
pub fn dot_q4_k<'a>(
    row: impl Iterator<Item = &'a BlockQ4K>,
    blocks: &[ActivationSuperBlock],
) -> f32 {
    let mut lanes = [0f32; 8];
    let mut offsets = 0f32;
    for (block, activations) in row.zip(blocks) {
        let (scales, minimums) = block.scales_and_minimums();
        let integers = super_lanes(
            activations,
            |v| block.quant(v / 32, v % 32),
            |part| scales[part / 2] as i32,
        );
        let d = block.d() * activations.d;
        for (lane, integer) in lanes.iter_mut().zip(integers) {
            *lane += d * integer as f32;
        }
        let minimum: i32 = (0..8)
            .map(|j| minimums[j] as i32 * (activations.sums[2 * j] + activations.sums[2 * j + 1]))
            .sum();
        offsets += block.dmin() * activations.d * minimum as f32;
    }
    sum_lanes(lanes) - offsets
}

/// The weights multiplied as q in 0..64, and 32 times each part's activations times its scale
/// taken off apart, at the end: exactly Σ scale·(q − 32)·x in integers per super-block.
pub fn dot_q6_k<'a>(
    row: impl Iterator<Item = &'a BlockQ6K>,
    blocks: &[ActivationSuperBlock],
) -> f32 {
    let mut lanes = [0f32; 8];
    let mut offsets = 0f32;
    for (block, activations) in row.zip(blocks) {
        let integers = super_lanes(
            activations,
            |v| block.quant(v),
            |part| block.scales[part] as i32,
        );
        let d = block.d() * activations.d;
        for (lane, integer) in lanes.iter_mut().zip(integers) {
            *lane += d * integer as f32;
        }
        let offset: i32 = block
            .scales
            .iter()
            .zip(activations.sums)
            .map(|(&scale, sum)| 32 * scale as i32 * sum)
            .sum();
        offsets += d * offset as f32;
    }
    sum_lanes(lanes) - offsets
}
