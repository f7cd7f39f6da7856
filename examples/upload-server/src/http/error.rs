//! Why an upload was refused, and the HTTP answer for each reason.

use std::error::Error as _;
use std::io;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why `POST /files` did not accept an upload. Each reason answers with its own status (see
/// [`UploadError::status`]) and a line of text: the error and its causes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The body is not `multipart/form-data` with a boundary.
    #[error("expected a multipart/form-data body with a `file` field")]
    NotMultipart,
    /// The form could not be read.
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    /// The form has no `file` field.
    #[error("the form has no `file` field")]
    NoFile,
    /// The form has more than one `file` field.
    #[error("the form has more than one `file` field: send one file per request")]
    SecondFile,
    /// The file, or the form, is over the limit.
    #[error("the file is over the upload limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The server could not store the file.
    #[error("could not store the upload")]
    Store(#[source] io::Error),
    /// The broker did not take the transfer job.
    #[error("could not enqueue the transfer")]
    Enqueue(#[source] jobs_core::Error),
}

impl UploadError {
    /// The answer's status: `400` for a request to fix, `413` for one too large, `500` when
    /// the server cannot store it, `503` when the broker does not take the job.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotMultipart | Self::Malformed(_) | Self::NoFile | Self::SecondFile => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Enqueue(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        // Displays don't repeat their sources, so the answer walks the chain.
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text.push('\n');
        (self.status(), text).into_response()
    }
}
