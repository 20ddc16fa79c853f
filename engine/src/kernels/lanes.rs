//! The fixed order in which every back-end adds: eight lanes, summed as AVX2's horizontal sum
//! does, and one exact f16 conversion. The browser gives the server's tokens because of it.

/// Σ a·b in eight interleaved lanes added up by [`sum_lanes`]: the same order on every machine,
/// and one the compiler vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = a.chunks_exact(8).zip(b.chunks_exact(8));
    for (a, b) in &mut chunks {
        for lane in 0..8 {
            lanes[lane] += a[lane] * b[lane];
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(a, b)| a * b)
        .sum();
    sum_lanes(lanes) + tail
}

/// The eight lane sums added as AVX2's horizontal sum does: halves, then pairs, then the last two.
pub fn sum_lanes(lanes: [f32; 8]) -> f32 {
    let quarters = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    let pairs = [quarters[0] + quarters[2], quarters[1] + quarters[3]];
    pairs[0] + pairs[1]
}

/// The largest of `values` (−∞ for none), a NaN passed over as `f32::max` passes it over. By
/// comparison: in WebAssembly `f32::max` is a library call (its NaN rule is not the
/// instruction's), one per score of attention's softmax; four lanes at a time there.
pub fn largest(values: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd128::largest(values);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    values.iter().fold(f32::NEG_INFINITY, |largest, &value| {
        if value > largest { value } else { largest }
    })
}

/// The f16 scales of the blocks as f32, exactly for every finite value (the only kind sane
/// weights hold): the exponent and mantissa bits moved into place, then rebiased by multiplying
/// by 2¹¹², which also scales subnormals right. WebAssembly has no conversion instruction and
/// the `half` crate's software one made the browser's kernels 7% slower; every kernel uses this
/// one so that all give the same bits.
pub fn f16_to_f32(bits: u16) -> f32 {
    let bits = bits as u32;
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | ((bits & 0x8000) << 16))
}

/// `scores[s]` = [`dot`]`(query, key s)` for the keys laid one after the other in `keys`, to
/// the bit; eight keys at a time with AVX2, sharing each load of the query, and their lanes
/// summed side by side in [`sum_lanes`]' order (one key at a time with simd128). A 512-token
/// prompt's attention spent most of its time on one key at a time.
pub fn dots(query: &[f32], keys: &[f32], scores: &mut [f32]) {
    let dim = query.len();
    assert_eq!(keys.len(), scores.len() * dim);
    #[cfg(target_arch = "x86_64")]
    if dim.is_multiple_of(8) && std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { avx2::dots(query, keys, scores) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if dim.is_multiple_of(8) {
        super::simd128::dots(query, keys, scores);
        return;
    }
    for (score, key) in scores.iter_mut().zip(keys.chunks_exact(dim)) {
        *score = dot(query, key);
    }
}

/// `out[d]` = Σ over s, in order from zero, of `weights[s] · values[s][d]` (the value rows laid
/// one after the other); with AVX2, 64 of `out` kept in registers while every row passes (32
/// with simd128).
pub fn weighted_sum(weights: &[f32], values: &[f32], out: &mut [f32]) {
    let dim = out.len();
    assert_eq!(values.len(), weights.len() * dim);
    #[cfg(target_arch = "x86_64")]
    if dim.is_multiple_of(8) && std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { avx2::weighted_sum(weights, values, out) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if dim.is_multiple_of(8) {
        super::simd128::weighted_sum(weights, values, out);
        return;
    }
    out.fill(0.0);
    for (&weight, row) in weights.iter().zip(values.chunks_exact(dim)) {
        for (out, value) in out.iter_mut().zip(row) {
            *out += weight * value;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::dots`] for `query.len()` a multiple of 8.
    #[target_feature(enable = "avx2")]
    pub fn dots(query: &[f32], keys: &[f32], scores: &mut [f32]) {
        let dim = query.len();
        let load = |values: &[f32], at: usize| {
            let chunk: &[f32; 8] = values[at..at + 8].try_into().expect("eight floats");
            // SAFETY: the array holds the eight floats read; loadu takes any alignment.
            unsafe { _mm256_loadu_ps(chunk.as_ptr()) }
        };
        let done = scores.len() / 8 * 8;
        let mut groups = scores.chunks_exact_mut(8);
        for (group, scores) in (&mut groups).enumerate() {
            let keys = &keys[group * 8 * dim..(group + 1) * 8 * dim];
            let mut lanes = [_mm256_setzero_ps(); 8];
            for at in (0..dim).step_by(8) {
                let query = load(query, at);
                for (key, lanes) in lanes.iter_mut().enumerate() {
                    *lanes =
                        _mm256_add_ps(*lanes, _mm256_mul_ps(query, load(keys, key * dim + at)));
                }
            }
            // sum_lanes for eight keys at once: halves, then pairs, then the last two, with
            // the keys transposed into the lanes between the first step and the second.
            let quarters = lanes.map(|lanes| {
                _mm_add_ps(
                    _mm256_castps256_ps128(lanes),
                    _mm256_extractf128_ps::<1>(lanes),
                )
            });
            let joined: [__m256; 4] =
                std::array::from_fn(|k| _mm256_set_m128(quarters[k + 4], quarters[k]));
            // A 4×4 transpose within each half: lane k (k + 4 in the high half) of vector j
            // gets quarter j of key k.
            let low01 = _mm256_unpacklo_ps(joined[0], joined[1]);
            let high01 = _mm256_unpackhi_ps(joined[0], joined[1]);
            let low23 = _mm256_unpacklo_ps(joined[2], joined[3]);
            let high23 = _mm256_unpackhi_ps(joined[2], joined[3]);
            let cast = _mm256_castps_pd;
            let back = _mm256_castpd_ps;
            let q0 = back(_mm256_unpacklo_pd(cast(low01), cast(low23)));
            let q1 = back(_mm256_unpackhi_pd(cast(low01), cast(low23)));
            let q2 = back(_mm256_unpacklo_pd(cast(high01), cast(high23)));
            let q3 = back(_mm256_unpackhi_pd(cast(high01), cast(high23)));
            let total = _mm256_add_ps(_mm256_add_ps(q0, q2), _mm256_add_ps(q1, q3));
            // SAFETY: the group holds the eight floats stored; storeu takes any alignment.
            unsafe { _mm256_storeu_ps(scores.as_mut_ptr(), total) };
        }
        for (offset, score) in groups.into_remainder().iter_mut().enumerate() {
            let key = &keys[(done + offset) * dim..(done + offset + 1) * dim];
            *score = super::dot(query, key);
        }
    }

    /// [`super::weighted_sum`] for `out.len()` a multiple of 8.
    #[target_feature(enable = "avx2")]
    pub fn weighted_sum(weights: &[f32], values: &[f32], out: &mut [f32]) {
        let dim = out.len();
        for start in (0..dim).step_by(64) {
            let width = (dim - start).min(64);
            let mut sums = [_mm256_setzero_ps(); 8];
            for (s, &weight) in weights.iter().enumerate() {
                let row = &values[s * dim + start..s * dim + start + width];
                let weight = _mm256_set1_ps(weight);
                for (sum, chunk) in sums.iter_mut().zip(row.chunks_exact(8)) {
                    // SAFETY: the chunk holds the eight floats read; loadu takes any alignment.
                    let value = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
                    *sum = _mm256_add_ps(*sum, _mm256_mul_ps(weight, value));
                }
            }
            for (sum, chunk) in sums
                .iter()
                .zip(out[start..start + width].chunks_exact_mut(8))
            {
                // SAFETY: the chunk holds the eight floats stored; storeu takes any alignment.
                unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), *sum) };
            }
        }
    }
}
