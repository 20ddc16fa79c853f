//! A GGUF file written as its tensors are made: the header (metadata, then every tensor's
//! name, shape, type and offset) first, from what the plan says each tensor will be, then the
//! tensors' bytes one at a time. candle's `gguf_file::write` wants every tensor in memory at
//! once: 4 GB for a 7B model in Q4_K_M, 28 GB as the f32 it is quantised from.

use std::io::{Seek, Write};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;

use crate::error::{EngineError, Result};

/// GGUF's default: every tensor starts at a multiple of it.
const ALIGNMENT: u64 = 32;
const VERSION: u32 = 3;

/// One tensor of the file as the header announces it.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    pub name: String,
    /// Rows first, as candle and safetensors write shapes (the file stores them reversed).
    pub shape: Vec<usize>,
    pub dtype: GgmlDType,
}

impl PlannedTensor {
    pub fn bytes(&self) -> u64 {
        let elements: usize = self.shape.iter().product();
        (elements / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
}

/// Writes the header, then takes each planned tensor's bytes in order.
pub struct GgufWriter<W: Write + Seek> {
    out: W,
    planned: Vec<PlannedTensor>,
    next: usize,
}

impl<W: Write + Seek> GgufWriter<W> {
    pub fn new(
        mut out: W,
        metadata: &[(String, Value)],
        planned: Vec<PlannedTensor>,
    ) -> Result<Self> {
        out.write_all(b"GGUF")?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&(planned.len() as u64).to_le_bytes())?;
        out.write_all(&(metadata.len() as u64).to_le_bytes())?;
        for (key, value) in metadata {
            write_string(&mut out, key)?;
            write_value(&mut out, value, true)?;
        }
        let mut offset = 0u64;
        for tensor in &planned {
            if tensor.shape.contains(&0) {
                return Err(invalid(format!("{} has an empty dimension", tensor.name)));
            }
            let columns = tensor.shape.last().copied().unwrap_or(0);
            if columns % tensor.dtype.block_size() != 0 {
                return Err(invalid(format!(
                    "{}'s rows of {columns} are not whole {:?} blocks",
                    tensor.name, tensor.dtype
                )));
            }
            write_string(&mut out, &tensor.name)?;
            out.write_all(&(tensor.shape.len() as u32).to_le_bytes())?;
            for &dim in tensor.shape.iter().rev() {
                out.write_all(&(dim as u64).to_le_bytes())?;
            }
            out.write_all(&dtype_code(tensor.dtype).to_le_bytes())?;
            out.write_all(&offset.to_le_bytes())?;
            offset += padded(tensor.bytes());
        }
        pad(&mut out)?;
        Ok(Self {
            out,
            planned,
            next: 0,
        })
    }

    /// The next tensor's bytes, exactly as many as its plan says.
    pub fn tensor(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(tensor) = self.planned.get(self.next) else {
            return Err(invalid("more tensors than the header announced".into()));
        };
        if bytes.len() as u64 != tensor.bytes() {
            return Err(invalid(format!(
                "{} has {} bytes, but its header announced {}",
                tensor.name,
                bytes.len(),
                tensor.bytes()
            )));
        }
        self.out.write_all(bytes)?;
        pad(&mut self.out)?;
        self.next += 1;
        Ok(())
    }

    /// The written file, once every planned tensor is in it.
    pub fn finish(mut self) -> Result<W> {
        if self.next != self.planned.len() {
            return Err(invalid(format!(
                "{} of the {} tensors were written",
                self.next,
                self.planned.len()
            )));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn invalid(reason: String) -> EngineError {
    EngineError::Conversion(format!("writing the GGUF file: {reason}"))
}

fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn pad<W: Write + Seek>(out: &mut W) -> Result<()> {
    let position = out.stream_position()?;
    let zeros = padded(position) - position;
    out.write_all(&vec![0u8; zeros as usize])?;
    Ok(())
}

fn write_string<W: Write>(out: &mut W, text: &str) -> Result<()> {
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// GGUF's value types (the specification's `gguf_metadata_value_type`).
fn type_code(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value<W: Write>(out: &mut W, value: &Value, typed: bool) -> Result<()> {
    if typed {
        out.write_all(&type_code(value).to_le_bytes())?;
    }
    match value {
        Value::U8(v) => out.write_all(&v.to_le_bytes())?,
        Value::I8(v) => out.write_all(&v.to_le_bytes())?,
        Value::U16(v) => out.write_all(&v.to_le_bytes())?,
        Value::I16(v) => out.write_all(&v.to_le_bytes())?,
        Value::U32(v) => out.write_all(&v.to_le_bytes())?,
        Value::I32(v) => out.write_all(&v.to_le_bytes())?,
        Value::F32(v) => out.write_all(&v.to_le_bytes())?,
        Value::Bool(v) => out.write_all(&[u8::from(*v)])?,
        Value::String(text) => write_string(out, text)?,
        Value::U64(v) => out.write_all(&v.to_le_bytes())?,
        Value::I64(v) => out.write_all(&v.to_le_bytes())?,
        Value::F64(v) => out.write_all(&v.to_le_bytes())?,
        Value::Array(values) => {
            // An array holds one type; an empty one is written as strings, as llama.cpp's
            // converter does.
            let element = values.first().map_or(8, type_code);
            if values.iter().any(|other| type_code(other) != element) {
                return Err(invalid("an array mixes value types".into()));
            }
            out.write_all(&element.to_le_bytes())?;
            out.write_all(&(values.len() as u64).to_le_bytes())?;
            for value in values {
                write_value(out, value, false)?;
            }
        }
    }
    Ok(())
}

/// ggml's type numbers (`ggml_type`).
fn dtype_code(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}
