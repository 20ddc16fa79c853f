//! The block formats, laid out as GGUF stores them, and the activations' own 8-bit blocks.
//! Every kernel reads weights through these structs: one place says where a block's scale,
//! fifth bits and quants lie.

use super::lanes::f16_to_f32;

/// Values per block, in every type here.
pub const BLOCK: usize = 32;

/// `d: f16, m: f16, 16 bytes of nibbles`: value = d·q + m, q in 0..16.
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; BLOCK / 2],
}

/// `d: f16, 4 bytes of fifth bits, 16 bytes of nibbles`: value = d·(q − 16), q in 0..32.
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; BLOCK / 2],
}

/// `d: f16, 32 signed bytes`: value = d·q.
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; BLOCK],
}

// GGUF's sizes, and no padding: the structs can be laid over the file's bytes.
const _: () = assert!(size_of::<BlockQ4_1>() == 20 && align_of::<BlockQ4_1>() == 1);
const _: () = assert!(size_of::<BlockQ5_0>() == 22 && align_of::<BlockQ5_0>() == 1);
const _: () = assert!(size_of::<BlockQ8_0>() == 34 && align_of::<BlockQ8_0>() == 1);

/// A struct that can be read in place from bytes.
///
/// # Safety
/// Implemented only for `#[repr(C)]` structs of byte arrays (alignment 1, no padding, every bit
/// pattern valid), as the assertions beside each check.
pub unsafe trait Plain: Sized {}

/// A 32-value weight block.
pub trait WeightBlock: Plain {
    /// The block's scale `d`, as f16 bits.
    fn scale_bits(&self) -> u16;

    fn scale(&self) -> f32 {
        f16_to_f32(self.scale_bits())
    }
}

// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for BlockQ4_1 {}
// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for BlockQ5_0 {}
// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for BlockQ8_0 {}

impl WeightBlock for BlockQ4_1 {
    fn scale_bits(&self) -> u16 {
        u16::from_le_bytes(self.d)
    }
}

impl WeightBlock for BlockQ5_0 {
    fn scale_bits(&self) -> u16 {
        u16::from_le_bytes(self.d)
    }
}

impl WeightBlock for BlockQ8_0 {
    fn scale_bits(&self) -> u16 {
        u16::from_le_bytes(self.d)
    }
}

impl BlockQ4_1 {
    /// The block's minimum `m`, as f16 bits.
    pub fn minimum_bits(&self) -> u16 {
        u16::from_le_bytes(self.m)
    }

    pub fn minimum(&self) -> f32 {
        f16_to_f32(self.minimum_bits())
    }
}

impl BlockQ5_0 {
    /// Bit i is value i's fifth bit.
    pub fn fifth_bits(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

/// Exactly one block's bytes, read as the block.
pub fn view<B: Plain>(bytes: &[u8]) -> &B {
    assert_eq!(bytes.len(), size_of::<B>());
    // SAFETY: the length is B's size (asserted), B has alignment 1 and accepts every bit
    // pattern (`Plain`'s contract), and the borrow keeps the bytes alive.
    unsafe { &*bytes.as_ptr().cast::<B>() }
}

pub(crate) fn half(bits: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(bits))
}

/// 32 activations as `d · qs`, and `d · Σqs` (what Q4_1's minimum multiplies).
pub struct ActivationBlock {
    pub d: f32,
    pub scaled_sum: f32,
    pub qs: [i8; BLOCK],
}

pub fn quantize(values: &[f32]) -> ActivationBlock {
    let mut qs = [0i8; BLOCK];
    let d = quantize_into(values, &mut qs);
    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
    ActivationBlock {
        d,
        scaled_sum: d * sum as f32,
        qs,
    }
}

/// `values` as `d · qs` (as many of each), d = max |value| / 127; returns d.
///
/// Every product's inputs go through here, on one thread, before the threads share the product:
/// with `f32::max` and `f32::round`, library calls in WebAssembly (their NaN and halfway rules
/// are not its instructions'), it took 1.6 ms of a 28 ms browser token (SmolLM2 at 600
/// positions, one thread, Node's WASI); the simd128 version of these steps takes 0.2 ms.
pub fn quantize_into(values: &[f32], qs: &mut [i8]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if values.len().is_multiple_of(16) {
        return super::simd128::quantize_into(values, qs);
    }
    portable_quantize_into(values, qs)
}

/// [`quantize_into`] one value at a time.
pub fn portable_quantize_into(values: &[f32], qs: &mut [i8]) -> f32 {
    // A NaN is passed over, as `f32::max` passes it over.
    let largest = values.iter().fold(0f32, |largest, value| {
        let magnitude = value.abs();
        if magnitude > largest {
            magnitude
        } else {
            largest
        }
    });
    let d = largest / 127.0;
    let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
    for (q, value) in qs.iter_mut().zip(values) {
        *q = round_half_away(value * inverse) as i8;
    }
    d
}

/// `value.round()`, halfway cases away from zero, with instructions every SIMD set has: the
/// fraction `value − trunc(value)` is exact, so comparing it with ½ decides as `round` does.
pub fn round_half_away(value: f32) -> f32 {
    let whole = value.trunc();
    if (value - whole).abs() >= 0.5 {
        whole + 1f32.copysign(value)
    } else {
        whole
    }
}

/// Weight rows multiplied per pass over the activations.
pub const ROW_GROUP: usize = 4;

/// Row-major blocks regrouped so that each group of [`ROW_GROUP`] rows (fewer in the last one)
/// holds its rows' first blocks, then their second blocks, and so on: a group's kernel then
/// reads memory in one sequential stream, which the CPU prefetches well (four rows read side
/// by side made it wait for memory most of the time).
pub fn interleave(weights: &[u8], rows: usize, row_bytes: usize, block_bytes: usize) -> Vec<u8> {
    let mut grouped = Vec::with_capacity(weights.len());
    for group in weights.chunks(ROW_GROUP * row_bytes) {
        let group_rows: Vec<&[u8]> = group.chunks_exact(row_bytes).collect();
        for start in (0..row_bytes).step_by(block_bytes) {
            for row in &group_rows {
                grouped.extend_from_slice(&row[start..start + block_bytes]);
            }
        }
    }
    debug_assert_eq!(grouped.len(), rows * row_bytes);
    grouped
}

/// Where block `index` of row `row` starts in an interleaved group of `rows` rows.
pub fn block_start<B: WeightBlock>(row: usize, rows: usize, index: usize) -> usize {
    (index * rows + row) * size_of::<B>()
}

/// Block `index` of row `row` in an interleaved group of `rows` rows.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn block_in_group<B: WeightBlock>(group: &[u8], row: usize, rows: usize, index: usize) -> &B {
    let start = block_start::<B>(row, rows, index);
    view(&group[start..start + size_of::<B>()])
}

/// The blocks of row `row` of an interleaved group of `rows` rows.
pub fn row_blocks<B: WeightBlock>(
    group: &[u8],
    row: usize,
    rows: usize,
) -> super::RowBlocks<'_, B> {
    group
        .chunks_exact(size_of::<B>())
        .skip(row)
        .step_by(rows)
        .map(view::<B> as fn(&[u8]) -> &B)
}
