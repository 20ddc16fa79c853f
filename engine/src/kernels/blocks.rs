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

/// Values per K-quant super-block (Q4_K, Q6_K): eight of the activations' blocks.
pub const SUPER_BLOCK: usize = 256;

/// `d: f16, dmin: f16, 12 bytes of 6-bit scales and minimums, 128 bytes of nibbles`: eight
/// 32-value sub-blocks, value = d·scale_j·q − dmin·min_j, q in 0..16. The nibbles come by
/// pairs of sub-blocks: byte l of pair p holds value l of sub-block 2p (low) and of 2p + 1
/// (high).
#[repr(C)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; SUPER_BLOCK / 2],
}

/// `128 bytes of low nibbles, 64 of high bit pairs, 16 signed scales, d: f16`: sixteen
/// 16-value parts, value = d·scale_part·(q − 32), q in 0..64. In each half of 128 values,
/// value 32k + l (k in 0..4, l in 0..32) takes the low nibble (k < 2) or high nibble (k ≥ 2)
/// of `ql[64·half + 32·(k % 2) + l]` and bits 2k, 2k + 1 of `qh[32·half + l]`.
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; SUPER_BLOCK / 2],
    pub qh: [u8; SUPER_BLOCK / 4],
    pub scales: [i8; SUPER_BLOCK / 16],
    pub d: [u8; 2],
}

// GGUF's sizes, and no padding: the structs can be laid over the file's bytes.
const _: () = assert!(size_of::<BlockQ4_1>() == 20 && align_of::<BlockQ4_1>() == 1);
const _: () = assert!(size_of::<BlockQ5_0>() == 22 && align_of::<BlockQ5_0>() == 1);
const _: () = assert!(size_of::<BlockQ8_0>() == 34 && align_of::<BlockQ8_0>() == 1);
const _: () = assert!(size_of::<BlockQ4K>() == 144 && align_of::<BlockQ4K>() == 1);
const _: () = assert!(size_of::<BlockQ6K>() == 210 && align_of::<BlockQ6K>() == 1);

/// A weight block that can be read in place from a file's bytes.
///
/// # Safety
/// Implemented only for `#[repr(C)]` structs of byte arrays (alignment 1, no padding, every bit
/// pattern valid), as the assertions above check for each.
pub unsafe trait WeightBlock: Sized {
    /// The block's scale `d`.
    fn scale(&self) -> f32;
}

// SAFETY: byte arrays only (asserted above).
unsafe impl WeightBlock for BlockQ4_1 {
    fn scale(&self) -> f32 {
        half(self.d)
    }
}

// SAFETY: byte arrays only (asserted above).
unsafe impl WeightBlock for BlockQ5_0 {
    fn scale(&self) -> f32 {
        half(self.d)
    }
}

// SAFETY: byte arrays only (asserted above).
unsafe impl WeightBlock for BlockQ8_0 {
    fn scale(&self) -> f32 {
        half(self.d)
    }
}

// SAFETY: byte arrays only (asserted above).
unsafe impl WeightBlock for BlockQ4K {
    fn scale(&self) -> f32 {
        half(self.d)
    }
}

// SAFETY: byte arrays only (asserted above).
unsafe impl WeightBlock for BlockQ6K {
    fn scale(&self) -> f32 {
        half(self.d)
    }
}

impl BlockQ4K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }

    pub fn dmin(&self) -> f32 {
        half(self.dmin)
    }

    /// The eight sub-blocks' 6-bit scales and minimums (llama.cpp's `get_scale_min_k4`,
    /// unpacked four at a time as its kernels do).
    pub fn scales_and_minimums(&self) -> ([u8; 8], [u8; 8]) {
        const LOW_SIX: u32 = 0x3f3f_3f3f;
        const LOW_FOUR: u32 = 0x0f0f_0f0f;
        const LOW_TWO: u32 = 0x0303_0303;
        let word = |i: usize| {
            u32::from_le_bytes(self.scales[4 * i..4 * i + 4].try_into().expect("4 bytes"))
        };
        let (first, second, third) = (word(0), word(1), word(2));
        let scales_low = first & LOW_SIX;
        let scales_high = (third & LOW_FOUR) | (((first >> 6) & LOW_TWO) << 4);
        let minimums_low = second & LOW_SIX;
        let minimums_high = ((third >> 4) & LOW_FOUR) | (((second >> 6) & LOW_TWO) << 4);
        let join = |low: u32, high: u32| {
            let mut bytes = [0u8; 8];
            bytes[..4].copy_from_slice(&low.to_le_bytes());
            bytes[4..].copy_from_slice(&high.to_le_bytes());
            bytes
        };
        (
            join(scales_low, scales_high),
            join(minimums_low, minimums_high),
        )
    }

    /// Value `i` of sub-block `j`, as q in 0..16: byte `i` of pair `j / 2`, its low nibble for
    /// even `j`.
    pub fn quant(&self, j: usize, i: usize) -> i32 {
        let byte = self.qs[32 * (j / 2) + i];
        (if j.is_multiple_of(2) {
            byte & 0x0f
        } else {
            byte >> 4
        }) as i32
    }
}

impl BlockQ6K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }

    /// Value `v` (0..256) as q in 0..64 (the weight is d·scale·(q − 32), `scale` that of
    /// part `v / 16`).
    pub fn quant(&self, v: usize) -> i32 {
        let (half, k, l) = (v / 128, v % 128 / 32, v % 32);
        let low = self.ql[64 * half + 32 * (k % 2) + l];
        let nibble = if k < 2 { low & 0x0f } else { low >> 4 };
        let pair = (self.qh[32 * half + l] >> (2 * k)) & 3;
        (nibble | (pair << 4)) as i32
    }
}

impl BlockQ4_1 {
    pub fn minimum(&self) -> f32 {
        half(self.m)
    }
}

impl BlockQ5_0 {
    /// Bit i is value i's fifth bit.
    pub fn fifth_bits(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

/// Exactly one block's bytes, read as the block.
pub fn view<B: WeightBlock>(bytes: &[u8]) -> &B {
    assert_eq!(bytes.len(), size_of::<B>());
    // SAFETY: the length is B's size (asserted), B has alignment 1 and accepts every bit
    // pattern (`WeightBlock`'s contract), and the borrow keeps the bytes alive.
    unsafe { &*bytes.as_ptr().cast::<B>() }
}

fn half(bits: [u8; 2]) -> f32 {
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

/// 256 activations as `d · qs`, one scale for a K-quant super-block (llama.cpp's Q8_K), and the
/// sums of each 16 of `qs` (what Q4_K's minimums and Q6_K's offset of 32 multiply): whole
/// super-blocks then add in integers, and meet floating point once.
pub struct ActivationSuperBlock {
    pub d: f32,
    pub qs: [i8; SUPER_BLOCK],
    pub sums: [i32; SUPER_BLOCK / 16],
}

pub fn quantize_super(values: &[f32]) -> ActivationSuperBlock {
    let mut qs = [0i8; SUPER_BLOCK];
    let d = quantize_into(values, &mut qs);
    let mut sums = [0i32; SUPER_BLOCK / 16];
    for (sum, sixteen) in sums.iter_mut().zip(qs.chunks_exact(16)) {
        *sum = sixteen.iter().map(|&q| q as i32).sum();
    }
    ActivationSuperBlock { d, qs, sums }
}

/// `values` as `d · qs`, d = max |value| / 127.
fn quantize_into(values: &[f32], qs: &mut [i8]) -> f32 {
    let largest = values
        .iter()
        .fold(0f32, |largest, value| largest.max(value.abs()));
    let d = largest / 127.0;
    let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
    for (q, value) in qs.iter_mut().zip(values) {
        *q = (value * inverse).round() as i8;
    }
    d
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
