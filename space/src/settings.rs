//! The `[model]`, `[chat]`, `[browser]` and `[limits]` tables: which model answers, how the
//! chat starts, the browser fallback, and what the server accepts.

use serde::{Deserialize, Deserializer, Serialize};
use wire::limits::{self, Bound};

/// How a conversation starts; the visitor can change every value in the chat's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatDefaults {
    /// Sent as the first (system) message; also used by API requests that bring none.
    pub system_prompt: Option<String>,
    #[serde(deserialize_with = "temperature")]
    pub temperature: f64,
    #[serde(deserialize_with = "top_p")]
    pub top_p: f64,
    #[serde(deserialize_with = "max_tokens")]
    pub max_tokens: u32,
}

impl Default for ChatDefaults {
    fn default() -> Self {
        Self {
            system_prompt: None,
            temperature: limits::TEMPERATURE.default,
            top_p: limits::TOP_P.default,
            max_tokens: limits::MAX_TOKENS.default,
        }
    }
}

/// What the feedback exports make of visitors' ratings.
#[cfg(feature = "load")]
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackSettings {
    #[serde(deserialize_with = "dpo_pairs_per_question")]
    pub dpo_pairs_per_question: u32,
}

#[cfg(feature = "load")]
impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            dpo_pairs_per_question: limits::DPO_PAIRS_PER_QUESTION.default,
        }
    }
}

/// The browser's own model, for when the server cannot answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSettings {
    /// The model browsers run, from the same sources as `[model]` (a catalogue name, or a
    /// table with `catalog`, `hub` or `path`); left out: the server's own model when a browser
    /// can hold its file, else `smollm2-135m`. Server only (the page asks `/models`).
    #[cfg(feature = "load")]
    #[serde(skip_serializing, deserialize_with = "browser_model")]
    pub model: Option<ModelSource>,
    /// Whether the chat moves to the visitor's browser when the server cannot answer.
    pub failover: bool,
    /// Rewrite Q4_1/Q5_0/Q5_1 weights as Q8_0 in the browser: about 10% faster there,
    /// but the answers are no longer the server's to the last token.
    pub requantize: bool,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            #[cfg(feature = "load")]
            model: None,
            failover: true,
            requantize: false,
        }
    }
}

/// The catalogue model browsers run when the server's own is too large for them.
pub const SMALL_BROWSER_MODEL: &str = "smollm2-135m";

/// `[browser] model`: a catalogue name, or a table as `[model]` takes it.
#[cfg(feature = "load")]
fn browser_model<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ModelSource>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum InToml {
        Catalog(String),
        Table(SourceInToml),
    }
    match InToml::deserialize(deserializer) {
        Ok(InToml::Catalog(name)) => Ok(Some(ModelSource::Catalog(name))),
        Ok(InToml::Table(source)) => source
            .try_into()
            .map(Some)
            .map_err(serde::de::Error::custom),
        Err(_) => Err(serde::de::Error::custom(
            "allowed: a catalogue name (e.g. \"smollm2-135m\"), or a table with one of `catalog`, `hub` ({ repo, file, revision, sha256 }) or `path` (a .gguf file), as in [model]",
        )),
    }
}

/// What one Space accepts, so that no visitor can take it from the others.
#[cfg(feature = "load")]
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "LimitsInToml")]
pub struct Limits {
    pub max_concurrent: usize,
    pub prefix_cache_mb: usize,
    pub max_queue: usize,
    pub max_input_tokens: usize,
    pub max_total_tokens: usize,
    pub max_concurrent_per_client: usize,
    pub requests_per_minute_per_client: usize,
    pub tokens_per_minute_per_client: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `ignore_eos` is taken only from a server started with `--bench` (never from space.toml):
    /// otherwise any visitor could make every answer run to `max_tokens`.
    pub allow_ignore_eos: bool,
}

#[cfg(feature = "load")]
impl Default for Limits {
    fn default() -> Self {
        LimitsInToml::default()
            .try_into()
            .expect("the defaults are consistent")
    }
}

#[cfg(feature = "load")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsInToml {
    #[serde(deserialize_with = "max_concurrent")]
    max_concurrent: u32,
    #[serde(deserialize_with = "prefix_cache_mb")]
    prefix_cache_mb: u32,
    #[serde(deserialize_with = "max_queue")]
    max_queue: u32,
    #[serde(deserialize_with = "max_input_tokens")]
    max_input_tokens: u32,
    #[serde(deserialize_with = "max_total_tokens")]
    max_total_tokens: u32,
    #[serde(deserialize_with = "max_concurrent_per_client")]
    max_concurrent_per_client: u32,
    #[serde(deserialize_with = "requests_per_minute_per_client")]
    requests_per_minute_per_client: u32,
    #[serde(deserialize_with = "tokens_per_minute_per_client")]
    tokens_per_minute_per_client: u32,
    #[serde(deserialize_with = "proxy_ranges")]
    trusted_proxies: Vec<ipnet::IpNet>,
}

#[cfg(feature = "load")]
impl Default for LimitsInToml {
    fn default() -> Self {
        Self {
            max_concurrent: limits::MAX_CONCURRENT.default,
            prefix_cache_mb: limits::PREFIX_CACHE_MB.default,
            max_queue: limits::MAX_QUEUE.default,
            max_input_tokens: limits::MAX_INPUT_TOKENS.default,
            max_total_tokens: limits::MAX_TOTAL_TOKENS.default,
            max_concurrent_per_client: limits::MAX_CONCURRENT_PER_CLIENT.default,
            requests_per_minute_per_client: limits::REQUESTS_PER_MINUTE_PER_CLIENT.default,
            tokens_per_minute_per_client: limits::TOKENS_PER_MINUTE_PER_CLIENT.default,
            // Loopback and the private ranges: where a Space's own proxy connects from.
            trusted_proxies: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
            ]
            .iter()
            .map(|range| range.parse().expect("valid ranges"))
            .collect(),
        }
    }
}

#[cfg(feature = "load")]
impl TryFrom<LimitsInToml> for Limits {
    type Error = String;
    fn try_from(limits: LimitsInToml) -> Result<Self, String> {
        if limits.max_queue < limits.max_concurrent {
            return Err(format!(
                "max_queue ({}) is smaller than max_concurrent ({}); allowed: max_queue >= max_concurrent (the queue counts the requests being answered)",
                limits.max_queue, limits.max_concurrent
            ));
        }
        if limits.max_input_tokens >= limits.max_total_tokens {
            return Err(format!(
                "max_input_tokens ({}) leaves no room to answer within max_total_tokens ({}); allowed: max_input_tokens < max_total_tokens",
                limits.max_input_tokens, limits.max_total_tokens
            ));
        }
        if limits.tokens_per_minute_per_client < limits.max_total_tokens {
            return Err(format!(
                "tokens_per_minute_per_client ({}) is smaller than max_total_tokens ({}); allowed: tokens_per_minute_per_client >= max_total_tokens (one request of the largest size must fit)",
                limits.tokens_per_minute_per_client, limits.max_total_tokens
            ));
        }
        let size = |value: u32| value as usize;
        Ok(Self {
            max_concurrent: size(limits.max_concurrent),
            prefix_cache_mb: size(limits.prefix_cache_mb),
            max_queue: size(limits.max_queue),
            max_input_tokens: size(limits.max_input_tokens),
            max_total_tokens: size(limits.max_total_tokens),
            max_concurrent_per_client: size(limits.max_concurrent_per_client),
            requests_per_minute_per_client: size(limits.requests_per_minute_per_client),
            tokens_per_minute_per_client: size(limits.tokens_per_minute_per_client),
            trusted_proxies: limits.trusted_proxies,
            allow_ignore_eos: false,
        })
    }
}

#[cfg(feature = "load")]
fn proxy_ranges<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|range| {
            range
                .parse::<ipnet::IpNet>()
                .or_else(|_| range.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("found {range:?}; allowed: an IP address or range, e.g. \"10.0.0.0/8\" or \"127.0.0.1\"")))
        })
        .collect()
}

/// A `deserialize_with` function per bounded key of `wire::limits`.
macro_rules! bounded {
    ($($name:ident: $kind:ident($bound:expr)),* $(,)?) => {$(
        fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<$kind, D::Error> {
            <$kind as InToml>::read(deserializer, &$bound)
        }
    )*};
}

bounded! {
    temperature: f64(limits::TEMPERATURE),
    top_p: f64(limits::TOP_P),
    max_tokens: u32(limits::MAX_TOKENS),
}

#[cfg(feature = "load")]
bounded! {
    max_concurrent: u32(limits::MAX_CONCURRENT),
    prefix_cache_mb: u32(limits::PREFIX_CACHE_MB),
    max_queue: u32(limits::MAX_QUEUE),
    max_input_tokens: u32(limits::MAX_INPUT_TOKENS),
    max_total_tokens: u32(limits::MAX_TOTAL_TOKENS),
    max_concurrent_per_client: u32(limits::MAX_CONCURRENT_PER_CLIENT),
    requests_per_minute_per_client: u32(limits::REQUESTS_PER_MINUTE_PER_CLIENT),
    tokens_per_minute_per_client: u32(limits::TOKENS_PER_MINUTE_PER_CLIENT),
    dpo_pairs_per_question: u32(limits::DPO_PAIRS_PER_QUESTION),
    connect_timeout_s: u32(limits::REMOTE_CONNECT_TIMEOUT_S),
    read_timeout_s: u32(limits::REMOTE_READ_TIMEOUT_S),
    timeout_s: u32(limits::REMOTE_TIMEOUT_S),
}

/// A number space.toml may hold for a key of `wire::limits`, checked against its bound.
trait InToml: Sized + Copy {
    fn read<'de, D: Deserializer<'de>>(
        deserializer: D,
        bound: &Bound<Self>,
    ) -> Result<Self, D::Error>;
}

impl InToml for u32 {
    fn read<'de, D: Deserializer<'de>>(
        deserializer: D,
        bound: &Bound<u32>,
    ) -> Result<u32, D::Error> {
        let number = i64::deserialize(deserializer)?;
        u64::try_from(number)
            .ok()
            .and_then(|number| bound.check(number).ok())
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "found {number}; allowed: a whole number from {} to {}",
                    bound.min, bound.max
                ))
            })
    }
}

impl InToml for f64 {
    fn read<'de, D: Deserializer<'de>>(
        deserializer: D,
        bound: &Bound<f64>,
    ) -> Result<f64, D::Error> {
        let number = f64::deserialize(deserializer)?;
        bound.check(number).map_err(|_| {
            serde::de::Error::custom(format!(
                "found {number}; allowed: a number from {} to {}",
                bound.min, bound.max
            ))
        })
    }
}

/// Where the server's model comes from (server only).
#[cfg(feature = "load")]
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "ModelInToml")]
pub struct ModelSettings {
    pub source: ModelSource,
    /// Replaces the GGUF's own chat template (Jinja, Hugging Face conventions).
    pub chat_template: Option<String>,
    /// On the CPU, rewrite Q4_1/Q5_0/Q5_1 weights as Q8_0 at load. Off by default since the
    /// engine's own Q4_1/Q5_0 kernels: the file's weights then decode 12–25% faster (fewer bytes
    /// read per token), read prompts as fast, take less memory, and give the browser's tokens.
    pub requantize: bool,
    /// What a converted checkpoint's weights become (`q4_k_m`, `q8_0`, `f16`); GGUF files are
    /// served as they are.
    pub quantization: String,
    /// `special_tokens_in_messages = "control"`: the special tokens a message writes steer the
    /// model (for a team whose demo sends them on purpose); by default (`"text"`) they are read
    /// as text, so a visitor cannot fake a turn of the conversation.
    pub control_tokens_in_messages: bool,
}

#[cfg(feature = "load")]
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A model Vitrina knows how to fetch (`smollm2-135m`, `qwen2.5-coder-0.5b`).
    Catalog(String),
    /// A GGUF file in a Hub repository, pinned by its sha256, or by a commit (then the
    /// sha256 the Hub keeps for the file is checked).
    Hub {
        repo: super::HubId,
        file: String,
        revision: String,
        sha256: Option<String>,
    },
    /// A Hugging Face checkpoint (safetensors) or a PEFT LoRA adapter in a Hub repository,
    /// converted to GGUF at build time; `base` is an adapter's base model (repo, revision).
    HubCheckpoint {
        repo: super::HubId,
        revision: String,
        base: Option<(super::HubId, String)>,
    },
    /// A GGUF file on the machine (or in the image).
    Path(std::path::PathBuf),
}

#[cfg(feature = "load")]
impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            source: ModelSource::Catalog("qwen2.5-coder-0.5b".into()),
            chat_template: None,
            requantize: false,
            quantization: wire::limits::QUANTIZATIONS[0].into(),
            control_tokens_in_messages: false,
        }
    }
}

#[cfg(feature = "load")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelInToml {
    catalog: Option<String>,
    hub: Option<HubFileInToml>,
    path: Option<String>,
    chat_template: Option<String>,
    requantize: Option<bool>,
    quantization: Option<String>,
    base: Option<BaseInToml>,
    special_tokens_in_messages: Option<String>,
}

/// An adapter's base model.
#[cfg(feature = "load")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseInToml {
    repo: super::HubId,
    #[serde(default = "main_revision")]
    revision: String,
}

/// Where a model file comes from: exactly one of the three.
#[cfg(feature = "load")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceInToml {
    catalog: Option<String>,
    hub: Option<HubFileInToml>,
    path: Option<String>,
}

#[cfg(feature = "load")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HubFileInToml {
    repo: super::HubId,
    file: Option<String>,
    #[serde(default = "main_revision")]
    revision: String,
    sha256: Option<String>,
}

/// A revision that is a commit (40 hexadecimal digits) pins every file it holds.
#[cfg(feature = "load")]
fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(feature = "load")]
fn main_revision() -> String {
    "main".into()
}

#[cfg(feature = "load")]
impl TryFrom<SourceInToml> for ModelSource {
    type Error = String;
    fn try_from(source: SourceInToml) -> Result<Self, String> {
        Ok(match (source.catalog, source.hub, source.path) {
            (Some(name), None, None) => ModelSource::Catalog(name),
            (None, Some(hub), None) => {
                let Some(file) = hub.file else {
                    return Ok(ModelSource::HubCheckpoint {
                        repo: hub.repo,
                        revision: hub.revision,
                        base: None,
                    });
                };
                let sha256 = match hub.sha256 {
                    Some(sha256)
                        if sha256.len() == 64
                            && sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) =>
                    {
                        Some(sha256.to_ascii_lowercase())
                    }
                    Some(sha256) => {
                        return Err(format!(
                            "hub.sha256 is {sha256:?}; allowed: the file's sha256, 64 hexadecimal digits (shown on the file's page on the Hub, or `sha256sum FILE`)"
                        ));
                    }
                    None if is_commit(&hub.revision) => None,
                    None => {
                        return Err(format!(
                            "hub.revision is {:?} and no sha256 is given: pin the file by its commit (revision = the 40-digit commit id from the repository's history) or give its sha256",
                            hub.revision
                        ));
                    }
                };
                if !file.ends_with(".gguf") {
                    return Err(format!(
                        "hub.file is {file:?}; allowed: a .gguf file in the repository (for a safetensors checkpoint or a LoRA adapter leave `file` out)"
                    ));
                }
                ModelSource::Hub {
                    repo: hub.repo,
                    file,
                    revision: hub.revision,
                    sha256,
                }
            }
            (None, None, Some(path)) if path.ends_with(".gguf") => ModelSource::Path(path.into()),
            (None, None, Some(path)) => {
                return Err(format!(
                    "path is {path:?}; allowed: the path of a .gguf file"
                ));
            }
            _ => {
                return Err(
                    "give exactly one of `catalog` (e.g. \"qwen2.5-coder-0.5b\"), `hub` ({ repo, revision } for a safetensors checkpoint or a LoRA adapter; { repo, file, revision, sha256 } for a GGUF) or `path` (a .gguf file)".into()
                );
            }
        })
    }
}

#[cfg(feature = "load")]
impl TryFrom<ModelInToml> for ModelSettings {
    type Error = String;
    fn try_from(model: ModelInToml) -> Result<Self, String> {
        let mut source = SourceInToml {
            catalog: model.catalog,
            hub: model.hub,
            path: model.path,
        }
        .try_into()?;
        if let Some(base) = model.base {
            match &mut source {
                ModelSource::HubCheckpoint { base: slot, .. } => {
                    *slot = Some((base.repo, base.revision));
                }
                _ => {
                    return Err(
                        "base is set, but the model is not an adapter: `base` names the model a LoRA adapter (hub = { repo, revision }) was trained on".into(),
                    );
                }
            }
        }
        let quantization = model
            .quantization
            .map(|name| name.to_ascii_lowercase())
            .unwrap_or_else(|| wire::limits::QUANTIZATIONS[0].into());
        if !wire::limits::QUANTIZATIONS.contains(&quantization.as_str()) {
            return Err(format!(
                "quantization is {quantization:?}; allowed: {}",
                wire::limits::QUANTIZATIONS.join(", ")
            ));
        }
        let control_tokens_in_messages = match model.special_tokens_in_messages.as_deref() {
            None | Some("text") => false,
            Some("control") => true,
            Some(other) => {
                return Err(format!(
                    "special_tokens_in_messages is {other:?}; allowed: \"text\" (the default: what visitors write is text) or \"control\" (special tokens in messages steer the model)"
                ));
            }
        };
        Ok(Self {
            source,
            chat_template: model.chat_template,
            requantize: model
                .requantize
                .unwrap_or(ModelSettings::default().requantize),
            quantization,
            control_tokens_in_messages,
        })
    }
}

/// Where answers are generated (server only): this server's own model, or an
/// OpenAI-compatible server elsewhere (TGI, vLLM, llama-server, an Inference Endpoint, another
/// Vitrina) for a Space that outgrows one machine.
#[cfg(feature = "load")]
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(try_from = "ServerInToml")]
pub enum ServerBackend {
    #[default]
    Local,
    Remote(Upstream),
}

#[cfg(feature = "load")]
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// The API's base address, ending in `/v1`.
    pub url: String,
    /// The model id to ask the upstream for, if it serves several.
    pub model: Option<String>,
    /// The environment variable that holds the upstream's bearer token (never the token itself:
    /// space.toml is public).
    pub token_env: Option<String>,
    pub timeouts: UpstreamTimeouts,
}

/// How long the remote backend may take before its visitor gets 504 and its place back.
#[cfg(feature = "load")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpstreamTimeouts {
    pub connect: std::time::Duration,
    /// The longest silence between two pieces of an answer.
    pub read: std::time::Duration,
    pub whole: std::time::Duration,
}

#[cfg(feature = "load")]
impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self::new(None, None, None)
    }
}

#[cfg(feature = "load")]
impl UpstreamTimeouts {
    fn new(connect_s: Option<u32>, read_s: Option<u32>, whole_s: Option<u32>) -> Self {
        let seconds = |value: Option<u32>, bound: Bound<u32>| {
            std::time::Duration::from_secs(value.unwrap_or(bound.default).into())
        };
        Self {
            connect: seconds(connect_s, limits::REMOTE_CONNECT_TIMEOUT_S),
            read: seconds(read_s, limits::REMOTE_READ_TIMEOUT_S),
            whole: seconds(whole_s, limits::REMOTE_TIMEOUT_S),
        }
    }
}

#[cfg(feature = "load")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerInToml {
    backend: String,
    url: Option<String>,
    model: Option<String>,
    token_env: Option<String>,
    #[serde(default, deserialize_with = "some_connect_timeout_s")]
    connect_timeout_s: Option<u32>,
    #[serde(default, deserialize_with = "some_read_timeout_s")]
    read_timeout_s: Option<u32>,
    #[serde(default, deserialize_with = "some_timeout_s")]
    timeout_s: Option<u32>,
}

#[cfg(feature = "load")]
fn some_connect_timeout_s<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    connect_timeout_s(deserializer).map(Some)
}

#[cfg(feature = "load")]
fn some_read_timeout_s<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    read_timeout_s(deserializer).map(Some)
}

#[cfg(feature = "load")]
fn some_timeout_s<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    timeout_s(deserializer).map(Some)
}

#[cfg(feature = "load")]
impl TryFrom<ServerInToml> for ServerBackend {
    type Error = String;
    fn try_from(server: ServerInToml) -> Result<Self, String> {
        let timeouts = [
            server.connect_timeout_s,
            server.read_timeout_s,
            server.timeout_s,
        ];
        if server.backend == "local" && timeouts.iter().any(Option::is_some) {
            return Err("backend is \"local\" but a timeout is set; allowed: connect_timeout_s, read_timeout_s and timeout_s only with backend = \"remote\"".into());
        }
        let timeouts = UpstreamTimeouts::new(
            server.connect_timeout_s,
            server.read_timeout_s,
            server.timeout_s,
        );
        match (server.backend.as_str(), server.url) {
            ("local", None) => Ok(Self::Local),
            ("local", Some(_)) => Err("backend is \"local\" but url is set; allowed: url only with backend = \"remote\"".into()),
            ("remote", Some(url)) => {
                let parsed = url::Url::parse(&url).map_err(|error| format!("url {url:?} is not an address ({error}); allowed: e.g. \"https://mi-endpoint.example/v1\""))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("url {url:?}: allowed: an http(s) address"));
                }
                Ok(Self::Remote(Upstream { url: url.trim_end_matches('/').to_owned(), model: server.model, token_env: server.token_env, timeouts }))
            }
            ("remote", None) => Err("backend is \"remote\" but url is missing; add url = \"https://…/v1\" (an OpenAI-compatible API)".into()),
            (other, _) => Err(format!("backend is {other:?}; allowed: \"local\" (this server's model) or \"remote\" (an OpenAI-compatible API at url)")),
        }
    }
}
