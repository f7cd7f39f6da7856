//! A directory-backed bucket: the stand-in for an object store (OSS, S3).
//!
//! Each object is one file named by its key. A put copies into a hidden temporary file and
//! renames it into place, so a reader never sees a half-written object and a put that fails
//! halfway leaves nothing under the key.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs;

/// The longest key accepted: most file systems' limit on one file name.
const MAX_KEY_LEN: usize = 255;

/// A bucket of objects kept as files in one directory, standing in for an OSS or S3 bucket.
///
/// Handlers share it through the worker's state (`State<Arc<ObjectStorage>>`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use upload_server::ObjectStorage;
///
/// let dir = tempfile::tempdir()?;
/// let source = dir.path().join("report.pdf");
/// std::fs::write(&source, b"%PDF")?;
///
/// let bucket = ObjectStorage::new(dir.path().join("bucket"));
/// assert_eq!(bucket.put("report.pdf", &source).await?, 4);
/// let objects = bucket.list().await?;
/// assert_eq!((objects[0].key.as_str(), objects[0].size), ("report.pdf", 4));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ObjectStorage {
    dir: PathBuf,
}

/// One object in an [`ObjectStorage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why a put or a listing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The file to store is not there: no retry will make it appear.
    #[error("no file to transfer at `{}`", path.display())]
    SourceMissing {
        /// Where the file was expected.
        path: PathBuf,
    },
    /// The key is not a plain object name (empty, too long, a path, or hidden).
    #[error("invalid object key `{key}`: expected a plain file name")]
    InvalidKey {
        /// The key refused.
        key: String,
    },
    /// The store did not answer in time; another try may succeed.
    #[error("object storage timed out")]
    TimedOut,
    /// Reading the file or writing the bucket failed.
    #[error("could not write `{key}` to the bucket")]
    Io {
        /// The object's key, or the bucket directory for a listing.
        key: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Whether trying again later may succeed: a timeout or an I/O error (a full disk, a
    /// network volume gone for a moment), not a missing file or a bad key.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::TimedOut | Self::Io { .. })
    }
}

impl ObjectStorage {
    /// A bucket kept in `dir`, created on the first put.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The bucket's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies the file at `from` into the bucket under `key`, replacing any object there, and
    /// returns its size.
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidKey`] for a key that is not a plain file name,
    /// [`StorageError::SourceMissing`] when `from` is not a file, and [`StorageError::Io`] when
    /// the copy fails.
    pub async fn put(&self, key: &str, from: &Path) -> Result<u64, StorageError> {
        check_key(key)?;
        match fs::metadata(from).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(StorageError::SourceMissing {
                    path: from.to_owned(),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::SourceMissing {
                    path: from.to_owned(),
                });
            }
            Err(source) => return Err(io_error(key, source)),
        }
        fs::create_dir_all(&self.dir)
            .await
            .map_err(|source| io_error(key, source))?;
        // Unique per put: two deliveries of one job (at least once) may copy at the same time.
        let partial = self
            .dir
            .join(format!(".{key}.{}.partial", uuid::Uuid::now_v7()));
        let copied = match fs::copy(from, &partial).await {
            Ok(copied) => copied,
            Err(source) => {
                remove_quietly(&partial).await;
                return Err(io_error(key, source));
            }
        };
        if let Err(source) = fs::rename(&partial, self.dir.join(key)).await {
            remove_quietly(&partial).await;
            return Err(io_error(key, source));
        }
        Ok(copied)
    }

    /// The objects in the bucket, by key; empty before the first put.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] when the directory cannot be read.
    pub async fn list(&self) -> Result<Vec<StoredObject>, StorageError> {
        let bucket = || self.dir.display().to_string();
        let mut entries = match fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error(&bucket(), source)),
        };
        let mut objects = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|source| io_error(&bucket(), source))?
        {
            // Keys are never hidden, so a dot file is a put in progress.
            let Some(key) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if key.starts_with('.') {
                continue;
            }
            let meta = entry
                .metadata()
                .await
                .map_err(|source| io_error(&key, source))?;
            if meta.is_file() {
                objects.push(StoredObject {
                    key,
                    size: meta.len(),
                });
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// A key must name one file in the bucket directory: no separators, no `..`, and not hidden
/// (hidden names are the bucket's temporary files).
fn check_key(key: &str) -> Result<(), StorageError> {
    let plain = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with('.')
        && !key.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
        })
    }
}

fn io_error(key: &str, source: io::Error) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        source,
    }
}

/// Removes a temporary file after a failed put; it may not exist, and a leftover is only a
/// hidden file that listings skip.
async fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_file_names() {
        for good in ["report.pdf", "0190-a_b.tar.gz", "x"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../etc/passwd",
            "a\\b",
            "a\0b",
            &long,
        ] {
            assert!(
                matches!(check_key(bad), Err(StorageError::InvalidKey { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_put_copies_the_file_in_and_replaces_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, b"hello").unwrap();
        let bucket = ObjectStorage::new(dir.path().join("bucket"));
        assert_eq!(bucket.list().await.unwrap(), [], "no bucket yet");

        assert_eq!(bucket.put("greeting.txt", &source).await.unwrap(), 5);
        std::fs::write(&source, b"hi").unwrap();
        assert_eq!(bucket.put("greeting.txt", &source).await.unwrap(), 2);

        let objects = bucket.list().await.unwrap();
        assert_eq!(
            objects,
            [StoredObject {
                key: "greeting.txt".to_owned(),
                size: 2
            }]
        );
        let stored = std::fs::read(bucket.dir().join("greeting.txt")).unwrap();
        assert_eq!(stored, b"hi");
        assert!(source.exists(), "a put copies, it does not move");
    }

    #[tokio::test]
    async fn a_missing_source_is_named_and_not_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = ObjectStorage::new(dir.path().join("bucket"));
        let missing = dir.path().join("gone.bin");
        let err = bucket.put("gone.bin", &missing).await.unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            format!("no file to transfer at `{}`", missing.display())
        );
        let err = bucket.put("dir", dir.path()).await.unwrap_err();
        assert!(matches!(err, StorageError::SourceMissing { .. }), "{err}");
        assert_eq!(bucket.list().await.unwrap(), []);
    }
}
