//! The K-quant kernels with WebAssembly SIMD (the browser's, when a team's Q4_K_M model runs
//! there). A tile's 16 bytes hold eight values of two rows; they are widened to 16 bits and
//! meet the activations in `i32x4_dot_i16x8`; each sub-block's dots then take its scale in
//! 32 bits, so each row's super-block is one vector of exact partial sums — the portable
//! loop's integers, added in another order — which then take its very float step
//! ([`q4k_step`], [`q6k_step`]).

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

fn q4k_one(tiles: &[TileQ4K], input: &[ActivationSuperBlock]) -> [f32; TILE_ROWS] {
    let mut sums = [0f32; TILE_ROWS];
    for (tile, x) in tiles.iter().zip(input) {
        let mut integers = [i32x4_splat(0); TILE_ROWS];
        for p in 0..4 {
            let x_low: [v128; 4] = std::array::from_fn(|c| activations(&x.qs[64 * p + 8 * c..]));
            let x_high: [v128; 4] =
                std::array::from_fn(|c| activations(&x.qs[64 * p + 8 * c + 32..]));
            for pair in 0..TILE_ROWS / 2 {
                // `[row of the pair][sub-block 2p or 2p + 1]`, unscaled: the scales are
                // multiplied once per sub-block instead of once per eight values (the splats
                // and 16-bit products were most of this loop's instructions).
                let mut dots = [[i32x4_splat(0); 2]; 2];
                for c in 0..4 {
                    let bytes = load_pair(&tile.qs[4 * p + c], pair);
                    let nibbles = [v128_and(bytes, u8x16_splat(0x0f)), u8x16_shr(bytes, 4)];
                    for (sub_block, (nibbles, x)) in
                        nibbles.into_iter().zip([x_low[c], x_high[c]]).enumerate()
                    {
                        let rows = [
                            u16x8_extend_low_u8x16(nibbles),
                            u16x8_extend_high_u8x16(nibbles),
                        ];
                        for (dots, row) in dots.iter_mut().zip(rows) {
                            dots[sub_block] = i32x4_add(dots[sub_block], i32x4_dot_i16x8(row, x));
                        }
                    }
                }
                for (row, dots) in (2 * pair..).zip(dots) {
                    for (sub_block, dot) in (2 * p..).zip(dots) {
                        let scale = i32x4_splat(tile.scales[sub_block][row] as i32);
                        integers[row] = i32x4_add(integers[row], i32x4_mul(dot, scale));
                    }
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
            let x_values: [v128; 4] = std::array::from_fn(|c| activations(&x.qs[32 * g + 8 * c..]));
            for pair in 0..TILE_ROWS / 2 {
                let high_pairs = load_pair(&tile.qh[g], pair);
                // `[row of the pair][part 2g or 2g + 1]`, unscaled, as in `q4k_one`.
                let mut dots = [[i32x4_splat(0); 2]; 2];
                for (c, x) in x_values.into_iter().enumerate() {
                    let nibbles = load_pair(&tile.ql[2 * g + c / 2], pair);
                    let nibbles = if c % 2 == 0 {
                        v128_and(nibbles, u8x16_splat(0x0f))
                    } else {
                        u8x16_shr(nibbles, 4)
                    };
                    let high = v128_and(u8x16_shr(high_pairs, 2 * c as u32), u8x16_splat(3));
                    let quants = v128_or(nibbles, u8x16_shl(high, 4));
                    let centred = |quants: v128| i16x8_sub(quants, i16x8_splat(32));
                    let rows = [
                        centred(u16x8_extend_low_u8x16(quants)),
                        centred(u16x8_extend_high_u8x16(quants)),
                    ];
                    for (dots, row) in dots.iter_mut().zip(rows) {
                        dots[c / 2] = i32x4_add(dots[c / 2], i32x4_dot_i16x8(row, x));
                    }
                }
                for (row, dots) in (2 * pair..).zip(dots) {
                    for (part, dot) in (2 * g..).zip(dots) {
                        let scale = i32x4_splat(tile.scales[part][row] as i32);
                        integers[row] = i32x4_add(integers[row], i32x4_mul(dot, scale));
                    }
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
