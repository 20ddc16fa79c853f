//! A team's checkpoint (or adapter) on the Hub, fetched at the revision space.toml pins and
//! converted once: the GGUF is kept in the cache under (repo, revision, base, quantisation),
//! so a later start — the Space's, after `vitrina --prefetch` built it into the image — finds
//! it without asking the Hub anything. Weights are verified by the sha256 the Hub keeps for
//! LFS files; the small JSON files are pinned by the commit they are read at. The downloaded
//! shards are removed once converted: the image keeps the GGUF, not 15 GB of bf16 as well.

use std::path::{Path, PathBuf};

use super::checkpoint::{ADAPTER_WEIGHTS, MODEL_WEIGHTS};
use super::{Conversion, Quantization, convert};
use crate::cache::{
    CachedFile, ModelCache, Progress, RepoFile, Source, hub_folder, hub_listing, repo_slug,
};

/// The tokenizer's files: a checkpoint holds them, and so may an adapter trained with a chat
/// template of its own.
const TOKENIZER_FILES: [&str; 3] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
];

#[derive(Clone, Debug, PartialEq)]
pub struct HubCheckpoint {
    pub repo: String,
    pub revision: String,
    /// The base model (repo, revision) of an adapter: space.toml's `[model] base`, else the
    /// adapter's own `base_model_name_or_path` at `main`.
    pub base: Option<(String, String)>,
    pub quantization: Quantization,
    pub chat_template: Option<String>,
}

impl HubCheckpoint {
    /// The converted file's name in the cache: everything that changes its bytes.
    pub fn file_name(&self) -> String {
        let base = self
            .base
            .as_ref()
            .map(|(repo, revision)| format!("+{}@{revision}", repo_slug(repo)))
            .unwrap_or_default();
        format!(
            "converted/{}@{}{base}-{}.gguf",
            repo_slug(&self.repo),
            self.revision,
            self.quantization.name()
        )
    }

    /// The converted GGUF, made first if the cache has none. `progress` follows the
    /// downloads (bytes), then the conversion (tensors); each tensor is also printed.
    pub fn get(&self, cache: &ModelCache, progress: Progress) -> Result<PathBuf, String> {
        let out = cache.dir().join(self.file_name());
        if out.is_file() {
            return Ok(out);
        }
        let (commit, files) = hub_listing(&self.repo, &self.revision)
            .map_err(|error| format!("cannot list {}@{}: {error}", self.repo, self.revision))?;
        let has = |name: &str| files.iter().any(|file| file.name == name);
        let folder = fetch_folder(
            cache,
            &self.repo,
            &commit,
            &files,
            has("adapter_config.json"),
            progress,
        )?;
        let (model, adapter) = if has("adapter_config.json") {
            let (base_repo, base_revision) = match &self.base {
                Some(base) => base.clone(),
                None => (adapter_base(&folder)?, "main".to_owned()),
            };
            let (base_commit, base_files) = hub_listing(&base_repo, &base_revision).map_err(|error| {
                format!("cannot list the adapter's base model {base_repo}@{base_revision} ({error}); set `[model] base = {{ repo = \"…\", revision = \"…\" }}` in space.toml to the model it was trained on")
            })?;
            let base = fetch_folder(
                cache,
                &base_repo,
                &base_commit,
                &base_files,
                false,
                progress,
            )?;
            (base, Some(folder))
        } else {
            (folder, None)
        };
        let tokenizer = adapter
            .as_deref()
            .filter(|dir| dir.join("tokenizer.json").is_file());
        let name = self
            .repo
            .rsplit('/')
            .next()
            .unwrap_or(&self.repo)
            .to_owned();
        let report = convert(
            &Conversion {
                model: &model,
                adapter: adapter.as_deref(),
                tokenizer,
                quantization: self.quantization,
                chat_template: self.chat_template.as_deref(),
                name: &name,
            },
            &out,
            &mut |done| {
                eprintln!(
                    "vitrina: converting {}: {}/{} {} → {:?}",
                    self.repo, done.index, done.total, done.name, done.dtype
                );
                progress(done.index as u64, Some(done.total as u64));
            },
        )
        .map_err(|error| error.to_string())?;
        eprintln!(
            "vitrina: {} converted to {} ({} tensors, {:.1} MB) in {:.1} s",
            self.repo,
            out.display(),
            report.tensors,
            report.bytes as f64 / 1e6,
            report.seconds
        );
        for dir in [Some(model), adapter].into_iter().flatten() {
            remove_weights(&dir);
        }
        Ok(out)
    }
}

/// The checkpoint's files at `commit`, into `hub/<repo>/<commit>/` in the cache.
fn fetch_folder(
    cache: &ModelCache,
    repo: &str,
    commit: &str,
    files: &[RepoFile],
    adapter: bool,
    progress: Progress,
) -> Result<PathBuf, String> {
    let folder = hub_folder(repo, commit);
    let find = |name: &str| files.iter().find(|file| file.name == name);
    let fetch = |file: &RepoFile, progress: Progress| -> Result<PathBuf, String> {
        let source = Source::Hub {
            repo: repo.to_owned(),
            file: file.name.clone(),
            revision: commit.to_owned(),
        };
        let file_name = format!("{folder}/{}", file.name);
        match &file.sha256 {
            Some(sha256) => cache.get(
                &CachedFile {
                    file_name,
                    sha256: sha256.clone(),
                    sources: vec![source],
                },
                progress,
            ),
            None => cache.get_at_commit(&file_name, &source),
        }
        .map_err(|error| format!("{repo}@{commit}: {error}"))
    };
    let (config, extra, weights): (&str, &[&str], &str) = if adapter {
        ("adapter_config.json", &[], ADAPTER_WEIGHTS)
    } else {
        ("config.json", &["generation_config.json"], MODEL_WEIGHTS)
    };
    let config_file = find(config).ok_or_else(|| {
        format!(
            "{repo}@{commit} has no {config}: is it a Hugging Face checkpoint (or a PEFT adapter)? For a GGUF repository give `file` too"
        )
    })?;
    fetch(config_file, progress)?;
    for name in extra.iter().chain(&TOKENIZER_FILES) {
        if let Some(file) = find(name) {
            fetch(file, progress)?;
        }
    }
    let index_name = format!("{weights}.index.json");
    let shards: Vec<String> = match find(&index_name) {
        Some(index) => {
            let path = fetch(index, progress)?;
            super::checkpoint::listed_shards(&path).map_err(|error| error.to_string())?
        }
        None => vec![weights.to_owned()],
    };
    for shard in &shards {
        let file = find(shard).ok_or_else(|| {
            format!("{repo}@{commit} has no {shard}, which {index_name} lists: upload every shard")
        })?;
        fetch(file, progress)?;
    }
    Ok(cache.dir().join(folder))
}

/// The base model an adapter names.
fn adapter_base(folder: &Path) -> Result<String, String> {
    let path = folder.join("adapter_config.json");
    let config = super::read_json(&path).map_err(|error| error.to_string())?;
    config["base_model_name_or_path"]
        .as_str()
        .filter(|name| name.contains('/') && !name.starts_with('/') && !name.starts_with('.'))
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "{} names no Hub model as its base (`base_model_name_or_path` is {}); set `[model] base = {{ repo = \"…\", revision = \"…\" }}` in space.toml",
                path.display(),
                config["base_model_name_or_path"]
            )
        })
}

/// The converted weights are in the GGUF: the shards need not take the disk (or the image).
fn remove_weights(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .path()
                .extension()
                .is_some_and(|ext| ext == "safetensors")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
