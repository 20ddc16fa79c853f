//! Q4_K and Q6_K: nearly every matrix of the 1–7B "Q4_K_M" files teams publish.
//!
//! The weights are regrouped at load into eight-row tiles ([`tiles`]); the activations are
//! quantised 256 at a time with one scale (llama.cpp's Q8_K). A super-block's products then add
//! up as exact integers, whatever the instruction set, and meet floating point once per row and
//! super-block — in the one order [`portable`] writes down, so every back-end gives the same
//! bits. One back-end file each: [`portable`] (other CPUs), `simd128` (the browser), `avx2`
//! (x86, with AVX-VNNI's fused products where present) and `avx512` (F, BW and VNNI), chosen at
//! run time.

/// Runs `$kernel` for every input of `$inputs` (1 to 4 of them), four, two or one at a time,
/// into `$sums`.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
macro_rules! by_inputs {
    ($kernel:ident, $tiles:expr, $inputs:expr, $sums:expr) => {{
        let mut first = 0;
        while first < $inputs.len() {
            let left = $inputs.len() - first;
            let inputs = &$inputs[first..];
            if left >= 4 {
                $sums[first..first + 4].copy_from_slice(&$kernel::<4>($tiles, &inputs[..4]));
                first += 4;
            } else if left >= 2 {
                $sums[first..first + 2].copy_from_slice(&$kernel::<2>($tiles, &inputs[..2]));
                first += 2;
            } else {
                $sums[first..first + 1].copy_from_slice(&$kernel::<1>($tiles, &inputs[..1]));
                first += 1;
            }
        }
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
pub mod tiles;

use tiles::{
    ActivationSuperBlock, BlockQ4K, BlockQ6K, SUPER_BLOCK, TILE_ROWS, TileQ4K, TileQ6K, tile_q4k,
    tile_q6k,
};

use super::blocks::{Plain, view};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KQuant {
    Q4K,
    Q6K,
}

impl KQuant {
    /// Bytes of one GGUF super-block.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            KQuant::Q4K => size_of::<BlockQ4K>(),
            KQuant::Q6K => size_of::<BlockQ6K>(),
        }
    }

    pub fn tile_bytes(self) -> usize {
        match self {
            KQuant::Q4K => size_of::<TileQ4K>(),
            KQuant::Q6K => size_of::<TileQ6K>(),
        }
    }
}

/// A GGUF matrix's bytes (rows × columns, row-major) as tiles: for each group of eight rows
/// (the last one padded with zero rows), its tiles from the first columns to the last. The
/// caller has checked the size: whole super-blocks, `rows` rows of them.
pub(crate) fn to_tiles(kind: KQuant, bytes: &[u8], rows: usize, columns: usize) -> Vec<u8> {
    let per_row = columns / SUPER_BLOCK;
    let row_bytes = per_row * kind.block_bytes();
    assert_eq!(bytes.len(), rows * row_bytes);
    let groups = rows.div_ceil(TILE_ROWS);
    let mut tiled = Vec::with_capacity(groups * per_row * kind.tile_bytes());
    for group in bytes.chunks(TILE_ROWS * row_bytes) {
        let group_rows: Vec<&[u8]> = group.chunks_exact(row_bytes).collect();
        for index in 0..per_row {
            let blocks = group_rows
                .iter()
                .map(|row| &row[index * kind.block_bytes()..][..kind.block_bytes()]);
            match kind {
                KQuant::Q4K => {
                    let blocks: Vec<&BlockQ4K> = blocks.map(view).collect();
                    tiled.extend_from_slice(as_bytes(&tile_q4k(&blocks)));
                }
                KQuant::Q6K => {
                    let blocks: Vec<&BlockQ6K> = blocks.map(view).collect();
                    tiled.extend_from_slice(as_bytes(&tile_q6k(&blocks)));
                }
            }
        }
    }
    tiled
}

fn as_bytes<T: Plain>(value: &T) -> &[u8] {
    // SAFETY: `T` is plain bytes without padding (`Plain`'s contract), borrowed for as long.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A whole number of `T`s read in place from bytes.
fn view_all<T: Plain>(bytes: &[u8]) -> &[T] {
    assert_eq!(bytes.len() % size_of::<T>(), 0);
    // SAFETY: the length is a multiple of T's size (asserted), T has alignment 1 and accepts
    // every bit pattern (`Plain`'s contract), and the borrow keeps the bytes alive.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size_of::<T>()) }
}

/// A row group's tiles (its bytes) against 1 to 4 inputs (each a row's super-blocks):
/// `sums[input]` gets the group's eight rows.
pub type TilesDot = fn(&[u8], &[&[ActivationSuperBlock]], &mut [[f32; TILE_ROWS]]);

/// The fastest kernel this CPU runs for one input (`several` false) or more.
///
/// AVX-512 only where several inputs share each weight load: alone (decoding) the AVX2 kernel
/// was 5% faster on the llama-1b shape (25.6–27.3 against 24.5–25.2 tok/s, 2 threads, in
/// turns), as the weights' loads bound both; a 16-token prompt read 8% faster with AVX-512.
pub fn kernel(kind: KQuant, several: bool) -> TilesDot {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = several
        .then(|| avx512_kernel(kind))
        .flatten()
        .or_else(|| avx2_kernel(kind, std::is_x86_feature_detected!("avxvnni")))
    {
        return kernel;
    }
    let _ = several;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return match kind {
        KQuant::Q4K => |tiles, inputs, sums| simd128::q4k_tiles(view_all(tiles), inputs, sums),
        KQuant::Q6K => |tiles, inputs, sums| simd128::q6k_tiles(view_all(tiles), inputs, sums),
    };
    #[allow(unreachable_code)]
    portable_kernel(kind)
}

/// The AVX-512 kernels: `None` where the CPU lacks what they need.
#[cfg(target_arch = "x86_64")]
pub fn avx512_kernel(kind: KQuant) -> Option<TilesDot> {
    let present = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("f16c");
    fn q4k(tiles: &[u8], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; TILE_ROWS]]) {
        // SAFETY: handed out only below, once the features were found.
        unsafe { avx512::q4k_tiles(view_all(tiles), inputs, sums) }
    }
    fn q6k(tiles: &[u8], inputs: &[&[ActivationSuperBlock]], sums: &mut [[f32; TILE_ROWS]]) {
        // SAFETY: handed out only below, once the features were found.
        unsafe { avx512::q6k_tiles(view_all(tiles), inputs, sums) }
    }
    present.then_some(match kind {
        KQuant::Q4K => q4k,
        KQuant::Q6K => q6k,
    })
}

/// The reference: every other kernel gives its bits.
pub fn portable_kernel(kind: KQuant) -> TilesDot {
    match kind {
        KQuant::Q4K => |tiles, inputs, sums| portable::q4k_tiles(view_all(tiles), inputs, sums),
        KQuant::Q6K => |tiles, inputs, sums| portable::q6k_tiles(view_all(tiles), inputs, sums),
    }
}

/// The x86 kernels, with AVX-VNNI or without (the tests run both): `None` where the CPU lacks
/// what they need.
#[cfg(target_arch = "x86_64")]
pub fn avx2_kernel(kind: KQuant, vnni: bool) -> Option<TilesDot> {
    if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c"))
        || (vnni && !std::is_x86_feature_detected!("avxvnni"))
    {
        return None;
    }
    fn q4k<const VNNI: bool>(
        tiles: &[u8],
        inputs: &[&[ActivationSuperBlock]],
        sums: &mut [[f32; TILE_ROWS]],
    ) {
        // SAFETY: handed out only below, once the features were found.
        unsafe { avx2::q4k_tiles(view_all(tiles), inputs, sums, VNNI) }
    }
    fn q6k<const VNNI: bool>(
        tiles: &[u8],
        inputs: &[&[ActivationSuperBlock]],
        sums: &mut [[f32; TILE_ROWS]],
    ) {
        // SAFETY: handed out only below, once the features were found.
        unsafe { avx2::q6k_tiles(view_all(tiles), inputs, sums, VNNI) }
    }
    Some(match (kind, vnni) {
        (KQuant::Q4K, false) => q4k::<false>,
        (KQuant::Q4K, true) => q4k::<true>,
        (KQuant::Q6K, false) => q6k::<false>,
        (KQuant::Q6K, true) => q6k::<true>,
    })
}
