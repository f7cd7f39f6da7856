//! `POST /files`: stream the `file` field to disk, enqueue its transfer, answer `202`.

use std::io;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::http::StatusCode;
use jobs_core::MessageId;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt as _;

use super::error::UploadError;
use super::file_name::stored_name;
use super::{Accepted, AppState};
use crate::job::transfer_to_oss;
use crate::uploads::TransferFile;

/// The form field that carries the file.
const FILE_FIELD: &str = "file";

/// Stores the form's file, enqueues `transfer_to_oss` for it and answers `202 Accepted`.
pub(super) async fn upload(
    State(app): State<AppState>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Accepted>), UploadError> {
    let mut form = form.map_err(|_| UploadError::NotMultipart)?;
    let mut staged = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(form_error(&app, &err)),
        };
        if field.name() != Some(FILE_FIELD) {
            // Other fields are skipped: reading the next one discards this one's data.
            continue;
        }
        if staged.is_some() {
            return Err(UploadError::SecondFile);
        }
        match stage(&app, field).await {
            Ok(file) => staged = Some(file),
            Err(err) => {
                if matches!(err, UploadError::TooLarge { .. }) {
                    drain(&mut form).await;
                }
                return Err(err);
            }
        }
    }
    let Some(staged) = staged else {
        return Err(UploadError::NoFile);
    };

    let message = TransferFile {
        path: staged.path_str().to_owned(),
        size: staged.size,
        name: staged.client_name.clone(),
        content_type: staged.content_type.clone(),
    };
    let id = transfer_to_oss::with(message)
        .message_id(staged.id.as_str())
        .enqueue(&app.producer)
        .await
        .map_err(UploadError::Enqueue)?;
    let accepted = Accepted {
        id: id.to_string(),
        path: staged.path_str().to_owned(),
        size: staged.size,
    };
    // From here the job owns the file.
    staged.keep();
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// A file being stored: removed when dropped unless kept, so a refused request, an enqueue
/// that failed and a client that went away mid-upload all leave nothing behind.
struct Staged {
    id: MessageId,
    path: PathBuf,
    path_str: String,
    size: u64,
    client_name: String,
    content_type: String,
    kept: bool,
}

impl Staged {
    fn path_str(&self) -> &str {
        &self.path_str
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.kept {
            // `drop` cannot await, and this is the only place that also runs when the
            // request's future is dropped; one unlink on a local disk is short.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes the `file` field to a new file in the upload directory, holding it to the limit.
async fn stage(app: &AppState, mut field: Field<'_>) -> Result<Staged, UploadError> {
    let id = MessageId::generate();
    let path = app
        .upload_dir
        .join(stored_name(id.as_str(), field.file_name()));
    // The message carries the path as text; an upload directory that is not UTF-8 cannot be
    // named in it.
    let path_str = path
        .to_str()
        .ok_or_else(|| {
            UploadError::Store(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the upload directory's path is not UTF-8",
            ))
        })?
        .to_owned();
    let mut file = create_new(&path).await.map_err(UploadError::Store)?;
    let mut staged = Staged {
        id,
        path,
        path_str,
        size: 0,
        client_name: field.file_name().unwrap_or_default().to_owned(),
        content_type: field.content_type().unwrap_or_default().to_owned(),
        kept: false,
    };
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => return Err(form_error(app, &err)),
        };
        staged.size = staged.size.saturating_add(chunk.len() as u64);
        if staged.size > app.max_upload {
            drain_field(&mut field).await;
            return Err(UploadError::TooLarge {
                limit: app.max_upload,
            });
        }
        file.write_all(&chunk).await.map_err(UploadError::Store)?;
    }
    // The job is durable once the broker confirms it; so must the file be, before that.
    file.flush().await.map_err(UploadError::Store)?;
    file.sync_all().await.map_err(UploadError::Store)?;
    Ok(staged)
}

/// A new file at `path`; never one that exists.
async fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
}

fn form_error(app: &AppState, err: &MultipartError) -> UploadError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        UploadError::TooLarge {
            limit: app.max_upload,
        }
    } else {
        UploadError::Malformed(err.body_text())
    }
}

// Reading the rest of a refused body, up to the body limit, before answering: a server that
// closes the connection on unread data makes the kernel reset it, and the client may lose the
// `413` to the reset.

async fn drain_field(field: &mut Field<'_>) {
    while let Ok(Some(_)) = field.chunk().await {}
}

async fn drain(form: &mut Multipart) {
    while let Ok(Some(mut field)) = form.next_field().await {
        drain_field(&mut field).await;
    }
}
