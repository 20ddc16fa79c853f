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

/// A pair of rows' dots, `[input][row of the pair][first or second sub-block]`, unscaled:
/// the scales are multiplied once per sub-block instead of once per eight values (the splats
/// and 16-bit products were most of the loop's instructions).
type PairDots<const INPUTS: usize> = [[[v128; 2]; 2]; INPUTS];

/// Adds a pair's dots, each times its sub-block's scale (`scale(sub_block, row)`), to each
/// input's integers.
fn add_scaled<const INPUTS: usize>(
    integers: &mut [[v128; TILE_ROWS]; INPUTS],
    dots: PairDots<INPUTS>,
    pair: usize,
    first_sub_block: usize,
    scale: impl Fn(usize, usize) -> i32,
) {
    let scales: [[v128; 2]; 2] = std::array::from_fn(|which| {
        std::array::from_fn(|sub| i32x4_splat(scale(first_sub_block + sub, 2 * pair + which)))
    });
    for (integers, dots) in integers.iter_mut().zip(dots) {
        for (which, dots) in dots.into_iter().enumerate() {
            let row = 2 * pair + which;
            for (dot, scale) in dots.into_iter().zip(scales[which]) {
                integers[row] = i32x4_add(integers[row], i32x4_mul(dot, scale));
            }
        }
    }
}

/// The tiles against `INPUTS` input rows at once, `[input][row]`: each tile's nibbles are
/// unpacked once for all of them (a prompt's), and each input's sums are those it gets alone.
fn q4k_inputs<const INPUTS: usize>(
    tiles: &[TileQ4K],
    inputs: &[&[ActivationSuperBlock]],
) -> [[f32; TILE_ROWS]; INPUTS] {
    let mut sums = [[0f32; TILE_ROWS]; INPUTS];
    for (index, tile) in tiles.iter().enumerate() {
        let mut integers = [[i32x4_splat(0); TILE_ROWS]; INPUTS];
        for p in 0..4 {
            // `[input][sub-block 2p or 2p + 1][chunk]`.
            let x: [[[v128; 4]; 2]; INPUTS] = std::array::from_fn(|input| {
                let qs = &inputs[input][index].qs;
                std::array::from_fn(|sub| {
                    std::array::from_fn(|c| activations(&qs[64 * p + 32 * sub + 8 * c..]))
                })
            });
            for pair in 0..TILE_ROWS / 2 {
                let mut dots: PairDots<INPUTS> = [[[i32x4_splat(0); 2]; 2]; INPUTS];
                for c in 0..4 {
                    let bytes = load_pair(&tile.qs[4 * p + c], pair);
                    let nibbles = [v128_and(bytes, u8x16_splat(0x0f)), u8x16_shr(bytes, 4)];
                    for (sub, nibbles) in nibbles.into_iter().enumerate() {
                        let rows = [
                            u16x8_extend_low_u8x16(nibbles),
                            u16x8_extend_high_u8x16(nibbles),
                        ];
                        for (dots, x) in dots.iter_mut().zip(&x) {
                            for (dots, row) in dots.iter_mut().zip(rows) {
                                dots[sub] = i32x4_add(dots[sub], i32x4_dot_i16x8(row, x[sub][c]));
                            }
                        }
                    }
                }
                add_scaled(&mut integers, dots, pair, 2 * p, |sub_block, row| {
                    tile.scales[sub_block][row] as i32
                });
            }
        }
        for ((sums, integers), input) in sums.iter_mut().zip(&integers).zip(inputs) {
            let x = &input[index];
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
    }
    sums
}

/// As [`q4k_inputs`], for Q6_K.
fn q6k_inputs<const INPUTS: usize>(
    tiles: &[TileQ6K],
    inputs: &[&[ActivationSuperBlock]],
) -> [[f32; TILE_ROWS]; INPUTS] {
    let mut sums = [[0f32; TILE_ROWS]; INPUTS];
    for (index, tile) in tiles.iter().enumerate() {
        let mut integers = [[i32x4_splat(0); TILE_ROWS]; INPUTS];
        for g in 0..8 {
            // `[input][chunk]`; chunks 0, 1 are part 2g, chunks 2, 3 part 2g + 1.
            let x: [[v128; 4]; INPUTS] = std::array::from_fn(|input| {
                let qs = &inputs[input][index].qs;
                std::array::from_fn(|c| activations(&qs[32 * g + 8 * c..]))
            });
            for pair in 0..TILE_ROWS / 2 {
                let high_pairs = load_pair(&tile.qh[g], pair);
                let mut dots: PairDots<INPUTS> = [[[i32x4_splat(0); 2]; 2]; INPUTS];
                for c in 0..4 {
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
                    for (dots, x) in dots.iter_mut().zip(&x) {
                        for (dots, row) in dots.iter_mut().zip(rows) {
                            dots[c / 2] = i32x4_add(dots[c / 2], i32x4_dot_i16x8(row, x[c]));
                        }
                    }
                }
                add_scaled(&mut integers, dots, pair, 2 * g, |part, row| {
                    tile.scales[part][row] as i32
                });
            }
        }
        for ((sums, integers), input) in sums.iter_mut().zip(&integers).zip(inputs) {
            let x = &input[index];
            for (r, sum) in sums.iter_mut().enumerate() {
                *sum = q6k_step(*sum, half(tile.d[r]), x.d, total(integers[r]));
            }
        }
    }
    sums
}

// Inputs four, two or one at a time, as on x86. A 64-token prompt of the llama-1b shape under
// WASI, in turns against one input at a time: 0.90–0.96 of its time with four, 0.91–0.93 with
// two (the 16 sums of four inputs per pair of rows outnumber the vector registers V8 gives
// x86); the block kernels' four inputs took Qwen2.5-0.5B's to 0.67.

/// [`portable::q4k_tiles`](super::portable::q4k_tiles) with simd128: the same bits.
pub fn q4k_tiles(tiles: &[TileQ4K], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; 8]]) {
    by_inputs!(q4k_inputs, tiles, inputs, sums)
}

/// [`portable::q6k_tiles`](super::portable::q6k_tiles) with simd128: the same bits.
pub fn q6k_tiles(tiles: &[TileQ6K], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; 8]]) {
    by_inputs!(q6k_inputs, tiles, inputs, sums)
}
