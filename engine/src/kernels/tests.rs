//! The kernels against the dequantised weights, against candle, and against each other.
use super::*;
use crate::kernels::lanes::f16_to_f32;
use candle_core::Device;

const EVERY_TYPE: [GgmlDType; 5] = [
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q8_0,
    GgmlDType::Q4K,
    GgmlDType::Q6K,
];

/// Weights and inputs with every nibble, every fifth bit and both signs.
fn matrices(dtype: GgmlDType, rows: usize, columns: usize, input_rows: usize) -> (QTensor, Tensor) {
    let weights: Vec<f32> = (0..rows * columns)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
        .collect();
    let weights = Tensor::from_vec(weights, (rows, columns), &Device::Cpu).unwrap();
    let inputs: Vec<f32> = (0..input_rows * columns)
        .map(|i| ((i * 104729 % 997) as f32 / 498.5 - 1.0) * 3.0)
        .collect();
    let inputs = Tensor::from_vec(inputs, (input_rows, columns), &Device::Cpu).unwrap();
    (QTensor::quantize(&weights, dtype).unwrap(), inputs)
}

/// The products of the dequantised weights and the f32 inputs, within what quantising the
/// inputs to 8 bits costs (1% of Σ|w·x|), like candle's own kernels; for one input row
/// (decoding) and several (a prompt).
#[test]
fn products_are_those_of_the_dequantised_weights() {
    for dtype in EVERY_TYPE {
        for input_rows in [1, 5] {
            let (weights, inputs) = matrices(dtype, 70, 256, input_rows);
            let dequantised = weights.dequantize(&Device::Cpu).unwrap();
            let exact = inputs.matmul(&dequantised.t().unwrap()).unwrap();
            let magnitude = inputs
                .abs()
                .unwrap()
                .matmul(&dequantised.abs().unwrap().t().unwrap())
                .unwrap();
            let ours = QuantMatMul::new(&weights)
                .unwrap()
                .unwrap()
                .forward(&inputs)
                .unwrap();
            let candle = candle_core::quantized::QMatMul::from_qtensor(weights).unwrap();
            let candle = candle_core::Module::forward(&candle, &inputs).unwrap();
            assert_eq!(ours.dims(), exact.dims());
            let flat =
                |tensor: &Tensor| -> Vec<f32> { tensor.flatten_all().unwrap().to_vec1().unwrap() };
            for (((got, by_candle), want), magnitude) in flat(&ours)
                .iter()
                .zip(flat(&candle))
                .zip(flat(&exact))
                .zip(flat(&magnitude))
            {
                let bound = 0.01 * magnitude;
                assert!(
                    (got - want).abs() <= bound,
                    "{dtype:?}: {got}, exactly {want} (bound {bound})"
                );
                assert!(
                    (by_candle - want).abs() <= bound,
                    "{dtype:?}: candle {by_candle}, exactly {want}"
                );
            }
        }
    }
}

/// A prompt's rows (several at once, four or two at a time where a kernel takes several) get
/// the very bits each row gets alone, as when decoding.
#[test]
fn rows_of_a_prompt_get_the_bits_of_one_row_alone() {
    for dtype in EVERY_TYPE {
        // Seven: a group of four, a pair and one alone.
        let (weights, inputs) = matrices(dtype, 7, 256, 7);
        let matmul = QuantMatMul::new(&weights).unwrap().unwrap();
        let together = matmul.forward(&inputs).unwrap();
        for row in 0..7 {
            let alone = matmul.forward(&inputs.narrow(0, row, 1).unwrap()).unwrap();
            let bits = |tensor: &Tensor| -> Vec<u32> {
                let values: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
                values.into_iter().map(f32::to_bits).collect()
            };
            assert_eq!(
                bits(&together.narrow(0, row, 1).unwrap()),
                bits(&alone),
                "{dtype:?}, row {row}"
            );
        }
    }
}

/// The scales' conversion agrees with the `half` crate's for every finite f16.
#[test]
fn f16_scales_convert_exactly() {
    for bits in 0..=u16::MAX {
        let reference = half::f16::from_bits(bits);
        if reference.is_finite() {
            assert_eq!(
                f16_to_f32(bits).to_bits(),
                reference.to_f32().to_bits(),
                "{bits:#06x}"
            );
        }
    }
}

/// The activations' rounding is `f32::round`'s, halfway cases and all, over a spread of every
/// exponent; and the quantisation in use (simd128 in WebAssembly) gives the one-value loop's
/// bits, NaNs, infinities, signed zeros and halfway values included.
#[test]
fn activations_quantize_as_the_one_value_loop() {
    for bits in (0..=u32::MAX).step_by(4099) {
        for value in [f32::from_bits(bits), f32::from_bits(bits) + 0.5] {
            let (ours, std) = (blocks::round_half_away(value), value.round());
            // A NaN's payload may differ; it quantises to 0 all the same.
            if !(ours.is_nan() && std.is_nan()) {
                assert_eq!(ours.to_bits(), std.to_bits(), "{value:e}");
            }
        }
    }
    let special = [
        0.0,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -2.5,
        126.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        1e-40,
        3.4e38,
    ];
    for case in 0..64usize {
        let values: Vec<f32> = (0..BLOCK)
            .map(|i| match case {
                // Halfway after scaling: the largest is 127, so d is 1.
                0 => i as f32 - 15.5 + if i == 0 { 127.0 + 15.5 } else { 0.0 },
                1 => 0.0,
                _ if (i + case) % 5 == 0 => special[(i * 7 + case) % special.len()],
                _ => ((i * 7919 + case * 104_729) % 2001) as f32 / 1000.0 - 1.0,
            })
            .collect();
        let (mut fast, mut slow) = ([0i8; BLOCK], [0i8; BLOCK]);
        let (d_fast, d_slow) = (
            blocks::quantize_into(&values, &mut fast),
            blocks::portable_quantize_into(&values, &mut slow),
        );
        assert_eq!(
            d_fast.to_bits(),
            d_slow.to_bits(),
            "case {case}: {values:?}"
        );
        assert_eq!(fast, slow, "case {case}: {values:?}");
    }
}

/// Softmax's largest score (simd128 in WebAssembly) is `f32::max`'s, NaNs passed over, for
/// lengths that do and do not fill the vectors.
#[test]
fn largest_is_that_of_f32_max() {
    for len in [0, 1, 3, 4, 7, 16, 33] {
        for case in 0..8usize {
            let values: Vec<f32> = (0..len)
                .map(|i| match (i * 5 + case) % 9 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    _ => ((i * 7919 + case * 31) % 1000) as f32 - 600.0,
                })
                .collect();
            let want = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(
                lanes::largest(&values).to_bits(),
                want.to_bits(),
                "{values:?}"
            );
        }
    }
}

/// This machine's one-row kernels (AVX2; simd128 in WebAssembly, whose tests run under WASI)
/// and the portable ones give the same bits, for whole and partial groups of rows.
#[test]
fn simd_and_portable_agree_to_the_bit() {
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let rows = 7;
        let (weights, inputs) = matrices(dtype, rows, 512, 1);
        let matmul = QuantMatMul::new(&weights).unwrap().unwrap();
        let inputs: Vec<f32> = inputs.flatten_all().unwrap().to_vec1().unwrap();
        let blocks: Vec<ActivationBlock> = inputs.chunks_exact(BLOCK).map(quantize).collect();
        let Format::Blocks(kind) = matmul.format else {
            panic!("{dtype:?} is held in blocks")
        };
        let block_bytes = kind.block_bytes();
        let (first, rest) = matmul
            .weights
            .split_at(ROW_GROUP * 512 / BLOCK * block_bytes);
        let mut fast = vec![0f32; rows];
        let mut slow = vec![0f32; rows];
        for (group, range) in [(first, 0..ROW_GROUP), (rest, ROW_GROUP..rows)] {
            rows_function(kind)(group, &blocks, &mut fast[range.clone()]);
            portable_rows(kind)(group, &blocks, &mut slow[range]);
        }
        for (fast, slow) in fast.iter().zip(&slow) {
            assert_eq!(
                fast.to_bits(),
                slow.to_bits(),
                "{dtype:?}: {fast} against {slow}"
            );
        }
    }
}

/// A group of rows held in 32-value blocks, and `inputs` input rows quantised as the kernels
/// take them. For the tests of several kernels of one machine.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", feature = "relaxed-simd")
))]
fn group_case(
    dtype: GgmlDType,
    columns: usize,
    inputs: usize,
) -> (QuantMatMul, Kind, Vec<ActivationBlock>) {
    let (weights, inputs) = matrices(dtype, ROW_GROUP, columns, inputs);
    let matmul = QuantMatMul::new(&weights).unwrap().unwrap();
    let Format::Blocks(kind) = matmul.format else {
        panic!("{dtype:?} is held in blocks")
    };
    let inputs: Vec<f32> = inputs.flatten_all().unwrap().to_vec1().unwrap();
    let blocks = inputs.chunks_exact(BLOCK).map(quantize).collect();
    (matmul, kind, blocks)
}

/// Each input's sums for a group of rows, as bits.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", feature = "relaxed-simd")
))]
fn bits(sums: &[[f32; ROW_GROUP]]) -> Vec<u32> {
    sums.iter().flatten().map(|sum| sum.to_bits()).collect()
}

/// `several` gives `expected`'s bits for the first `fewest` to all of `rows` at once.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", feature = "relaxed-simd")
))]
fn assert_inputs_give(
    several: InputsDot,
    weights: &[u8],
    rows: &[&[ActivationBlock]],
    expected: &[[f32; ROW_GROUP]],
    fewest: usize,
    what: &str,
) {
    for count in fewest..=rows.len() {
        let mut sums = vec![[0f32; ROW_GROUP]; count];
        several(weights, &rows[..count], &mut sums, ROW_GROUP);
        assert_eq!(
            bits(&sums),
            bits(&expected[..count]),
            "{what}, {count} inputs"
        );
    }
}

/// The kernels that take several input rows give each row the one-row kernel's bits, with
/// AVX-VNNI and without (a machine with it would otherwise never run the other).
#[test]
#[cfg(target_arch = "x86_64")]
fn several_inputs_get_the_bits_of_one_row_with_avx2_vnni_and_avx512() {
    if !std::is_x86_feature_detected!("avx2") {
        return;
    }
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let columns = 512;
        let (matmul, kind, blocks) = group_case(dtype, columns, 11);
        let rows: Vec<&[ActivationBlock]> = blocks.chunks_exact(columns / BLOCK).collect();
        let alone: Vec<[f32; ROW_GROUP]> = rows
            .iter()
            .map(|row| {
                let mut sums = [0f32; ROW_GROUP];
                portable_rows(kind)(&matmul.weights, row, &mut sums);
                sums
            })
            .collect();
        let avx2 = [false, true]
            .into_iter()
            .filter(|&vnni| !vnni || std::is_x86_feature_detected!("avxvnni"))
            .map(|vnni| {
                // SAFETY: AVX2 is present (checked above), and AVX-VNNI where asked for.
                let several = unsafe { avx2_inputs_function(kind, vnni) };
                (format!("AVX2, vnni {vnni}"), several)
            });
        let avx512 = avx512_inputs_function(kind).map(|several| ("AVX-512".to_owned(), several));
        for (kernel, several) in avx2.chain(avx512) {
            // AVX-512 from eight inputs, repeating the last input to fill its lanes past them.
            let what = format!("{dtype:?}, {kernel}");
            assert_inputs_give(several, &matmul.weights, &rows, &alone, 2, &what);
        }
    }
}

/// The bundle built with relaxed SIMD runs its own Q4_1 and Q5_0 kernels (the ones in use,
/// tested above); its build also holds every other browser's, which must still give the
/// portable kernels' bits, one input row and several.
#[test]
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    feature = "relaxed-simd"
))]
fn browser_kernels_without_relaxed_simd_agree_to_the_bit() {
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0] {
        let columns = 512;
        let (matmul, kind, blocks) = group_case(dtype, columns, 7);
        let rows: Vec<&[ActivationBlock]> = blocks.chunks_exact(columns / BLOCK).collect();
        let mut portable = [[0f32; ROW_GROUP]; 7];
        let mut one_row = [[0f32; ROW_GROUP]; 7];
        for ((row, portable), one_row) in rows.iter().zip(&mut portable).zip(&mut one_row) {
            portable_rows(kind)(&matmul.weights, row, portable);
            simd128_rows(kind)(&matmul.weights, row, one_row);
        }
        assert_eq!(bits(&one_row), bits(&portable), "{dtype:?}, one row");
        let what = format!("{dtype:?}");
        assert_inputs_give(
            simd128_inputs(kind),
            &matmul.weights,
            &rows,
            &portable,
            1,
            &what,
        );
    }
}

/// Columns of the K-quant cases: three super-blocks.
const K_QUANT_COLUMNS: usize = 3 * SUPER_BLOCK;

/// A K-quant matrix of `rows` rows and `inputs` input rows, quantised as the kernels take them.
fn k_quant_case(
    k_quant: KQuant,
    rows: usize,
    inputs: usize,
) -> (QuantMatMul, Vec<ActivationSuperBlock>) {
    let dtype = match k_quant {
        KQuant::Q4K => GgmlDType::Q4K,
        KQuant::Q6K => GgmlDType::Q6K,
    };
    let (weights, inputs) = matrices(dtype, rows, K_QUANT_COLUMNS, inputs);
    let matmul = QuantMatMul::new(&weights).unwrap().unwrap();
    let inputs: Vec<f32> = inputs.flatten_all().unwrap().to_vec1().unwrap();
    let blocks = inputs
        .chunks_exact(SUPER_BLOCK)
        .map(quantize_super)
        .collect();
    (matmul, blocks)
}

/// The K-quant kernels with AVX2 (with AVX-VNNI and without) and AVX-512 give the portable
/// kernel's bits (the browser's) for any number of inputs and a group of rows that is not whole.
#[test]
#[cfg(target_arch = "x86_64")]
fn k_quant_kernels_agree_to_the_bit() {
    for k_quant in [KQuant::Q4K, KQuant::Q6K] {
        let (matmul, blocks) = k_quant_case(k_quant, 5, 7);
        let rows: Vec<&[ActivationSuperBlock]> =
            blocks.chunks_exact(K_QUANT_COLUMNS / SUPER_BLOCK).collect();
        let bits = |sums: &[[f32; TILE_ROWS]]| -> Vec<u32> {
            sums.iter().flatten().map(|sum| sum.to_bits()).collect()
        };
        for count in 1..=7 {
            let mut reference = [[0f32; TILE_ROWS]; 7];
            k_quants::portable_kernel(k_quant)(
                &matmul.weights,
                &rows[..count],
                &mut reference[..count],
            );
            assert!(reference[..count].iter().flatten().any(|sum| *sum != 0.0));
            let kernels = [
                ("AVX2", k_quants::avx2_kernel(k_quant, false)),
                ("AVX2 and AVX-VNNI", k_quants::avx2_kernel(k_quant, true)),
                ("AVX-512", k_quants::avx512_kernel(k_quant)),
            ];
            for (name, kernel) in kernels {
                let Some(kernel) = kernel else { continue };
                let mut sums = [[0f32; TILE_ROWS]; 7];
                kernel(&matmul.weights, &rows[..count], &mut sums[..count]);
                assert_eq!(
                    bits(&sums[..count]),
                    bits(&reference[..count]),
                    "{k_quant:?}, {name}, {count} inputs"
                );
            }
        }
    }
}

/// Attention's sums eight keys at a time, and its weighted sums of values, give the one-key
/// loop's bits (the browser's), for key counts that are and are not multiples of eight, and
/// heads whose last columns make 8, 16 or 24.
#[test]
fn attention_sums_agree_to_the_bit() {
    let float = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 7) as f32);
    for dim in [64, 128, 72, 80, 88] {
        for count in [1, 8, 13, 40] {
            let query: Vec<f32> = (0..dim).map(|i| float(i + 3)).collect();
            let keys: Vec<f32> = (0..count * dim).map(|i| float(i * 3 + 1)).collect();
            let mut scores = vec![0f32; count];
            lanes::dots(&query, &keys, &mut scores);
            for (s, score) in scores.iter().enumerate() {
                let alone = lanes::dot(&query, &keys[s * dim..(s + 1) * dim]);
                assert_eq!(
                    score.to_bits(),
                    alone.to_bits(),
                    "dim {dim}, key {s} of {count}"
                );
            }
            let mut out = vec![f32::NAN; dim];
            lanes::weighted_sum(&scores, &keys, &mut out);
            for (d, got) in out.iter().enumerate() {
                let want = (0..count).fold(0f32, |sum, s| sum + scores[s] * keys[s * dim + d]);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "dim {dim}, value {d} of {count}"
                );
            }
        }
    }
}

/// This machine's K-quant kernel (simd128 in WebAssembly, whose tests run under WASI; AVX-512
/// or AVX2 on x86) gives the portable kernel's bits, for four inputs (a prompt's, in one pass).
#[test]
fn k_quant_kernel_in_use_agrees_with_the_portable_one() {
    for k_quant in [KQuant::Q4K, KQuant::Q6K] {
        let (matmul, blocks) = k_quant_case(k_quant, 8, 4);
        let rows: Vec<&[ActivationSuperBlock]> =
            blocks.chunks_exact(K_QUANT_COLUMNS / SUPER_BLOCK).collect();
        let mut reference = [[0f32; TILE_ROWS]; 4];
        k_quants::portable_kernel(k_quant)(&matmul.weights, &rows, &mut reference);
        assert!(reference.iter().flatten().any(|sum| *sum != 0.0));
        for several in [false, true] {
            let mut sums = [[0f32; TILE_ROWS]; 4];
            k_quants::kernel(k_quant, several)(&matmul.weights, &rows, &mut sums);
            let bits = |sums: &[[f32; TILE_ROWS]; 4]| -> Vec<u32> {
                sums.iter().flatten().map(|sum| sum.to_bits()).collect()
            };
            assert_eq!(
                bits(&sums),
                bits(&reference),
                "{k_quant:?}, several {several}"
            );
        }
    }
}
