//! The K-quant kernels with AVX-512 (BW and VNNI): a tile's 64-byte rows are one vector, all
//! eight weight rows at once, where AVX2 takes two. The integers are [`avx2`](super::avx2)'s
//! and the floating point is its very code, on the eight rows' sums.

use std::arch::x86_64::*;

use super::avx2::{
    SIGNED_SCALES, UNSIGNED_SCALES, halves_to_f32, load_picker, minimums, q4k_step, q6k_step,
    rows_of,
};
use super::tiles::{ActivationSuperBlock, TILE_ROWS, TileQ4K, TileQ6K};
use crate::kernels::avx2::prefetch_ahead;

/// Both halves of a scale picker (rows 0–3, 4–7) in one vector.
#[target_feature(enable = "avx512f,avx2")]
fn picker(halves: &[[i8; 32]; 2]) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(load_picker(&halves[0])),
        load_picker(&halves[1]),
    )
}

#[target_feature(enable = "avx512f")]
fn load(bytes: &[[u8; 8]; TILE_ROWS]) -> __m512i {
    // SAFETY: the array holds the 64 bytes read; loadu takes any alignment.
    unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
}

/// Eight activations in every 64 bits.
#[target_feature(enable = "avx512f")]
fn broadcast_8(values: &[i8]) -> __m512i {
    let bytes: &[i8; 8] = values[..8].try_into().expect("eight activations");
    _mm512_set1_epi64(i64::from_le_bytes(bytes.map(|value| value as u8)))
}

/// Each row's two 32-bit lanes added: eight rows in order.
#[target_feature(enable = "avx512f")]
fn row_totals(lanes: __m512i) -> __m256i {
    // The low half of each 64 bits gets both lanes' sum; the narrowing keeps only it.
    _mm512_cvtepi64_epi32(_mm512_add_epi32(lanes, _mm512_srli_epi64::<32>(lanes)))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,f16c")]
fn q4k<const INPUTS: usize>(
    tiles: &[TileQ4K],
    inputs: &[&[ActivationSuperBlock]],
) -> [[f32; TILE_ROWS]; INPUTS] {
    assert!(inputs.len() == INPUTS && inputs.iter().all(|x| x.len() == tiles.len()));
    let nibbles = _mm512_set1_epi8(0x0f);
    let picker = picker(&UNSIGNED_SCALES);
    let mut sums = [_mm256_setzero_ps(); INPUTS];
    for (index, tile) in tiles.iter().enumerate() {
        let xs: [&ActivationSuperBlock; INPUTS] = std::array::from_fn(|n| &inputs[n][index]);
        let mut lanes = [_mm512_setzero_si512(); INPUTS];
        for p in 0..4 {
            let scales = |j: usize| {
                _mm512_shuffle_epi8(
                    _mm512_set1_epi64(i64::from_le_bytes(tile.scales[j])),
                    picker,
                )
            };
            let (low_scales, high_scales) = (scales(2 * p), scales(2 * p + 1));
            for c in 0..4 {
                let weights = load(&tile.qs[4 * p + c]);
                prefetch_ahead(&tile.qs[4 * p + c]);
                let low = _mm512_and_si512(weights, nibbles);
                let high = _mm512_and_si512(_mm512_srli_epi16::<4>(weights), nibbles);
                let v = 64 * p + 8 * c;
                for n in 0..INPUTS {
                    let x_low = broadcast_8(&xs[n].qs[v..]);
                    let x_high = broadcast_8(&xs[n].qs[v + 32..]);
                    lanes[n] =
                        _mm512_dpwssd_epi32(lanes[n], _mm512_maddubs_epi16(low, x_low), low_scales);
                    lanes[n] = _mm512_dpwssd_epi32(
                        lanes[n],
                        _mm512_maddubs_epi16(high, x_high),
                        high_scales,
                    );
                }
            }
        }
        let d = halves_to_f32(&tile.d);
        let dmin = halves_to_f32(&tile.dmin);
        for n in 0..INPUTS {
            let minimums = minimums(tile, xs[n]);
            sums[n] = q4k_step(sums[n], d, dmin, xs[n].d, row_totals(lanes[n]), minimums);
        }
    }
    sums.map(|sum| rows_of(sum))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,f16c")]
fn q6k<const INPUTS: usize>(
    tiles: &[TileQ6K],
    inputs: &[&[ActivationSuperBlock]],
) -> [[f32; TILE_ROWS]; INPUTS] {
    assert!(inputs.len() == INPUTS && inputs.iter().all(|x| x.len() == tiles.len()));
    let nibbles = _mm512_set1_epi8(0x0f);
    let high_pair = _mm512_set1_epi8(0x30);
    let picker = picker(&SIGNED_SCALES);
    let mut sums = [_mm256_setzero_ps(); INPUTS];
    for (index, tile) in tiles.iter().enumerate() {
        let xs: [&ActivationSuperBlock; INPUTS] = std::array::from_fn(|n| &inputs[n][index]);
        let mut lanes = [_mm512_setzero_si512(); INPUTS];
        for g in 0..8 {
            let pairs = load(&tile.qh[g]);
            for h in 0..2 {
                let part = 2 * g + h;
                let scales = _mm512_srai_epi16::<8>(_mm512_shuffle_epi8(
                    _mm512_set1_epi64(i64::from_le_bytes(tile.scales[part].map(|s| s as u8))),
                    picker,
                ));
                let low = load(&tile.ql[part]);
                prefetch_ahead(&tile.ql[part]);
                prefetch_ahead(&tile.qh[g]);
                // As in the AVX2 kernel: chunk 2h's high bits moved to bits 4, 5, then 2h + 1's.
                let (even, odd) = if h == 0 {
                    (_mm512_slli_epi16::<4>(pairs), _mm512_slli_epi16::<2>(pairs))
                } else {
                    (pairs, _mm512_srli_epi16::<2>(pairs))
                };
                let quants = |nibble: __m512i, pair: __m512i| {
                    _mm512_or_si512(
                        _mm512_and_si512(nibble, nibbles),
                        _mm512_and_si512(pair, high_pair),
                    )
                };
                let even = quants(low, even);
                let odd = quants(_mm512_srli_epi16::<4>(low), odd);
                let v = 32 * g + 16 * h;
                for n in 0..INPUTS {
                    let offset = _mm512_set1_epi32((-16 * xs[n].sums16[part]) as u16 as i32);
                    lanes[n] = _mm512_dpwssd_epi32(
                        lanes[n],
                        _mm512_maddubs_epi16(even, broadcast_8(&xs[n].qs[v..])),
                        scales,
                    );
                    lanes[n] = _mm512_dpwssd_epi32(
                        lanes[n],
                        _mm512_maddubs_epi16(odd, broadcast_8(&xs[n].qs[v + 8..])),
                        scales,
                    );
                    lanes[n] = _mm512_dpwssd_epi32(lanes[n], offset, scales);
                }
            }
        }
        let d = halves_to_f32(&tile.d);
        for n in 0..INPUTS {
            sums[n] = q6k_step(sums[n], d, xs[n].d, row_totals(lanes[n]));
        }
    }
    sums.map(|sum| rows_of(sum))
}

/// [`portable::q4k_tiles`](super::portable::q4k_tiles) with AVX-512: the same bits.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI, AVX2 and F16C.
pub unsafe fn q4k_tiles(
    tiles: &[TileQ4K],
    inputs: &[&[ActivationSuperBlock]],
    sums: &mut [[f32; TILE_ROWS]],
) {
    // SAFETY: the features are present (the caller's promise).
    unsafe { by_inputs!(q4k, tiles, inputs, sums) }
}

/// [`portable::q6k_tiles`](super::portable::q6k_tiles) with AVX-512: the same bits.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI, AVX2 and F16C.
pub unsafe fn q6k_tiles(
    tiles: &[TileQ6K],
    inputs: &[&[ActivationSuperBlock]],
    sums: &mut [[f32; TILE_ROWS]],
) {
    // SAFETY: the features are present (the caller's promise).
    unsafe { by_inputs!(q6k, tiles, inputs, sums) }
}
