//! The demo's HTTP client: it posts to its own server, as a browser or curl would.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};

/// An answer: its status and its body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

/// A client whose every request is bounded in time.
pub(crate) fn new() -> anyhow::Result<Client> {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("could not build the HTTP client")
}

/// Posts `content` as the form's `file` field, named `name`, to `{base}/files`.
pub(crate) async fn post_file(
    client: &Client,
    base: &str,
    name: &str,
    content_type: &str,
    content: Vec<u8>,
) -> anyhow::Result<Answer> {
    let part = Part::bytes(content)
        .file_name(name.to_owned())
        .mime_str(content_type)
        .with_context(|| format!("`{content_type}` is not a media type"))?;
    let request = client
        .post(format!("{base}/files"))
        .multipart(Form::new().part("file", part));
    answer(request).await
}

/// Posts `body` as it is, with the content type `content_type`, to `{base}/files`.
pub(crate) async fn post_raw(
    client: &Client,
    base: &str,
    content_type: &str,
    body: &'static str,
) -> anyhow::Result<Answer> {
    let request = client
        .post(format!("{base}/files"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let response = request
        .send()
        .await
        .context("the upload server did not answer")?;
    let status = response.status();
    let body = response
        .text()
        .await
        .context("the upload server's answer was cut short")?;
    Ok(Answer { status, body })
}
