//! The bench's random-weight shapes (`examples/shapes/`) are the files teams publish: the
//! Qwen2.5-0.5B shape in Q4_K_M has, tensor by tensor, the names, sizes and types of the
//! catalogue's Qwen2.5-Coder-0.5B-Instruct Q4_K_M (same architecture and sizes), quantised by
//! llama.cpp itself — so the recipe's rules (`use_more_bits`, the fallbacks for rows that are
//! not whole 256-value blocks, the tied output) are llama.cpp's.

use std::fs::File;
use std::io::BufReader;

use candle_core::quantized::gguf_file;
use engine::catalog;

mod common;
use common::fetch;

#[allow(dead_code)]
#[path = "../examples/shapes/mod.rs"]
mod shapes;

#[test]
fn the_qwen_shape_in_q4_k_m_has_the_tensor_types_llama_cpp_gives_the_real_model() {
    let real = fetch(&catalog::by_name("qwen2.5-coder-0.5b").unwrap());
    let content = gguf_file::Content::read(&mut BufReader::new(File::open(real).unwrap())).unwrap();
    let shape = shapes::by_name("qwen-0.5b").unwrap();
    let planned = shapes::layout(shape, shapes::Mix::Q4KM);
    assert_eq!(
        planned.len(),
        content.tensor_infos.len(),
        "number of tensors"
    );
    for tensor in &planned {
        let info = content
            .tensor_infos
            .get(&tensor.name)
            .unwrap_or_else(|| panic!("the real model has no {}", tensor.name));
        let dims = info.shape.dims();
        let (rows, columns) = match dims {
            [length] => (1, *length),
            [rows, columns] => (*rows, *columns),
            _ => panic!("{}: {dims:?}", tensor.name),
        };
        assert_eq!(
            (tensor.rows, tensor.columns, tensor.dtype),
            (rows, columns, info.ggml_dtype),
            "{}",
            tensor.name
        );
    }
}
