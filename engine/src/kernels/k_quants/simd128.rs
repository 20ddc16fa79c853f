//! The K-quant kernels with WebAssembly SIMD (the browser's, when a team's Q4_K_M model runs
//! there). A tile's 16 bytes hold eight values of two rows; they are widened to 16 bits, take
//! their sub-block's scale there (|scale·q| < 2¹⁵), and meet the activations in
//! `i32x4_dot_i16x8`, so each row's super-block is one vector of exact partial sums — the
//! portable loop's integers — which then take its very float step ([`q4k_step`], [`q6k_step`]).

use std::arch::wasm32::*;

use super::portable::{q4k_minimums, q4k_step, q6k_step};
use super::tiles::{ActivationSuperBlock, TILE_ROWS, TileQ4K, TileQ6K};
use crate::kernels::blocks::half;

/// Two rows' eight bytes: `rows[2k]` and `rows[2k + 1]`.
fn load_pair(rows: &[[u8; 8]; TILE_ROWS], pair: usize) -> v128 {
    let bytes: &[u8; 16] = rows[2 * pair..2 * pair + 2]
        .as_flattened()
        .try_into()
        .expect("two rows of eight bytes");
    // SAFETY: the reference holds the 16 bytes read; v128_load takes any alignment.
    unsafe { v128_load(bytes.as_ptr().cast()) }
}

/// Eight activations as 16-bit values.
fn activations(values: &[i8]) -> v128 {
    let bytes: &[i8; 8] = values[..8].try_into().expect("eight activations");
    // SAFETY: the reference holds the 8 bytes read; the load takes any alignment.
    i16x8_extend_low_i8x16(unsafe { v128_load64_zero(bytes.as_ptr().cast()) })
}

/// Σ of a vector's four lanes.
fn total(lanes: v128) -> i32 {
    i32x4_extract_lane::<0>(lanes)
        + i32x4_extract_lane::<1>(lanes)
        + i32x4_extract_lane::<2>(lanes)
        + i32x4_extract_lane::<3>(lanes)
}

/// `sums[r]` += the products of row r's eight 16-bit weights `(low, high)` of a pair, each row
/// scaled by its own 16-bit scale, with `x`.
fn add_pair(
    sums: &mut [v128; TILE_ROWS],
    pair: usize,
    weights: [v128; 2],
    scales: [i16; 2],
    x: v128,
) {
    for (half, (weights, scale)) in weights.into_iter().zip(scales).enumerate() {
        let scaled = i16x8_mul(weights, i16x8_splat(scale));
        let row = 2 * pair + half;
        sums[row] = i32x4_add(sums[row], i32x4_dot_i16x8(scaled, x));
    }
}

fn q4k_one(tiles: &[TileQ4K], input: &[ActivationSuperBlock]) -> [f32; TILE_ROWS] {
    let mut sums = [0f32; TILE_ROWS];
    for (tile, x) in tiles.iter().zip(input) {
        let mut integers = [i32x4_splat(0); TILE_ROWS];
        for p in 0..4 {
            for c in 0..4 {
                let v = 64 * p + 8 * c;
                let (x_low, x_high) = (activations(&x.qs[v..]), activations(&x.qs[v + 32..]));
                for pair in 0..TILE_ROWS / 2 {
                    let bytes = load_pair(&tile.qs[4 * p + c], pair);
                    let low = v128_and(bytes, u8x16_splat(0x0f));
                    let high = u8x16_shr(bytes, 4);
                    let scale = |j: usize, row: usize| tile.scales[j][row] as i16;
                    let (a, b) = (2 * pair, 2 * pair + 1);
                    add_pair(
                        &mut integers,
                        pair,
                        [u16x8_extend_low_u8x16(low), u16x8_extend_high_u8x16(low)],
                        [scale(2 * p, a), scale(2 * p, b)],
                        x_low,
                    );
                    add_pair(
                        &mut integers,
                        pair,
                        [u16x8_extend_low_u8x16(high), u16x8_extend_high_u8x16(high)],
                        [scale(2 * p + 1, a), scale(2 * p + 1, b)],
                        x_high,
                    );
                }
            }
        }
        for (r, sum) in sums.iter_mut().enumerate() {
            *sum = q4k_step(
                *sum,
                half(tile.d[r]),
                half(tile.dmin[r]),
                x.d,
                total(integers[r]),
                q4k_minimums(tile, x, r),
            );
        }
    }
    sums
}

fn q6k_one(tiles: &[TileQ6K], input: &[ActivationSuperBlock]) -> [f32; TILE_ROWS] {
    let mut sums = [0f32; TILE_ROWS];
    for (tile, x) in tiles.iter().zip(input) {
        let mut integers = [i32x4_splat(0); TILE_ROWS];
        for g in 0..8 {
            for c in 0..4 {
                let v = 32 * g + 8 * c;
                let part = v / 16;
                let x_values = activations(&x.qs[v..]);
                for pair in 0..TILE_ROWS / 2 {
                    let nibbles = load_pair(&tile.ql[2 * g + c / 2], pair);
                    let nibbles = if c % 2 == 0 {
                        v128_and(nibbles, u8x16_splat(0x0f))
                    } else {
                        u8x16_shr(nibbles, 4)
                    };
                    let pairs = load_pair(&tile.qh[g], pair);
                    let high = v128_and(u8x16_shr(pairs, 2 * c as u32), u8x16_splat(3));
                    let quants = v128_or(nibbles, u8x16_shl(high, 4));
                    let centred = |quants: v128| i16x8_sub(quants, i16x8_splat(32));
                    let (a, b) = (2 * pair, 2 * pair + 1);
                    add_pair(
                        &mut integers,
                        pair,
                        [
                            centred(u16x8_extend_low_u8x16(quants)),
                            centred(u16x8_extend_high_u8x16(quants)),
                        ],
                        [tile.scales[part][a] as i16, tile.scales[part][b] as i16],
                        x_values,
                    );
                }
            }
        }
        for (r, sum) in sums.iter_mut().enumerate() {
            *sum = q6k_step(*sum, half(tile.d[r]), x.d, total(integers[r]));
        }
    }
    sums
}

/// [`portable::q4k_tiles`](super::portable::q4k_tiles) with simd128: the same bits.
pub fn q4k_tiles(tiles: &[TileQ4K], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; 8]]) {
    for (input, sums) in inputs.iter().zip(sums.iter_mut()) {
        *sums = q4k_one(tiles, input);
    }
}

/// [`portable::q6k_tiles`](super::portable::q6k_tiles) with simd128: the same bits.
pub fn q6k_tiles(tiles: &[TileQ6K], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; 8]]) {
    for (input, sums) in inputs.iter().zip(sums.iter_mut()) {
        *sums = q6k_one(tiles, input);
    }
}
