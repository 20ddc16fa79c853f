//! The K-quant kernels with AVX2 (and AVX-VNNI's fused 16-bit products where the CPU has them).
//!
//! A tile's 64-byte rows split into two vectors of four weight rows each (eight values per
//! row). Each meets the same eight activations broadcast to every row: maddubs multiplies and
//! adds pairs into 16 bits (below 2·63·127, never saturating), and madd multiplies those by the
//! row's sub-block scale into 32 bits, so a super-block's sum stays an exact integer until
//! [`portable::q4k_step`](super::portable::q4k_step)'s floating point, done here in the same
//! operations for the eight rows at once.
//!
//! The functions are safe to call wherever their features are enabled; callers outside such a
//! function check for them at run time first.

use std::arch::x86_64::*;

use super::tiles::{ActivationSuperBlock, TILE_ROWS, TileQ4K, TileQ6K};
use crate::kernels::avx2::prefetch_ahead;

/// Picks, for the four rows of each half of a tile row, a scale byte per 16-bit lane (eight
/// bytes broadcast to every 64 bits; 0x80 writes zero): rows 0–3 read bytes 0–3, rows 4–7
/// bytes 4–7. `HIGH` puts the byte in the lane's high half (to be sign-extended by a shift).
const fn scale_picker<const HIGH: bool>(first_row: i8) -> [i8; 32] {
    let mut picker = [0i8; 32];
    let mut byte = 0;
    while byte < 32 {
        // 128-bit lane `byte / 16` holds two rows of four 16-bit lanes each.
        let row = first_row + (byte / 16 * 2 + byte % 16 / 8) as i8;
        let high_half = byte % 2 == 1;
        picker[byte] = if high_half == HIGH { row } else { -128 };
        byte += 1;
    }
    picker
}

pub(super) const UNSIGNED_SCALES: [[i8; 32]; 2] =
    [scale_picker::<false>(0), scale_picker::<false>(4)];
pub(super) const SIGNED_SCALES: [[i8; 32]; 2] = [scale_picker::<true>(0), scale_picker::<true>(4)];

#[target_feature(enable = "avx2")]
pub(super) fn load_picker(picker: &[i8; 32]) -> __m256i {
    // SAFETY: the array holds the 32 bytes read; loadu takes any alignment.
    unsafe { _mm256_loadu_si256(picker.as_ptr().cast()) }
}

/// Eight bytes from `bytes` in every 64 bits.
#[target_feature(enable = "avx2")]
fn broadcast_8(bytes: &[u8; 8]) -> __m256i {
    _mm256_set1_epi64x(i64::from_le_bytes(*bytes))
}

#[target_feature(enable = "avx2")]
pub(super) fn broadcast_8_signed(values: &[i8]) -> __m256i {
    let bytes: &[i8; 8] = values[..8].try_into().expect("eight activations");
    _mm256_set1_epi64x(i64::from_le_bytes(bytes.map(|value| value as u8)))
}

/// The two halves (rows 0–3, 4–7) of 64 bytes.
#[target_feature(enable = "avx2")]
fn load_halves(bytes: &[[u8; 8]; TILE_ROWS]) -> (__m256i, __m256i) {
    let pointer = bytes.as_ptr().cast::<__m256i>();
    // SAFETY: the array holds 64 bytes; loadu takes any alignment.
    unsafe {
        (
            _mm256_loadu_si256(pointer),
            _mm256_loadu_si256(pointer.add(1)),
        )
    }
}

/// Each row's two 32-bit lanes of the halves (rows 0–3, 4–7) added: eight rows in order.
#[target_feature(enable = "avx2")]
fn row_totals(first: __m256i, second: __m256i) -> __m256i {
    // hadd leaves rows 0, 1, 4, 5 | 2, 3, 6, 7; the 64-bit permute puts them back in order.
    _mm256_permute4x64_epi64(_mm256_hadd_epi32(first, second), 0b11_01_10_00)
}

/// A tile's 16 bytes of pairs, one per row.
#[target_feature(enable = "avx2")]
pub(super) fn load_16(pairs: &[[u8; 2]; TILE_ROWS]) -> __m128i {
    // SAFETY: the array holds the 16 bytes read; loadu takes any alignment.
    unsafe { _mm_loadu_si128(pairs.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,f16c")]
pub(super) fn halves_to_f32(bits: &[[u8; 2]; TILE_ROWS]) -> __m256 {
    _mm256_cvtph_ps(load_16(bits))
}

/// Σ min·Σx of each row: the minimums meet the activations' sums two sub-blocks at a time.
#[target_feature(enable = "avx2")]
pub(super) fn minimums(tile: &TileQ4K, x: &ActivationSuperBlock) -> __m256i {
    let mut minimums = _mm256_setzero_si256();
    for (t, mins) in tile.mins.iter().enumerate() {
        let mins = _mm256_cvtepu8_epi16(load_16(mins));
        let pair =
            (x.sums32[2 * t] as u16 as u32 | (x.sums32[2 * t + 1] as u16 as u32) << 16) as i32;
        minimums = _mm256_add_epi32(minimums, _mm256_madd_epi16(mins, _mm256_set1_epi32(pair)));
    }
    minimums
}

/// The eight rows' sums out of their vector.
#[target_feature(enable = "avx")]
pub(super) fn rows_of(sum: __m256) -> [f32; TILE_ROWS] {
    let mut rows = [0f32; TILE_ROWS];
    // SAFETY: `rows` holds the eight floats written; storeu takes any alignment.
    unsafe { _mm256_storeu_ps(rows.as_mut_ptr(), sum) };
    rows
}

/// `sum + (d·x_d)·integers − (dmin·x_d)·minimums`, as [`super::portable::q4k_step`] does it.
#[target_feature(enable = "avx2")]
pub(super) fn q4k_step(
    sum: __m256,
    d: __m256,
    dmin: __m256,
    x_d: f32,
    integers: __m256i,
    minimums: __m256i,
) -> __m256 {
    let x_d = _mm256_set1_ps(x_d);
    let sum = _mm256_add_ps(
        sum,
        _mm256_mul_ps(_mm256_mul_ps(d, x_d), _mm256_cvtepi32_ps(integers)),
    );
    _mm256_sub_ps(
        sum,
        _mm256_mul_ps(_mm256_mul_ps(dmin, x_d), _mm256_cvtepi32_ps(minimums)),
    )
}

#[target_feature(enable = "avx2")]
pub(super) fn q6k_step(sum: __m256, d: __m256, x_d: f32, integers: __m256i) -> __m256 {
    let x_d = _mm256_set1_ps(x_d);
    _mm256_add_ps(
        sum,
        _mm256_mul_ps(_mm256_mul_ps(d, x_d), _mm256_cvtepi32_ps(integers)),
    )
}

/// `total + pairs·scales` (16-bit pairs multiplied and added into 32 bits).
#[target_feature(enable = "avx2")]
fn scaled_add(total: __m256i, pairs: __m256i, scales: __m256i) -> __m256i {
    _mm256_add_epi32(total, _mm256_madd_epi16(pairs, scales))
}

/// [`scaled_add`] in one instruction: the same exact integers.
#[target_feature(enable = "avx2,avxvnni")]
fn scaled_add_vnni(total: __m256i, pairs: __m256i, scales: __m256i) -> __m256i {
    _mm256_dpwssd_avx_epi32(total, pairs, scales)
}

/// Defines the Q4_K and Q6_K kernels for `INPUTS` inputs, with `$features` enabled and
/// `$scaled_add` adding the scaled pairs.
macro_rules! k_kernels {
    ($q4k:ident, $q6k:ident, $features:literal, $scaled_add:ident) => {
        #[target_feature(enable = $features)]
        fn $q4k<const INPUTS: usize>(
            tiles: &[TileQ4K],
            inputs: &[&[ActivationSuperBlock]],
        ) -> [[f32; TILE_ROWS]; INPUTS] {
            assert!(inputs.len() == INPUTS && inputs.iter().all(|x| x.len() == tiles.len()));
            let nibbles = _mm256_set1_epi8(0x0f);
            let pickers = UNSIGNED_SCALES.map(|picker| load_picker(&picker));
            let mut sums = [_mm256_setzero_ps(); INPUTS];
            for (index, tile) in tiles.iter().enumerate() {
                let xs: [&ActivationSuperBlock; INPUTS] =
                    std::array::from_fn(|n| &inputs[n][index]);
                let mut first = [_mm256_setzero_si256(); INPUTS];
                let mut second = [_mm256_setzero_si256(); INPUTS];
                for p in 0..4 {
                    let low_scales = broadcast_8(&tile.scales[2 * p]);
                    let high_scales = broadcast_8(&tile.scales[2 * p + 1]);
                    let low = pickers.map(|picker| _mm256_shuffle_epi8(low_scales, picker));
                    let high = pickers.map(|picker| _mm256_shuffle_epi8(high_scales, picker));
                    for c in 0..4 {
                        let (a, b) = load_halves(&tile.qs[4 * p + c]);
                        prefetch_ahead(&tile.qs[4 * p + c]);
                        let low_a = _mm256_and_si256(a, nibbles);
                        let high_a = _mm256_and_si256(_mm256_srli_epi16(a, 4), nibbles);
                        let low_b = _mm256_and_si256(b, nibbles);
                        let high_b = _mm256_and_si256(_mm256_srli_epi16(b, 4), nibbles);
                        let v = 64 * p + 8 * c;
                        for n in 0..INPUTS {
                            let x_low = broadcast_8_signed(&xs[n].qs[v..]);
                            let x_high = broadcast_8_signed(&xs[n].qs[v + 32..]);
                            first[n] =
                                $scaled_add(first[n], _mm256_maddubs_epi16(low_a, x_low), low[0]);
                            first[n] = $scaled_add(
                                first[n],
                                _mm256_maddubs_epi16(high_a, x_high),
                                high[0],
                            );
                            second[n] =
                                $scaled_add(second[n], _mm256_maddubs_epi16(low_b, x_low), low[1]);
                            second[n] = $scaled_add(
                                second[n],
                                _mm256_maddubs_epi16(high_b, x_high),
                                high[1],
                            );
                        }
                    }
                }
                let d = halves_to_f32(&tile.d);
                let dmin = halves_to_f32(&tile.dmin);
                for n in 0..INPUTS {
                    let minimums = minimums(tile, xs[n]);
                    sums[n] = q4k_step(
                        sums[n],
                        d,
                        dmin,
                        xs[n].d,
                        row_totals(first[n], second[n]),
                        minimums,
                    );
                }
            }
            sums.map(|sum| rows_of(sum))
        }

        #[target_feature(enable = $features)]
        fn $q6k<const INPUTS: usize>(
            tiles: &[TileQ6K],
            inputs: &[&[ActivationSuperBlock]],
        ) -> [[f32; TILE_ROWS]; INPUTS] {
            assert!(inputs.len() == INPUTS && inputs.iter().all(|x| x.len() == tiles.len()));
            let nibbles = _mm256_set1_epi8(0x0f);
            let high_pair = _mm256_set1_epi8(0x30);
            let pickers = SIGNED_SCALES.map(|picker| load_picker(&picker));
            let mut sums = [_mm256_setzero_ps(); INPUTS];
            for (index, tile) in tiles.iter().enumerate() {
                let xs: [&ActivationSuperBlock; INPUTS] =
                    std::array::from_fn(|n| &inputs[n][index]);
                let mut first = [_mm256_setzero_si256(); INPUTS];
                let mut second = [_mm256_setzero_si256(); INPUTS];
                for g in 0..8 {
                    let (pairs_a, pairs_b) = load_halves(&tile.qh[g]);
                    for h in 0..2 {
                        let part = 2 * g + h;
                        let scales = _mm256_set1_epi64x(i64::from_le_bytes(
                            tile.scales[part].map(|s| s as u8),
                        ));
                        // The scale in each 16-bit lane's high byte, shifted down with its sign.
                        let scales = pickers.map(|picker| {
                            _mm256_srai_epi16(_mm256_shuffle_epi8(scales, picker), 8)
                        });
                        let (a, b) = load_halves(&tile.ql[part]);
                        prefetch_ahead(&tile.ql[part]);
                        prefetch_ahead(&tile.qh[g]);
                        // Chunk 2h's high bits are bits 4h, 4h + 1 of the pairs, chunk 2h + 1's
                        // the next two: moved to bits 4, 5 (a 16-bit shift moves bits into the
                        // next byte, which the mask then drops).
                        let (even_a, even_b, odd_a, odd_b) = if h == 0 {
                            (
                                _mm256_slli_epi16(pairs_a, 4),
                                _mm256_slli_epi16(pairs_b, 4),
                                _mm256_slli_epi16(pairs_a, 2),
                                _mm256_slli_epi16(pairs_b, 2),
                            )
                        } else {
                            (
                                pairs_a,
                                pairs_b,
                                _mm256_srli_epi16(pairs_a, 2),
                                _mm256_srli_epi16(pairs_b, 2),
                            )
                        };
                        let quants = |nibble: __m256i, pair: __m256i| {
                            _mm256_or_si256(
                                _mm256_and_si256(nibble, nibbles),
                                _mm256_and_si256(pair, high_pair),
                            )
                        };
                        let even_a = quants(a, even_a);
                        let even_b = quants(b, even_b);
                        let odd_a = quants(_mm256_srli_epi16(a, 4), odd_a);
                        let odd_b = quants(_mm256_srli_epi16(b, 4), odd_b);
                        let v = 32 * g + 16 * h;
                        for n in 0..INPUTS {
                            let x_even = broadcast_8_signed(&xs[n].qs[v..]);
                            let x_odd = broadcast_8_signed(&xs[n].qs[v + 8..]);
                            // 32·scale·Σx of the part, taken off as 16·scale·Σx in each of a
                            // row's two lanes (16·Σx fits 16 bits: |Σx| ≤ 16·127).
                            let offset =
                                _mm256_set1_epi32((-16 * xs[n].sums16[part]) as u16 as i32);
                            first[n] = $scaled_add(
                                first[n],
                                _mm256_maddubs_epi16(even_a, x_even),
                                scales[0],
                            );
                            first[n] = $scaled_add(
                                first[n],
                                _mm256_maddubs_epi16(odd_a, x_odd),
                                scales[0],
                            );
                            first[n] = $scaled_add(first[n], offset, scales[0]);
                            second[n] = $scaled_add(
                                second[n],
                                _mm256_maddubs_epi16(even_b, x_even),
                                scales[1],
                            );
                            second[n] = $scaled_add(
                                second[n],
                                _mm256_maddubs_epi16(odd_b, x_odd),
                                scales[1],
                            );
                            second[n] = $scaled_add(second[n], offset, scales[1]);
                        }
                    }
                }
                let d = halves_to_f32(&tile.d);
                for n in 0..INPUTS {
                    sums[n] = q6k_step(sums[n], d, xs[n].d, row_totals(first[n], second[n]));
                }
            }
            sums.map(|sum| rows_of(sum))
        }
    };
}

k_kernels!(q4k_plain, q6k_plain, "avx2,f16c", scaled_add);
k_kernels!(q4k_vnni, q6k_vnni, "avx2,f16c,avxvnni", scaled_add_vnni);

/// [`portable::q4k_tiles`](super::portable::q4k_tiles) with AVX2: the same bits.
///
/// # Safety
/// The CPU has AVX2 and F16C, and AVX-VNNI where `vnni`.
pub unsafe fn q4k_tiles(
    tiles: &[TileQ4K],
    inputs: &[&[ActivationSuperBlock]],
    sums: &mut [[f32; TILE_ROWS]],
    vnni: bool,
) {
    // SAFETY: the features are present (the caller's promise).
    unsafe {
        if vnni {
            by_inputs!(q4k_vnni, tiles, inputs, sums)
        } else {
            by_inputs!(q4k_plain, tiles, inputs, sums)
        }
    }
}

/// [`portable::q6k_tiles`](super::portable::q6k_tiles) with AVX2: the same bits.
///
/// # Safety
/// The CPU has AVX2 and F16C, and AVX-VNNI where `vnni`.
pub unsafe fn q6k_tiles(
    tiles: &[TileQ6K],
    inputs: &[&[ActivationSuperBlock]],
    sums: &mut [[f32; TILE_ROWS]],
    vnni: bool,
) {
    // SAFETY: the features are present (the caller's promise).
    unsafe {
        if vnni {
            by_inputs!(q6k_vnni, tiles, inputs, sums)
        } else {
            by_inputs!(q6k_plain, tiles, inputs, sums)
        }
    }
}
