//! The K-quant kernels without SIMD: the reference the others match bit for bit, and the
//! browser's. A super-block's products are exact integers in any order; what every back-end
//! must do alike is the floating point after them, written once here ([`q4k_step`],
//! [`q6k_step`]) and copied operation for operation by the vector kernels.

use super::tiles::{ActivationSuperBlock, SUPER_BLOCK, TILE_ROWS, TileQ4K, TileQ6K};
use crate::kernels::blocks::half;

/// One super-block of Q4_K added to a row's sum: `integers` = Σ scale·q·x, `minimums` =
/// Σ min·Σx.
pub fn q4k_step(sum: f32, d: f32, dmin: f32, x_d: f32, integers: i32, minimums: i32) -> f32 {
    let sum = sum + (d * x_d) * integers as f32;
    sum - (dmin * x_d) * minimums as f32
}

/// Σ min·Σx of row `r` of a Q4_K tile: what its minimums take away.
pub fn q4k_minimums(tile: &TileQ4K, x: &ActivationSuperBlock, r: usize) -> i32 {
    (0..8)
        .map(|j| tile.mins[j / 2][r][j % 2] as i32 * x.sums32[j] as i32)
        .sum()
}

/// One super-block of Q6_K added to a row's sum: `integers` = Σ scale·(q − 32)·x.
pub fn q6k_step(sum: f32, d: f32, x_d: f32, integers: i32) -> f32 {
    sum + (d * x_d) * integers as f32
}

/// A row group's tiles (one per super-block of the columns) against each input:
/// `sums[input][row]`.
pub fn q4k_tiles(tiles: &[TileQ4K], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; 8]]) {
    for (input, sums) in inputs.iter().zip(sums.iter_mut()) {
        *sums = [0.0; TILE_ROWS];
        for (tile, x) in tiles.iter().zip(input.iter()) {
            for (r, sum) in sums.iter_mut().enumerate() {
                let mut integers = 0i32;
                for p in 0..4 {
                    let (low_scale, high_scale) = (
                        tile.scales[2 * p][r] as i32,
                        tile.scales[2 * p + 1][r] as i32,
                    );
                    let (mut low, mut high) = (0i32, 0i32);
                    for c in 0..4 {
                        for (i, &byte) in tile.qs[4 * p + c][r].iter().enumerate() {
                            let v = 64 * p + 8 * c + i;
                            low += (byte & 0x0f) as i32 * x.qs[v] as i32;
                            high += (byte >> 4) as i32 * x.qs[v + 32] as i32;
                        }
                    }
                    integers += low_scale * low + high_scale * high;
                }
                *sum = q4k_step(
                    *sum,
                    half(tile.d[r]),
                    half(tile.dmin[r]),
                    x.d,
                    integers,
                    q4k_minimums(tile, x, r),
                );
            }
        }
    }
}

/// As [`q4k_tiles`], for Q6_K.
pub fn q6k_tiles(tiles: &[TileQ6K], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; 8]]) {
    for (input, sums) in inputs.iter().zip(sums.iter_mut()) {
        *sums = [0.0; TILE_ROWS];
        for (tile, x) in tiles.iter().zip(input.iter()) {
            for (r, sum) in sums.iter_mut().enumerate() {
                let mut parts = [0i32; SUPER_BLOCK / 16];
                for g in 0..8 {
                    for c in 0..4 {
                        let nibbles = &tile.ql[2 * g + c / 2][r];
                        let pairs = &tile.qh[g][r];
                        for i in 0..8 {
                            let q = ((nibbles[i] >> (4 * (c % 2))) & 0x0f)
                                | (((pairs[i] >> (2 * c)) & 3) << 4);
                            let v = 32 * g + 8 * c + i;
                            parts[v / 16] += (q as i32 - 32) * x.qs[v] as i32;
                        }
                    }
                }
                let integers: i32 = parts
                    .iter()
                    .zip(tile.scales)
                    .map(|(part, scales)| scales[r] as i32 * part)
                    .sum();
                *sum = q6k_step(*sum, half(tile.d[r]), x.d, integers);
            }
        }
    }
}
