//! `GET /health` (for the Space's load balancer and the chat page) and `GET /models` (the
//! browser model's file, for the worker).

use serde::{Deserialize, Serialize};

/// Whether the server answers now, and if not, why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    Ok {
        model: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        architecture: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantization: Option<String>,
        /// `candle` or `remote`.
        backend: String,
        /// `cpu`, `cuda`, `remote`.
        device: String,
        /// The GPU's name when `device` is `cuda` (`Tesla T4`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<String>,
    },
    Loading {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<LoadProgress>,
    },
    Error {
        message: String,
    },
    /// The model's thread stopped (a bug, said in `message`) and the model is being loaded
    /// again: the page answers in the browser meanwhile.
    Restarting {
        message: String,
    },
    /// Started with `--no-model`: the page answers in the browser.
    Disabled {
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadProgress {
    pub done: u64,
    /// Unknown until the download says how large it is.
    pub total: Option<u64>,
}

impl Health {
    /// The `status` word and the message, as the page tells the visitor.
    pub fn problem(&self) -> Option<(&'static str, &str)> {
        match self {
            Self::Ok { .. } => None,
            Self::Loading { .. } => Some(("loading", "")),
            Self::Restarting { message } => Some(("loading", message)),
            Self::Error { message } => Some(("error", message)),
            Self::Disabled { message } => Some(("disabled", message)),
        }
    }
}

/// `GET /models`: the file the browser worker downloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrowserModelFile {
    pub name: String,
    /// Served by this Space (`/models/<file>`).
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
    /// The file's quantisation (`Q4_K_M`…), which each answer names with `name`.
    #[serde(default)]
    pub quantization: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_tagged_by_status() {
        let loading = Health::Loading {
            progress: Some(LoadProgress {
                done: 1,
                total: Some(4),
            }),
        };
        assert_eq!(
            serde_json::to_string(&loading).unwrap(),
            r#"{"status":"loading","progress":{"done":1,"total":4}}"#
        );
        let error: Health =
            serde_json::from_str(r#"{"status":"error","message":"no file"}"#).unwrap();
        assert_eq!(error.problem(), Some(("error", "no file")));
    }
}
