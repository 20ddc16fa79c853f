//! The llama family (Llama, Mistral, SmolLM, Qwen2, Qwen3, and Gemma 1–3, which differ from it
//! only in a few switches of [`Config`]) written for decoding speed.
//!
//! candle-transformers' `quantized_llama` and `quantized_qwen2` grow their KV cache with
//! `Tensor::cat` at every step (a copy of the whole cache in every layer) and then copy it
//! again per query head for grouped-query attention, so each token costs more the longer the
//! conversation. Here the cache is allocated ahead and written in place, the query heads that
//! share a key head are attended as one batch (nothing is repeated), and the q/k/v and gate/up
//! projections each become one quantized matmul when their weights share a quantisation: the
//! input is quantised once and the thread pool woken once instead of three times.

use std::borrow::Cow;
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{CpuStorage, D, DType, Device, Module, Result, Storage, Tensor, bail};

use crate::kernels::QuantMatMul;
use crate::model::SLOWER_THAN_Q8_0_ON_CPU;

/// The shape of a llama-family model, read from its GGUF metadata.
#[derive(Clone, Debug)]
pub struct Config {
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_base: f32,
    /// Llama and Mistral rotate interleaved pairs (2i, 2i+1); Qwen2 rotates (i, i + d/2)
    /// ("NEOX"): the wrong one garbles every answer.
    pub rope_interleaved: bool,
    pub context_length: usize,
    /// Llama 3's divisors of the rotation frequencies (the file's `rope_freqs.weight`).
    pub rope_divisors: Option<Vec<f32>>,
    /// Gemma multiplies the embeddings by √width.
    pub embedding_scale: Option<f32>,
    /// Gemma's feed-forward gate is GELU (tanh form), the others' SiLU.
    pub gelu: bool,
    /// Gemma 2 caps attention scores and the output's logits at ±cap with cap·tanh(x/cap).
    pub attention_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Gemma 2 and 3: layers that see only the last tokens, with a rotation of their own.
    pub sliding: Option<Sliding>,
    /// Gemma 3 (4B and up) stretches the positions of its global layers by this factor.
    pub rope_linear_factor: f32,
}

/// Which layers attend to a window of the last tokens only, and how they rotate.
#[derive(Clone, Debug)]
pub struct Sliding {
    pub window: usize,
    /// Gemma 2: the even layers; Gemma 3: all but every `n`-th (`(layer + 1) % n != 0`).
    pub every: Option<usize>,
    /// Gemma 3's local layers rotate with their own base (10,000).
    pub rope_base: Option<f32>,
}

impl Config {
    fn is_sliding(&self, layer: usize) -> bool {
        match &self.sliding {
            None => false,
            Some(Sliding { every: None, .. }) => layer.is_multiple_of(2),
            Some(Sliding { every: Some(n), .. }) => !(layer + 1).is_multiple_of(*n),
        }
    }
}

impl Config {
    /// `architecture` is the GGUF's `general.architecture`, which prefixes its keys.
    pub fn from_gguf(content: &Content, architecture: &str) -> Result<Self> {
        let key = |suffix: &str| format!("{architecture}.{suffix}");
        let number = |suffix: &str| -> Result<usize> {
            match content.metadata.get(&key(suffix)) {
                Some(value) => Ok(value.to_u32()? as usize),
                None => bail!("its metadata has no `{}`", key(suffix)),
            }
        };
        let float = |suffix: &str| {
            content
                .metadata
                .get(&key(suffix))
                .and_then(|value| value.to_f32().ok())
        };
        let gemma = architecture.starts_with("gemma");
        let heads = number("attention.head_count")?;
        let kv_heads = number("attention.head_count_kv").unwrap_or(heads);
        let embedding = number("embedding_length")?;
        let head_dim = number("attention.key_length").unwrap_or(embedding / heads.max(1));
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || head_dim % 2 != 0 {
            bail!(
                "its attention shape is inconsistent ({heads} heads, {kv_heads} key/value heads, head size {head_dim})"
            );
        }
        Ok(Self {
            layers: number("block_count")?,
            heads,
            kv_heads,
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_base: float("rope.freq_base").unwrap_or(10_000.0),
            rope_interleaved: matches!(architecture, "llama" | "mistral"),
            context_length: number("context_length").unwrap_or(2048),
            rope_divisors: None,
            embedding_scale: gemma.then(|| (embedding as f32).sqrt()),
            gelu: gemma,
            attention_softcap: (architecture == "gemma2")
                .then(|| float("attn_logit_softcapping").unwrap_or(50.0)),
            final_softcap: (architecture == "gemma2")
                .then(|| float("final_logit_softcapping").unwrap_or(30.0)),
            sliding: match architecture {
                "gemma2" => Some(Sliding {
                    window: number("attention.sliding_window").unwrap_or(4096),
                    every: None,
                    rope_base: None,
                }),
                "gemma3" => Some(Sliding {
                    window: number("attention.sliding_window").unwrap_or(512),
                    every: Some(number("attention.sliding_window_type").unwrap_or(6).max(1)),
                    rope_base: Some(float("rope.local_freq_base").unwrap_or(10_000.0)),
                }),
                _ => None,
            },
            // Only linear scaling stretches positions evenly; another type's factor (YaRN…)
            // means something else and is not applied as if it were.
            rope_linear_factor: match content.metadata.get(&key("rope.scaling.type")) {
                Some(Value::String(kind)) if kind == "linear" => float("rope.scaling.factor")
                    .filter(|factor| *factor > 0.0)
                    .unwrap_or(1.0),
                _ => 1.0,
            },
        })
    }
}

pub struct Llama {
    config: Config,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: Linear,
    device: Device,
}

struct Layer {
    /// Whether it attends to the last `sliding.window` tokens only.
    sliding: bool,
    attention_norm: Tensor,
    qkv: Projections,
    /// Qwen3 normalises each head's query and key before rotating them.
    query_key_norms: Option<(Tensor, Tensor)>,
    attention_output: Linear,
    ffn_norm: Tensor,
    gate_up: Projections,
    down: Linear,
    /// Gemma 2 and 3 normalise the attention's and the feed-forward's outputs too.
    post_norms: Option<(Tensor, Tensor)>,
}

impl Llama {
    /// `requantize`: on the CPU, matrices in a type multiplied more slowly than Q8_0 are
    /// rewritten as Q8_0, one at a time as they are read.
    pub fn new<R: Read + Seek>(
        mut config: Config,
        content: &Content,
        reader: &mut R,
        device: &Device,
        requantize: bool,
    ) -> Result<Self> {
        let mut weights = Weights {
            content,
            reader,
            device,
            requantize: requantize && device.is_cpu(),
        };
        let embeddings_table = weights.quantized("token_embd.weight")?;
        let embeddings = Embeddings::new(&embeddings_table)?;
        // Models with tied embeddings (SmolLM2) score tokens with the embedding table itself.
        let output = match weights.optional("output.weight")? {
            Some(output) => output,
            None => embeddings_table,
        };
        let output = weights.requantized(output)?;
        if let Some(divisors) = weights.optional("rope_freqs.weight")? {
            let divisors: Vec<f32> = divisors
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1()?;
            if divisors.len() != config.head_dim / 2 {
                bail!(
                    "rope_freqs.weight has {} values for heads of {}",
                    divisors.len(),
                    config.head_dim
                );
            }
            config.rope_divisors = Some(divisors);
        }
        let mut layers = Vec::with_capacity(config.layers);
        for index in 0..config.layers {
            let name = |part: &str| format!("blk.{index}.{part}");
            let qkv = weights.projections(&[name("attn_q"), name("attn_k"), name("attn_v")])?;
            let gate_up = weights.projections(&[name("ffn_gate"), name("ffn_up")])?;
            let query_key_norms =
                weights.optional_pair(&name("attn_q_norm.weight"), &name("attn_k_norm.weight"))?;
            let post_norms = weights.optional_pair(
                &name("post_attention_norm.weight"),
                &name("post_ffw_norm.weight"),
            )?;
            layers.push(Layer {
                sliding: config.is_sliding(index),
                post_norms,
                attention_norm: weights.vector(&name("attn_norm.weight"))?,
                qkv,
                query_key_norms,
                attention_output: weights.single(&name("attn_output.weight"))?,
                ffn_norm: weights.vector(&name("ffn_norm.weight"))?,
                gate_up,
                down: weights.single(&name("ffn_down.weight"))?,
            });
        }
        Ok(Self {
            output_norm: weights.vector("output_norm.weight")?,
            output: weights.matmul(output)?,
            embeddings,
            layers,
            config,
            device: device.clone(),
        })
    }

    /// An empty sequence: what it computes lives in its own [`LlamaCache`], so that any number of
    /// sequences can run through these weights, together or one after another.
    pub fn new_cache(&self) -> LlamaCache {
        LlamaCache {
            layers: (0..self.config.layers)
                .map(|_| KvCache::default())
                .collect(),
        }
    }

    /// Runs every step's tokens after what its cache holds from `position` on is dropped
    /// (position 0 starts a new sequence; a shorter one goes back to a shared prefix), and
    /// returns, for each step that asks, the logits of the token after its last one.
    ///
    /// All the steps' tokens go through each weight matrix as the rows of one product: the
    /// weights are read once per step for every sequence. On the CPU every row is computed
    /// the same way whatever else is in the batch (the kernels' rows are independent and each
    /// query's attention is its own sum), so a sequence gets the same bits alone, beside others,
    /// in one prompt pass or in chunks.
    pub fn forward(&self, steps: &mut [LlamaStep<'_>]) -> Result<Vec<Option<Tensor>>> {
        let config = &self.config;
        let mut spans = Vec::with_capacity(steps.len());
        let mut tokens = Vec::new();
        for step in steps.iter() {
            if step.tokens.is_empty() {
                bail!("nothing to run: a step has no tokens");
            }
            if step.position + step.tokens.len() > config.context_length {
                bail!(
                    "{} tokens do not fit in the model's context of {}",
                    step.position + step.tokens.len(),
                    config.context_length
                );
            }
            let len = step.tokens.len();
            let on_gpu = !self.device.is_cpu();
            let mask = |window| -> Result<Option<Tensor>> {
                if on_gpu {
                    causal_mask(config, step.position, len, window, &self.device)
                } else {
                    Ok(None)
                }
            };
            let global = rope_tables(
                config,
                config.rope_base,
                config.rope_linear_factor,
                step.position,
                len,
                &self.device,
            )?;
            let local = match &config.sliding {
                Some(sliding) => Some(Rotation {
                    tables: match sliding.rope_base {
                        Some(base) => {
                            rope_tables(config, base, 1.0, step.position, len, &self.device)?.tables
                        }
                        None => global.tables.clone(),
                    },
                    mask: mask(Some(sliding.window))?,
                }),
                None => None,
            };
            let global = Rotation {
                mask: mask(None)?,
                ..global
            };
            spans.push(Span {
                start: tokens.len(),
                len,
                position: step.position,
                global,
                local,
            });
            tokens.extend_from_slice(step.tokens);
        }
        if tokens.is_empty() {
            bail!("nothing to run: no steps were given");
        }
        let mut x = self.embeddings.forward(&tokens, &self.device)?;
        if let Some(scale) = config.embedding_scale {
            x = (x * scale as f64)?;
        }
        for (index, layer) in self.layers.iter().enumerate() {
            let mut caches: Vec<&mut KvCache> = steps
                .iter_mut()
                .map(|step| &mut step.cache.layers[index])
                .collect();
            x = layer.forward(config, &x, &spans, &mut caches)?;
        }
        let wanted: Vec<usize> = steps
            .iter()
            .zip(&spans)
            .filter(|(step, _)| step.logits)
            .map(|(_, span)| span.start + span.len - 1)
            .collect();
        let mut logits = vec![None; steps.len()];
        if wanted.is_empty() {
            return Ok(logits);
        }
        let rows = Tensor::new(
            wanted.iter().map(|&row| row as u32).collect::<Vec<_>>(),
            &self.device,
        )?;
        let last = x.index_select(&rows, 0)?;
        let last = candle_nn::ops::rms_norm(&last, &self.output_norm, config.rms_norm_eps)?;
        let scores = self.output.forward(&last)?;
        let scores = match config.final_softcap {
            Some(cap) => softcap(&scores, cap)?,
            None => scores,
        };
        let mut row = 0;
        for (slot, step) in logits.iter_mut().zip(steps.iter()) {
            if step.logits {
                *slot = Some(scores.get(row)?);
                row += 1;
            }
        }
        Ok(logits)
    }
}

/// Tokens of one sequence for [`Llama::forward`].
pub struct LlamaStep<'a> {
    pub tokens: &'a [u32],
    /// Where the tokens go in the sequence: at most what `cache` holds.
    pub position: usize,
    pub cache: &'a mut LlamaCache,
    /// Whether to compute the logits after the last token (a prompt read in chunks needs them
    /// only after its last chunk).
    pub logits: bool,
}

/// Where one step's tokens lie among the batch's rows, with their rotations.
struct Span {
    start: usize,
    len: usize,
    position: usize,
    global: Rotation,
    /// The sliding layers' (Gemma 2 and 3).
    local: Option<Rotation>,
}

/// cos and sin of a step's positions, and the mask of the matrix-product attention (off the
/// CPU).
struct Rotation {
    tables: (Tensor, Tensor),
    mask: Option<Tensor>,
}

/// The keys and values one sequence has computed, layer by layer.
pub struct LlamaCache {
    layers: Vec<KvCache>,
}

impl LlamaCache {
    /// Bytes held, including room allocated ahead.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(KvCache::bytes).sum()
    }

    /// A copy of the first `len` positions, with room for nothing more (what a kept prefix
    /// needs) or for `len + ahead` (a prefix about to be continued).
    pub fn copy_prefix(&self, len: usize, ahead: usize) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|layer| layer.copy_prefix(len, ahead))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

impl Layer {
    fn forward(
        &self,
        config: &Config,
        x: &Tensor,
        spans: &[Span],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor> {
        let (heads, kv_heads, head_dim) = (config.heads, config.kv_heads, config.head_dim);
        let n_rep = heads / kv_heads;
        let normed = candle_nn::ops::rms_norm(x, &self.attention_norm, config.rms_norm_eps)?;
        let [q, k, v] = self
            .qkv
            .forward(&normed)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("q/k/v split".into()))?;
        let mut attended = Vec::with_capacity(spans.len());
        let window = config
            .sliding
            .as_ref()
            .filter(|_| self.sliding)
            .map(|sliding| sliding.window);
        for (span, cache) in spans.iter().zip(caches.iter_mut()) {
            let rotation = match (&span.local, self.sliding) {
                (Some(local), true) => local,
                _ => &span.global,
            };
            let (cos, sin) = &rotation.tables;
            let rope = |x: Tensor| -> Result<Tensor> {
                if config.rope_interleaved {
                    candle_nn::rotary_emb::rope_i(&x, cos, sin)
                } else {
                    candle_nn::rotary_emb::rope(&x, cos, sin)
                }
            };
            let by_head = |x: &Tensor, count: usize| {
                x.narrow(0, span.start, span.len)?
                    .reshape((1, span.len, count, head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k) = (by_head(&q, heads)?, by_head(&k, kv_heads)?);
            let (q, k) = match &self.query_key_norms {
                Some((q_norm, k_norm)) => (
                    candle_nn::ops::rms_norm(&q, q_norm, config.rms_norm_eps)?,
                    candle_nn::ops::rms_norm(&k, k_norm, config.rms_norm_eps)?,
                ),
                None => (q, k),
            };
            let q = rope(q)?;
            let k = rope(k)?.squeeze(0)?;
            let v = by_head(&v, kv_heads)?.squeeze(0)?;
            let (keys, values) = cache.append(&k, &v, span.position, config.context_length)?;
            let q = (q * (1.0 / (head_dim as f64).sqrt()))?.reshape((heads, span.len, head_dim))?;
            let limits = Attention {
                n_rep,
                position: span.position,
                window,
                softcap: config.attention_softcap,
            };
            attended.push(if cache.on_cpu() {
                cpu_attention(&q, &keys, &values, &limits)?
            } else {
                matrix_attention(&q, &keys, &values, &limits, rotation.mask.as_ref())?
            });
        }
        let attended = match attended.len() {
            1 => attended.pop().expect("one span"),
            _ => Tensor::cat(&attended, 0)?,
        };
        let post_norm =
            |output: Tensor, which: fn(&(Tensor, Tensor)) -> &Tensor| match &self.post_norms {
                Some(norms) => candle_nn::ops::rms_norm(&output, which(norms), config.rms_norm_eps),
                None => Ok(output),
            };
        let x = (x + post_norm(self.attention_output.forward(&attended)?, |norms| &norms.0)?)?;

        let normed = candle_nn::ops::rms_norm(&x, &self.ffn_norm, config.rms_norm_eps)?;
        let [gate, up] = self
            .gate_up
            .forward(&normed)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("gate/up split".into()))?;
        let hidden = gated(&gate, &up, config.gelu)?;
        x + post_norm(self.down.forward(&hidden)?, |norms| &norms.1)?
    }
}
/// The token embedding table, kept quantised: as f32 it would be the largest thing in memory
/// (Qwen2.5's 151,936 × 896 rows: 545 MB, against 93 MB in the file's Q5_0). Only the rows of
/// the tokens being run are dequantised.
struct Embeddings {
    table: Vec<u8>,
    dtype: GgmlDType,
    row_bytes: usize,
    width: usize,
}

impl Embeddings {
    fn new(table: &QTensor) -> Result<Self> {
        let (rows, width) = table.shape().dims2()?;
        let table_bytes = table.data()?.into_owned();
        Ok(Self {
            row_bytes: table_bytes.len() / rows.max(1),
            table: table_bytes,
            dtype: table.dtype(),
            width,
        })
    }

    fn forward(&self, tokens: &[u32], device: &Device) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(tokens.len() * self.row_bytes);
        for &token in tokens {
            let start = token as usize * self.row_bytes;
            match self.table.get(start..start + self.row_bytes) {
                Some(row) => rows.extend_from_slice(row),
                None => bail!(
                    "token {token} is outside the vocabulary of {} tokens",
                    self.table.len() / self.row_bytes
                ),
            }
        }
        let storage = QStorage::from_data(Cow::Owned(rows), &Device::Cpu, self.dtype)?;
        QTensor::new(storage, (tokens.len(), self.width))?
            .dequantize(&Device::Cpu)?
            .to_device(device)
    }
}

/// Attention on the CPU, written out rather than left to a matrix product: the products'
/// kernels differ between x86 (fused multiply-add) and WebAssembly, and so would the browser's
/// tokens from the server's; and their sums are blocked by the matrix's size, so a token's
/// attention would change with how many came with it. Here each query (token t of the step,
/// at `position + t`, seeing the cache up to itself) is its own sum, in the same order
/// everywhere (eight lanes, then [`crate::kernels::lanes::sum_lanes`]), and the queries are
/// shared out over candle's thread pool. `q` is (heads, len, head_dim), scaled; `keys` and
/// `values` are (kv_heads, position + len, head_dim) views of the cache. Returns
/// (len, heads × head_dim).
fn cpu_attention(q: &Tensor, keys: &Tensor, values: &Tensor, limits: &Attention) -> Result<Tensor> {
    let Attention {
        n_rep,
        position,
        window,
        softcap,
    } = *limits;
    let (heads, len, head_dim) = q.dims3()?;
    let queries: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let (key_storage, key_layout) = keys.storage_and_layout();
    let (value_storage, value_layout) = values.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(key_data)), Storage::Cpu(CpuStorage::F32(value_data))) =
        (&*key_storage, &*value_storage)
    else {
        bail!("CPU attention runs on f32 CPU tensors");
    };
    let mut output = vec![0f32; len * heads * head_dim];
    let shared = crate::kernels::parallel::SharedOutput::new(&mut output);
    crate::kernels::parallel::for_each_range(heads * len, |range| {
        let mut weights = vec![0f32; position + len];
        let mut row = vec![0f32; head_dim];
        for task in range {
            let (head, t) = (task / len, task % len);
            let end = position + t + 1;
            let first = window.map_or(0, |window| end.saturating_sub(window));
            let visible = end - first;
            let weights = &mut weights[..visible];
            let group = head / n_rep;
            let query = &queries[task * head_dim..(task + 1) * head_dim];
            let key_start =
                key_layout.start_offset() + group * key_layout.stride()[0] + first * head_dim;
            let value_start =
                value_layout.start_offset() + group * value_layout.stride()[0] + first * head_dim;
            let keys = &key_data[key_start..key_start + visible * head_dim];
            crate::kernels::lanes::dots(query, keys, weights);
            if let Some(cap) = softcap {
                for weight in weights.iter_mut() {
                    *weight = cap * libm::tanhf(*weight / cap);
                }
            }
            let largest = crate::kernels::lanes::largest(weights);
            for weight in weights.iter_mut() {
                *weight -= largest;
            }
            crate::kernels::exp::exp_in_place(weights);
            let total: f32 = weights.iter().fold(0.0, |total, weight| total + weight);
            for weight in weights.iter_mut() {
                *weight /= total;
            }
            let values = &value_data[value_start..value_start + visible * head_dim];
            crate::kernels::lanes::weighted_sum(weights, values, &mut row);
            // SAFETY: each (token, head) row is written by the one task that owns it.
            unsafe { shared.write_row((t * heads + head) * head_dim, &row) };
        }
    });
    drop((key_storage, value_storage));
    Tensor::from_vec(output, (len, heads * head_dim), q.device())
}

/// Attention as matrix products (on a GPU): the n_rep query heads of one key head, one after
/// the other, form one matrix of n_rep × len rows, so each key head is one batched matmul and no
/// key is repeated. Same arguments as [`cpu_attention`], with `mask` from [`causal_mask`].
fn matrix_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    limits: &Attention,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let n_rep = limits.n_rep;
    let (heads, len, head_dim) = q.dims3()?;
    let q = q.reshape((heads / n_rep, n_rep * len, head_dim))?;
    let scores = q.matmul(&keys.t()?)?;
    let scores = match limits.softcap {
        Some(cap) => softcap(&scores, cap)?,
        None => scores,
    };
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    candle_nn::ops::softmax_last_dim(&scores)?
        .matmul(values)?
        .reshape((heads, len, head_dim))?
        .transpose(0, 1)?
        .reshape((len, heads * head_dim))
}

/// What one step's attention sees: `n_rep` query heads a key head, the step at `position`,
/// the last `window` tokens only (Gemma's sliding layers), scores capped (Gemma 2).
#[derive(Clone, Copy)]
struct Attention {
    n_rep: usize,
    position: usize,
    window: Option<usize>,
    softcap: Option<f32>,
}

/// cap·tanh(x/cap) (Gemma 2's soft cap of scores and logits).
fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    (x / cap as f64)?.tanh()? * cap as f64
}

/// cos and sin of every rotation angle for the positions `position..position + seq_len`,
/// computed in f32 as the reference implementations do, with [`libm`]'s functions: the
/// platforms' own (glibc natively, another libm in WebAssembly) differ in the last bit now and
/// then, and the browser's answers would drift from the server's.
fn rope_tables(
    config: &Config,
    base: f32,
    linear_factor: f32,
    position: usize,
    seq_len: usize,
    device: &Device,
) -> Result<Rotation> {
    let half = config.head_dim / 2;
    let inverse_frequencies: Vec<f32> = (0..half)
        .map(|i| {
            let frequency =
                1.0 / libm::powf(base, (2 * i) as f32 / config.head_dim as f32) / linear_factor;
            match &config.rope_divisors {
                Some(divisors) => frequency / divisors[i],
                None => frequency,
            }
        })
        .collect();
    let angles: Vec<f32> = (position..position + seq_len)
        .flat_map(|p| {
            inverse_frequencies
                .iter()
                .map(move |frequency| p as f32 * frequency)
        })
        .collect();
    let table = |function: fn(f32) -> f32| {
        Tensor::from_vec(
            angles
                .iter()
                .map(|&angle| function(angle))
                .collect::<Vec<f32>>(),
            (seq_len, half),
            device,
        )
    };
    Ok(Rotation {
        tables: (table(libm::cosf)?, table(libm::sinf)?),
        mask: None,
    })
}

/// Values of a row of [`gated`] per task: the narrowest rows (SmolLM2's 1,536) still make a
/// few pieces a thread.
const GATED_PIECE: usize = 256;

/// silu(gate) × up. On the CPU with [`libm::expf`]'s bits (eight at a time where the CPU can,
/// [`exp_in_place`](crate::kernels::exp::exp_in_place)) for the reason [`rope_tables`] gives:
/// candle's `silu` calls the platform's `exp`. Pieces of [`GATED_PIECE`] values of each row
/// are shared out between the threads: each value is its own, so any split gives the same bits,
/// and a decoded token's one row would otherwise run on one thread (0.3 ms of a browser token,
/// SmolLM2).
fn gated(gate: &Tensor, up: &Tensor, gelu: bool) -> Result<Tensor> {
    if !gate.device().is_cpu() {
        return if gelu {
            gate.gelu()? * up
        } else {
            gate.silu()? * up
        };
    }
    let (len, width) = gate.dims2()?;
    let (gate_storage, gate_layout) = gate.storage_and_layout();
    let (up_storage, up_layout) = up.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(gates)), Storage::Cpu(CpuStorage::F32(ups))) =
        (&*gate_storage, &*up_storage)
    else {
        bail!("the CPU's SiLU runs on f32 CPU tensors");
    };
    // Both are read in place, row by row: often the halves of one fused product.
    let row_of = |layout: &candle_core::Layout, t: usize| {
        let start = layout.start_offset() + t * layout.stride()[0];
        start..start + width
    };
    for layout in [gate_layout, up_layout] {
        if layout.dims() != [len, width] || layout.stride()[1] != 1 {
            bail!("SiLU's inputs must have contiguous rows of {width}");
        }
    }
    let mut hidden = vec![0f32; len * width];
    let shared = crate::kernels::parallel::SharedOutput::new(&mut hidden);
    let pieces = width.div_ceil(GATED_PIECE);
    crate::kernels::parallel::for_each_range(len * pieces, |tasks| {
        let mut values = vec![0f32; GATED_PIECE.min(width)];
        for task in tasks {
            let (t, piece) = (task / pieces, task % pieces);
            let columns = piece * GATED_PIECE..((piece + 1) * GATED_PIECE).min(width);
            let gate = &gates[row_of(gate_layout, t)][columns.clone()];
            let up = &ups[row_of(up_layout, t)][columns.clone()];
            let values = &mut values[..columns.len()];
            if gelu {
                // GELU's tanh form, as Gemma's `gelu_pytorch_tanh`.
                for ((value, &g), &u) in values.iter_mut().zip(gate).zip(up) {
                    let inner = std::f32::consts::FRAC_2_SQRT_PI
                        * std::f32::consts::FRAC_1_SQRT_2
                        * (g + 0.044_715 * g * g * g);
                    *value = 0.5 * g * (1.0 + libm::tanhf(inner)) * u;
                }
            } else {
                for (value, &g) in values.iter_mut().zip(gate) {
                    *value = -g;
                }
                crate::kernels::exp::exp_in_place(values);
                for ((value, &g), &u) in values.iter_mut().zip(gate).zip(up) {
                    *value = g / (1.0 + *value) * u;
                }
            }
            // SAFETY: each piece of each token's row is written by the one task that owns it.
            unsafe { shared.write_row(t * width + columns.start, values) };
        }
    });
    drop((gate_storage, up_storage));
    Tensor::from_vec(hidden, (len, width), gate.device())
}

/// −∞ where a prompt token would see a later one, as rows of the grouped score matrix
/// (n_rep × seq_len rows: row r is token r mod seq_len). `None` for a single token.
fn causal_mask(
    config: &Config,
    position: usize,
    seq_len: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    if seq_len == 1 && window.is_none_or(|window| position < window) {
        return Ok(None);
    }
    let visible = position + seq_len;
    let n_rep = config.heads / config.kv_heads;
    let mask: Vec<f32> = (0..n_rep * seq_len)
        .flat_map(|row| {
            let token = row % seq_len;
            (0..visible).map(move |column| {
                let seen = position + token;
                if column > seen || window.is_some_and(|window| column + window <= seen) {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(
        mask,
        (n_rep * seq_len, visible),
        device,
    )?))
}

/// Keys and values of the tokens seen so far, (kv_heads, capacity, head_dim) each, written in
/// place. The capacity doubles when full (up to the context), so a short chat never holds a
/// whole 32k-token context in memory — which matters in a browser tab.
#[derive(Default)]
struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    len: usize,
}

impl KvCache {
    const FIRST_CAPACITY: usize = 256;

    fn bytes(&self) -> usize {
        [&self.keys, &self.values]
            .into_iter()
            .flatten()
            .map(|tensor| tensor.elem_count() * tensor.dtype().size_in_bytes())
            .sum()
    }

    fn copy_prefix(&self, len: usize, ahead: usize) -> Result<Self> {
        let len = len.min(self.len);
        let (Some(keys), Some(values)) = (&self.keys, &self.values) else {
            return Ok(Self::default());
        };
        if len == 0 {
            return Ok(Self::default());
        }
        Ok(Self {
            keys: Some(grow(Some(keys.clone()), len, keys, len + ahead)?),
            values: Some(grow(Some(values.clone()), len, values, len + ahead)?),
            len,
        })
    }

    fn on_cpu(&self) -> bool {
        self.keys
            .as_ref()
            .is_some_and(|keys| keys.device().is_cpu() && keys.dtype() == DType::F32)
    }

    fn append(
        &mut self,
        k: &Tensor,
        v: &Tensor,
        position: usize,
        context_length: usize,
    ) -> Result<(Tensor, Tensor)> {
        if position > self.len {
            bail!(
                "position {position} skips tokens: the cache holds {}",
                self.len
            );
        }
        self.len = position;
        let seq_len = k.dim(1)?;
        let needed = self.len + seq_len;
        let capacity = self
            .keys
            .as_ref()
            .map_or(0, |keys| keys.dim(1).unwrap_or(0));
        if needed > capacity {
            let grown = needed
                .max(capacity * 2)
                .max(Self::FIRST_CAPACITY)
                .min(context_length.max(needed));
            self.keys = Some(grow(self.keys.take(), self.len, k, grown)?);
            self.values = Some(grow(self.values.take(), self.len, v, grown)?);
        }
        let (Some(keys), Some(values)) = (&self.keys, &self.values) else {
            bail!("the KV cache was not allocated")
        };
        keys.slice_set(k, 1, self.len)?;
        values.slice_set(v, 1, self.len)?;
        self.len = needed;
        Ok((keys.narrow(1, 0, needed)?, values.narrow(1, 0, needed)?))
    }
}

/// A new buffer of `capacity` rows holding a copy of the first `kept` rows of `old` (never
/// its storage: caches are written in place, so two must not share one).
fn grow(old: Option<Tensor>, kept: usize, like: &Tensor, capacity: usize) -> Result<Tensor> {
    let (heads, _, head_dim) = like.dims3()?;
    let fresh = Tensor::zeros((heads, capacity, head_dim), like.dtype(), like.device())?;
    if let Some(old) = old
        && kept > 0
    {
        fresh.slice_set(&old.narrow(1, 0, kept)?.contiguous()?, 1, 0)?;
    }
    Ok(fresh)
}

/// Linear maps that read the same input. When their weights share a quantisation their rows
/// are stacked into one matrix (rows of a quantised matrix are whole blocks, so the bytes simply
/// follow one another) and one matmul computes every output.
struct Projections {
    matmuls: Vec<(Linear, Option<Tensor>)>,
    widths: Vec<usize>,
}

impl Projections {
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::with_capacity(self.widths.len());
        for (matmul, bias) in &self.matmuls {
            let output = matmul.forward(x)?;
            outputs.push(match bias {
                Some(bias) => output.broadcast_add(bias)?,
                None => output,
            });
        }
        if outputs.len() == self.widths.len() {
            return Ok(outputs);
        }
        let fused = &outputs[0];
        let mut start = 0;
        self.widths
            .iter()
            .map(|&width| {
                let part = fused.narrow(D::Minus1, start, width);
                start += width;
                part
            })
            .collect()
    }
}

/// A weight matrix and the kernel that multiplies by it: ours for the quantisations candle
/// multiplies slowly on the CPU ([`QuantMatMul`]), candle's for the others and on a GPU.
enum Linear {
    Candle(QMatMul),
    Own(QuantMatMul),
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(matmul) => matmul.forward(x),
            Linear::Own(matmul) => matmul.forward(x),
        }
    }
}

struct Weights<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
    device: &'a Device,
    requantize: bool,
}

impl<R: Read + Seek> Weights<'_, R> {
    /// Read on the CPU: stacking rows needs the bytes, and a CUDA device gets them after.
    fn quantized(&mut self, name: &str) -> Result<QTensor> {
        self.content.tensor(self.reader, name, &Device::Cpu)
    }

    fn optional(&mut self, name: &str) -> Result<Option<QTensor>> {
        if self.content.tensor_infos.contains_key(name) {
            self.quantized(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn vector(&mut self, name: &str) -> Result<Tensor> {
        self.quantized(name)?
            .dequantize(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_device(self.device)
    }

    /// Two vectors a layer has both or neither of (Qwen3's and Gemma 3's q/k norms, Gemma's
    /// post-norms), each read once.
    fn optional_pair(&mut self, first: &str, second: &str) -> Result<Option<(Tensor, Tensor)>> {
        if !self.content.tensor_infos.contains_key(first) {
            return Ok(None);
        }
        Ok(Some((self.vector(first)?, self.vector(second)?)))
    }

    fn on_device(&self, tensor: QTensor) -> Result<QTensor> {
        if self.device.is_cpu() {
            return Ok(tensor);
        }
        let shape = tensor.shape().clone();
        let storage = QStorage::from_data(tensor.data()?, self.device, tensor.dtype())?;
        QTensor::new(storage, shape)
    }

    /// A matrix as it will be multiplied: rewritten as Q8_0 when asked to and it pays.
    fn matrix(&mut self, name: &str) -> Result<QTensor> {
        let tensor = self.quantized(name)?;
        self.requantized(tensor)
    }

    fn requantized(&self, tensor: QTensor) -> Result<QTensor> {
        let columns = tensor.shape().dims().last().copied().unwrap_or(0);
        if self.requantize
            && SLOWER_THAN_Q8_0_ON_CPU.contains(&tensor.dtype())
            && columns % GgmlDType::Q8_0.block_size() == 0
        {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)
        } else {
            Ok(tensor)
        }
    }

    fn matmul(&self, tensor: QTensor) -> Result<Linear> {
        if self.device.is_cpu()
            && let Some(own) = QuantMatMul::new(&tensor)?
        {
            return Ok(Linear::Own(own));
        }
        Ok(Linear::Candle(QMatMul::from_qtensor(
            self.on_device(tensor)?,
        )?))
    }

    fn single(&mut self, name: &str) -> Result<Linear> {
        let tensor = self.matrix(name)?;
        self.matmul(tensor)
    }

    /// `names` are tensor stems (`blk.0.attn_q`): their `.weight`, and `.bias` where the model
    /// has one (Qwen2's q/k/v do).
    fn projections(&mut self, names: &[String]) -> Result<Projections> {
        let mut weights = Vec::with_capacity(names.len());
        let mut biases = Vec::with_capacity(names.len());
        for name in names {
            weights.push(self.matrix(&format!("{name}.weight"))?);
            biases.push(match self.optional(&format!("{name}.bias"))? {
                Some(bias) => Some(bias.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?),
                None => None,
            });
        }
        let widths: Vec<usize> = weights
            .iter()
            .map(|weight| weight.shape().dims()[0])
            .collect();
        let columns = weights[0].shape().dims()[1];
        let fusable = weights.iter().all(|weight| {
            weight.dtype() == weights[0].dtype() && weight.shape().dims()[1] == columns
        }) && (biases.iter().all(Option::is_some)
            || biases.iter().all(Option::is_none));
        if !fusable {
            return weights
                .into_iter()
                .zip(biases)
                .map(|(weight, bias)| {
                    Ok((
                        self.matmul(weight)?,
                        bias.map(|bias| bias.to_device(self.device)).transpose()?,
                    ))
                })
                .collect::<Result<_>>()
                .map(|matmuls| Projections { matmuls, widths });
        }
        let mut bytes = Vec::new();
        for weight in &weights {
            bytes.extend_from_slice(&weight.data()?);
        }
        let dtype = weights[0].dtype();
        let stacked = QTensor::new(
            QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, dtype)?,
            (widths.iter().sum::<usize>(), columns),
        )?;
        let bias = match biases.into_iter().collect::<Option<Vec<Tensor>>>() {
            Some(parts) => Some(Tensor::cat(&parts, 0)?.to_device(self.device)?),
            None => None,
        };
        Ok(Projections {
            matmuls: vec![(self.matmul(stacked)?, bias)],
            widths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPU's attention is the CPU's, computed as matrix products: checked here on the CPU,
    /// with a cache that holds more than it shows (as the KV cache's views do) and a prompt that
    /// continues an earlier one, so the mask and the grouped rows are exercised; and so for
    /// Gemma's sliding window (narrower than what the prompt sees) and Gemma 2's soft cap.
    #[test]
    fn matrix_attention_equals_the_cpus() {
        let config = Config {
            layers: 1,
            heads: 6,
            kv_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_base: 10_000.0,
            rope_interleaved: false,
            context_length: 64,
            rope_divisors: None,
            embedding_scale: None,
            gelu: false,
            attention_softcap: None,
            final_softcap: None,
            sliding: None,
            rope_linear_factor: 1.0,
        };
        let (position, len, capacity) = (5, 4, 16);
        let values = |count: usize, seed: usize| -> Vec<f32> {
            (0..count)
                .map(|i| (((i * 7919 + seed * 104_729) % 997) as f32 / 997.0) - 0.5)
                .collect()
        };
        let (heads, kv_heads, head_dim) = (config.heads, config.kv_heads, config.head_dim);
        let q = Tensor::from_vec(
            values(heads * len * head_dim, 1),
            (heads, len, head_dim),
            &Device::Cpu,
        )
        .unwrap();
        let cache = |seed| {
            Tensor::from_vec(
                values(kv_heads * capacity * head_dim, seed),
                (kv_heads, capacity, head_dim),
                &Device::Cpu,
            )
            .unwrap()
            .narrow(1, 0, position + len)
            .unwrap()
        };
        let (keys, values) = (cache(2), cache(3));
        let n_rep = heads / kv_heads;
        for (window, softcap) in [
            (None, None),
            (Some(3), None),
            (None, Some(0.2)),
            (Some(6), Some(0.5)),
        ] {
            let limits = Attention {
                n_rep,
                position,
                window,
                softcap,
            };
            let on_cpu: Vec<f32> = cpu_attention(&q, &keys, &values, &limits)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mask = causal_mask(&config, position, len, window, &Device::Cpu).unwrap();
            let as_matrices: Vec<f32> =
                matrix_attention(&q, &keys, &values, &limits, mask.as_ref())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
            assert_eq!(on_cpu.len(), as_matrices.len());
            for (index, (a, b)) in on_cpu.iter().zip(&as_matrices).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "window {window:?}, cap {softcap:?}, value {index}: {a} on the CPU, {b} as matrices"
                );
            }
        }
    }
}
