//! Q4_K and Q6_K as GGUF stores them, the eight-row tiles the kernels read instead, and the
//! activations' 256-value blocks.
//!
//! A tile holds one 256-value super-block of eight weight rows, rearranged so that 64 bytes
//! read in a row give eight consecutive values of each of the eight rows: one vector meets the
//! same eight activations in every row, and a pass over the tiles reads memory in one stream.
//! Scales and minimums are unpacked to a byte each (Q4_K's tile is 2.8% larger than its eight
//! blocks, Q6_K's the same size) so the kernels spend no work on their 6-bit fields.

use crate::kernels::blocks::{Plain, quantize_into};

/// Values per super-block.
pub const SUPER_BLOCK: usize = 256;

/// Weight rows per tile.
pub const TILE_ROWS: usize = 8;

/// `d: f16, dmin: f16, 12 bytes of 6-bit scales and minimums, 128 bytes of nibbles`: eight
/// 32-value sub-blocks, value = d·scale_j·q − dmin·min_j, q in 0..16. Byte l of pair p holds
/// value l of sub-block 2p (low nibble) and of 2p + 1 (high).
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

/// Eight rows' Q4_K super-blocks. `qs[4p + c][r]` holds values 8c..8c + 8 of sub-blocks 2p
/// (low nibbles) and 2p + 1 (high nibbles) of row r.
#[repr(C)]
pub struct TileQ4K {
    pub d: [[u8; 2]; TILE_ROWS],
    pub dmin: [[u8; 2]; TILE_ROWS],
    /// `[sub-block][row]`.
    pub scales: [[u8; TILE_ROWS]; 8],
    /// `[pair of sub-blocks][row][which of the pair]`: the minimums meet the activations' sums
    /// two sub-blocks at a time.
    pub mins: [[[u8; 2]; TILE_ROWS]; 4],
    pub qs: [[[u8; 8]; TILE_ROWS]; 16],
}

/// Eight rows' Q6_K super-blocks. Chunk c (0..4) of group g (0..8) is values 32g + 8c .. + 8;
/// `ql[2g + h][r]` holds the low nibbles of row r's chunk 2h (low nibbles) and 2h + 1 (high),
/// and `qh[g][r]` the high bit pairs of its four chunks, chunk c in bits 2c, 2c + 1.
#[repr(C)]
pub struct TileQ6K {
    pub d: [[u8; 2]; TILE_ROWS],
    /// `[part][row]`.
    pub scales: [[i8; TILE_ROWS]; 16],
    pub ql: [[[u8; 8]; TILE_ROWS]; 16],
    pub qh: [[[u8; 8]; TILE_ROWS]; 8],
}

// GGUF's sizes, and no padding: the structs can be laid over bytes.
const _: () = assert!(size_of::<BlockQ4K>() == 144 && align_of::<BlockQ4K>() == 1);
const _: () = assert!(size_of::<BlockQ6K>() == 210 && align_of::<BlockQ6K>() == 1);
const _: () = assert!(size_of::<TileQ4K>() == 1184 && align_of::<TileQ4K>() == 1);
const _: () = assert!(size_of::<TileQ6K>() == 8 * 210 && align_of::<TileQ6K>() == 1);

// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for BlockQ4K {}
// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for BlockQ6K {}
// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for TileQ4K {}
// SAFETY: byte arrays only (asserted above).
unsafe impl Plain for TileQ6K {}

impl BlockQ4K {
    /// Sub-block j's 6-bit scale and minimum (llama.cpp's `get_scale_min_k4`).
    fn scale_and_minimum(&self, j: usize) -> (u8, u8) {
        let s = &self.scales;
        if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            (
                (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
            )
        }
    }
}

impl BlockQ6K {
    /// Value `v` (0..256) as q in 0..64.
    fn quant(&self, v: usize) -> u8 {
        let (half, k, l) = (v / 128, v % 128 / 32, v % 32);
        let low = self.ql[64 * half + 32 * (k % 2) + l];
        let nibble = if k < 2 { low & 0x0f } else { low >> 4 };
        let pair = (self.qh[32 * half + l] >> (2 * k)) & 3;
        nibble | (pair << 4)
    }
}

/// A tile of the eight rows' blocks (fewer rows leave the rest zero: they multiply to 0).
pub fn tile_q4k(blocks: &[&BlockQ4K]) -> TileQ4K {
    let mut tile = TileQ4K {
        d: [[0; 2]; TILE_ROWS],
        dmin: [[0; 2]; TILE_ROWS],
        scales: [[0; TILE_ROWS]; 8],
        mins: [[[0; 2]; TILE_ROWS]; 4],
        qs: [[[0; 8]; TILE_ROWS]; 16],
    };
    for (r, block) in blocks.iter().enumerate() {
        tile.d[r] = block.d;
        tile.dmin[r] = block.dmin;
        for j in 0..8 {
            let (scale, minimum) = block.scale_and_minimum(j);
            tile.scales[j][r] = scale;
            tile.mins[j / 2][r][j % 2] = minimum;
        }
        for p in 0..4 {
            for c in 0..4 {
                tile.qs[4 * p + c][r].copy_from_slice(&block.qs[32 * p + 8 * c..][..8]);
            }
        }
    }
    tile
}

/// A tile of the eight rows' blocks (fewer rows leave the rest zero).
pub fn tile_q6k(blocks: &[&BlockQ6K]) -> TileQ6K {
    let mut tile = TileQ6K {
        d: [[0; 2]; TILE_ROWS],
        scales: [[0; TILE_ROWS]; 16],
        ql: [[[0; 8]; TILE_ROWS]; 16],
        qh: [[[0; 8]; TILE_ROWS]; 8],
    };
    for (r, block) in blocks.iter().enumerate() {
        tile.d[r] = block.d;
        for part in 0..16 {
            tile.scales[part][r] = block.scales[part];
        }
        for g in 0..8 {
            for c in 0..4 {
                for i in 0..8 {
                    let q = block.quant(32 * g + 8 * c + i);
                    let nibbles = &mut tile.ql[2 * g + c / 2][r][i];
                    *nibbles |= (q & 0x0f) << (4 * (c % 2));
                    tile.qh[g][r][i] |= (q >> 4) << (2 * c);
                }
            }
        }
    }
    tile
}

/// 256 activations as `d · qs`, with the sums of each 16 and each 32 of `qs` (what Q6_K's
/// offset of 32 and Q4_K's minimums multiply): whole super-blocks then add in integers and
/// meet floating point once per row.
pub struct ActivationSuperBlock {
    pub d: f32,
    pub qs: [i8; SUPER_BLOCK],
    /// The x86 kernels' way to Q6_K's offset; the portable one subtracts 32 from each weight.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub sums16: [i16; 16],
    pub sums32: [i16; 8],
}

/// `values` (256 of them) as an [`ActivationSuperBlock`].
pub fn quantize_super(values: &[f32]) -> ActivationSuperBlock {
    let mut qs = [0i8; SUPER_BLOCK];
    let d = quantize_into(values, &mut qs);
    let mut sums16 = [0i16; 16];
    for (sum, sixteen) in sums16.iter_mut().zip(qs.chunks_exact(16)) {
        *sum = sixteen.iter().map(|&q| q as i16).sum();
    }
    let sums32 = std::array::from_fn(|j| sums16[2 * j] + sums16[2 * j + 1]);
    ActivationSuperBlock {
        d,
        qs,
        sums16,
        sums32,
    }
}
