//! The `[model]`, `[chat]`, `[browser]` and `[limits]` tables: which model answers, how the
//! chat starts, the browser fallback, and what the server accepts.

use serde::{Deserialize, Deserializer, Serialize};

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
    #[serde(deserialize_with = "whole_number::<_, 1, 4096>")]
    pub max_tokens: u32,
}

impl Default for ChatDefaults {
    fn default() -> Self {
        Self {
            system_prompt: None,
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 512,
        }
    }
}

/// The browser's own model, for when the server cannot answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSettings {
    /// A catalogue name (checked by the server at start-up): usually smaller than the server's.
    pub model: String,
    /// Whether the chat moves to the visitor's browser when the server cannot answer.
    pub failover: bool,
    /// Rewrite Q4_1/Q5_0/Q5_1 weights as Q8_0 in the browser: about 10% faster there,
    /// but the answers are no longer the server's to the last token.
    pub requantize: bool,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            model: "smollm2-135m".into(),
            failover: true,
            requantize: false,
        }
    }
}

/// What one Space accepts, so that no visitor can take it from the others.
#[cfg(feature = "ssr")]
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "LimitsInToml")]
pub struct Limits {
    pub max_concurrent: usize,
    pub max_queue: usize,
    pub max_input_tokens: usize,
    pub max_total_tokens: usize,
    pub max_concurrent_per_client: usize,
    pub requests_per_minute_per_client: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[cfg(feature = "ssr")]
impl Default for Limits {
    fn default() -> Self {
        LimitsInToml::default()
            .try_into()
            .expect("the defaults are consistent")
    }
}

#[cfg(feature = "ssr")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsInToml {
    #[serde(deserialize_with = "whole_number::<_, 1, 64>")]
    max_concurrent: u32,
    #[serde(deserialize_with = "whole_number::<_, 1, 1024>")]
    max_queue: u32,
    #[serde(deserialize_with = "whole_number::<_, 1, 131072>")]
    max_input_tokens: u32,
    #[serde(deserialize_with = "whole_number::<_, 2, 131072>")]
    max_total_tokens: u32,
    #[serde(deserialize_with = "whole_number::<_, 1, 64>")]
    max_concurrent_per_client: u32,
    #[serde(deserialize_with = "whole_number::<_, 1, 10000>")]
    requests_per_minute_per_client: u32,
    #[serde(deserialize_with = "proxy_ranges")]
    trusted_proxies: Vec<ipnet::IpNet>,
}

#[cfg(feature = "ssr")]
impl Default for LimitsInToml {
    fn default() -> Self {
        Self {
            max_concurrent: 1,
            max_queue: 8,
            max_input_tokens: 2048,
            max_total_tokens: 3072,
            max_concurrent_per_client: 2,
            requests_per_minute_per_client: 30,
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

#[cfg(feature = "ssr")]
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
        let size = |value: u32| value as usize;
        Ok(Self {
            max_concurrent: size(limits.max_concurrent),
            max_queue: size(limits.max_queue),
            max_input_tokens: size(limits.max_input_tokens),
            max_total_tokens: size(limits.max_total_tokens),
            max_concurrent_per_client: size(limits.max_concurrent_per_client),
            requests_per_minute_per_client: size(limits.requests_per_minute_per_client),
            trusted_proxies: limits.trusted_proxies,
        })
    }
}

#[cfg(feature = "ssr")]
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

fn whole_number<'de, D: Deserializer<'de>, const MIN: u32, const MAX: u32>(
    deserializer: D,
) -> Result<u32, D::Error> {
    let number = i64::deserialize(deserializer)?;
    u32::try_from(number)
        .ok()
        .filter(|number| (MIN..=MAX).contains(number))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "found {number}; allowed: a whole number from {MIN} to {MAX}"
            ))
        })
}

fn temperature<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    number_in(
        deserializer,
        0.0..=2.0,
        "from 0 (always the likeliest word) to 2",
    )
}

fn top_p<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    number_in(
        deserializer,
        f64::MIN_POSITIVE..=1.0,
        "above 0 and at most 1",
    )
}

fn number_in<'de, D: Deserializer<'de>>(
    deserializer: D,
    range: std::ops::RangeInclusive<f64>,
    allowed: &str,
) -> Result<f64, D::Error> {
    let number = f64::deserialize(deserializer)?;
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(serde::de::Error::custom(format!(
            "found {number}; allowed: a number {allowed}"
        )))
    }
}

/// Where the server's model comes from (server only).
#[cfg(feature = "ssr")]
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "ModelInToml")]
pub struct ModelSettings {
    pub source: ModelSource,
    /// Replaces the GGUF's own chat template (Jinja, Hugging Face conventions).
    pub chat_template: Option<String>,
    /// On the CPU, rewrite Q4_1/Q5_0/Q5_1 weights as Q8_0 at load (candle has no fast kernel
    /// for those three): faster answers for more memory and a few seconds more at start.
    pub requantize: bool,
}

#[cfg(feature = "ssr")]
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A model Vitrina knows how to fetch (`smollm2-135m`, `qwen2.5-0.5b`).
    Catalog(String),
    /// A GGUF file in a Hub repository, pinned by its sha256.
    Hub {
        repo: super::HubId,
        file: String,
        revision: String,
        sha256: String,
    },
    /// A GGUF file on the machine (or in the image).
    Path(std::path::PathBuf),
}

#[cfg(feature = "ssr")]
impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            source: ModelSource::Catalog("qwen2.5-0.5b".into()),
            chat_template: None,
            requantize: true,
        }
    }
}

#[cfg(feature = "ssr")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelInToml {
    catalog: Option<String>,
    hub: Option<HubFileInToml>,
    path: Option<String>,
    chat_template: Option<String>,
    requantize: Option<bool>,
}

#[cfg(feature = "ssr")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HubFileInToml {
    repo: super::HubId,
    file: String,
    #[serde(default = "main_revision")]
    revision: String,
    sha256: String,
}

#[cfg(feature = "ssr")]
fn main_revision() -> String {
    "main".into()
}

#[cfg(feature = "ssr")]
impl TryFrom<ModelInToml> for ModelSettings {
    type Error = String;
    fn try_from(model: ModelInToml) -> Result<Self, String> {
        let source = match (model.catalog, model.hub, model.path) {
            (Some(name), None, None) => ModelSource::Catalog(name),
            (None, Some(hub), None) => {
                if hub.sha256.len() != 64
                    || !hub.sha256.bytes().all(|byte| byte.is_ascii_hexdigit())
                {
                    return Err(format!(
                        "hub.sha256 is {:?}; allowed: the file's sha256, 64 hexadecimal digits (shown on the file's page on the Hub, or `sha256sum FILE`)",
                        hub.sha256
                    ));
                }
                if !hub.file.ends_with(".gguf") {
                    return Err(format!(
                        "hub.file is {:?}; allowed: a .gguf file in the repository",
                        hub.file
                    ));
                }
                ModelSource::Hub {
                    repo: hub.repo,
                    file: hub.file,
                    revision: hub.revision,
                    sha256: hub.sha256.to_ascii_lowercase(),
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
                    "give exactly one of `catalog` (e.g. \"qwen2.5-0.5b\"), `hub` ({ repo, file, revision, sha256 }) or `path` (a .gguf file)".into()
                );
            }
        };
        Ok(Self {
            source,
            chat_template: model.chat_template,
            requantize: model.requantize.unwrap_or(true),
        })
    }
}

/// Where answers are generated (server only): this server's own model, or an
/// OpenAI-compatible server elsewhere (TGI, vLLM, llama-server, an Inference Endpoint, another
/// Vitrina) for a Space that outgrows one machine.
#[cfg(feature = "ssr")]
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(try_from = "ServerInToml")]
pub enum Backend {
    #[default]
    Local,
    Remote(Upstream),
}

#[cfg(feature = "ssr")]
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// The API's base address, ending in `/v1`.
    pub url: String,
    /// The model id to ask the upstream for, if it serves several.
    pub model: Option<String>,
    /// The environment variable that holds the upstream's bearer token (never the token itself:
    /// space.toml is public).
    pub token_env: Option<String>,
}

#[cfg(feature = "ssr")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerInToml {
    backend: String,
    url: Option<String>,
    model: Option<String>,
    token_env: Option<String>,
}

#[cfg(feature = "ssr")]
impl TryFrom<ServerInToml> for Backend {
    type Error = String;
    fn try_from(server: ServerInToml) -> Result<Self, String> {
        match (server.backend.as_str(), server.url) {
            ("local", None) => Ok(Self::Local),
            ("local", Some(_)) => Err("backend is \"local\" but url is set; allowed: url only with backend = \"remote\"".into()),
            ("remote", Some(url)) => {
                let parsed = url::Url::parse(&url).map_err(|error| format!("url {url:?} is not an address ({error}); allowed: e.g. \"https://mi-endpoint.example/v1\""))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("url {url:?}: allowed: an http(s) address"));
                }
                Ok(Self::Remote(Upstream { url: url.trim_end_matches('/').to_owned(), model: server.model, token_env: server.token_env }))
            }
            ("remote", None) => Err("backend is \"remote\" but url is missing; add url = \"https://…/v1\" (an OpenAI-compatible API)".into()),
            (other, _) => Err(format!("backend is {other:?}; allowed: \"local\" (this server's model) or \"remote\" (an OpenAI-compatible API at url)")),
        }
    }
}
