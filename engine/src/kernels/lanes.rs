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
