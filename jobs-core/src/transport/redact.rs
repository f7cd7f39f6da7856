//! Keeping passwords out of output.

/// `url` with its password replaced by `**`: `amqp://user:**@host/vhost`.
///
/// Every URL the framework prints goes through this, so passwords never reach logs, errors or
/// `Debug` output.
///
/// ```
/// use jobs_core::transport::redact_url;
///
/// assert_eq!(redact_url("amqp://app:s3cret@mq:5672/%2f"), "amqp://app:**@mq:5672/%2f");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:**@{host}{path}"),
        None => url.to_owned(),
    }
}

/// `text` with the password of every URL in it replaced by `**`: for messages, such as a
/// library's error, that may quote a URL.
///
/// ```
/// use jobs_core::transport::redact_text;
///
/// assert_eq!(redact_text("cannot reach 'amqp://app:s3cret@mq/%2f'"), "cannot reach 'amqp://app:**@mq/%2f'");
/// ```
#[must_use]
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(|c: char| c.is_whitespace() || "'\"`".contains(c)) {
        let word = piece.trim_end_matches(|c: char| c.is_whitespace() || "'\"`".contains(c));
        if word.contains("://") {
            out.push_str(&redact_url(word));
            out.push_str(&piece[word.len()..]);
        } else {
            out.push_str(piece);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url as redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:s3cr@t@127.0.0.1:5672/%2f"),
            "amqp://guest:**@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqps://user:pw@host"), "amqps://user:**@host");
        assert_eq!(redact("amqp://host:5672/%2f"), "amqp://host:5672/%2f");
        assert_eq!(redact("amqp://user@host/"), "amqp://user@host/");
        assert_eq!(redact("not a url"), "not a url");
    }
}
