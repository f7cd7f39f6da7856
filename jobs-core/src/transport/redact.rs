//! Keeping passwords out of output.
//!
//! Passwords are not always percent-encoded as they should be: a `/`, `?`, `#`, space or quote
//! in one must not make the redaction stop early and print the rest. Where a URL's end is
//! ambiguous, more is redacted rather than less.

/// `url` with its password replaced by `**`: `amqp://user:**@host/vhost`.
///
/// Every URL the framework prints goes through this, so passwords never reach logs, errors or
/// `Debug` output.
///
/// ```
/// use jobs_core::transport::redact_url;
///
/// assert_eq!(redact_url("amqp://app:s3cret@mq:5672/%2f"), "amqp://app:**@mq:5672/%2f");
/// assert_eq!(redact_url("amqp://app:s3/cr?t@mq/%2f"), "amqp://app:**@mq/%2f");
/// ```
///
/// A list of URLs (several nodes of a cluster, see [`split_urls`](super::split_urls)) has each
/// password replaced.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let urls = super::split_urls(url);
    if urls.len() > 1 {
        return urls
            .into_iter()
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one(url)
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = userinfo_end(rest) else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:**@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Where the user information of `rest` (a URL after `scheme://`) ends: the last `@` of the
/// authority, which ends at the first `/`, `?` or `#`; when there is none there (a password
/// with one of those characters unescaped), the last `@` of all.
fn userinfo_end(rest: &str) -> Option<usize> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..authority_end].rfind('@').or_else(|| rest.rfind('@'))
}

/// `text` with the password of every URL in it replaced by `**`: for messages, such as a
/// library's error, that may quote a URL.
///
/// A password runs from the `:` after the user name to the last `@` before the line, or the
/// next URL, ends, so spaces and quotes in it are redacted with it.
///
/// ```
/// use jobs_core::transport::redact_text;
///
/// assert_eq!(redact_text("cannot reach 'amqp://app:s3cret@mq/%2f'"), "cannot reach 'amqp://app:**@mq/%2f'");
/// assert_eq!(redact_text("at amqp://app:two words@mq: refused"), "at amqp://app:**@mq: refused");
/// ```
#[must_use]
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let (before, after) = rest.split_at(found + 3);
        out.push_str(before);
        // This URL's reach: up to the next URL or the end of the line.
        let reach = after
            .find("://")
            .map_or(after.len(), |next| {
                // Back to the start of the next URL's scheme.
                after[..next]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                    .map_or(0, |start| start + 1)
            })
            .min(after.find('\n').unwrap_or(after.len()));
        let user_end = after[..reach]
            .find(|c: char| c == ':' || c == '@' || c == '/' || c.is_whitespace())
            .filter(|&end| after[end..].starts_with(':'));
        let password_end =
            user_end.and_then(|user_end| after[user_end..reach].rfind('@').map(|at| user_end + at));
        match (user_end, password_end) {
            (Some(user_end), Some(at)) => {
                out.push_str(&after[..user_end]);
                out.push_str(":**");
                rest = &after[at..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_text, redact_url as redact};

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

    #[test]
    fn every_node_of_a_list_has_its_password_hidden() {
        assert_eq!(
            redact("amqp://a:one@n1/%2f,amqp://b:two@n2/%2f"),
            "amqp://a:**@n1/%2f,amqp://b:**@n2/%2f"
        );
    }

    #[test]
    fn unescaped_slashes_question_marks_and_hashes_stay_hidden() {
        for password in ["pa/ss", "pa?ss", "pa#ss", "a/b?c#d@e"] {
            let url = format!("amqp://user:{password}@host:5672/%2f");
            let shown = redact(&url);
            assert_eq!(shown, "amqp://user:**@host:5672/%2f", "{password}");
        }
        // A vhost with an `@` and no password: nothing to hide.
        assert_eq!(redact("amqp://host/v@x"), "amqp://host/v@x");
    }

    #[test]
    fn text_hides_passwords_with_spaces_and_quotes() {
        for password in ["two words", "it's", "say \"hi\"", "a`b", "p/q?r", "s3cr@t"] {
            let text = format!("could not connect to 'amqp://app:{password}@mq:5672/%2f': refused");
            let shown = redact_text(&text);
            assert_eq!(
                shown, "could not connect to 'amqp://app:**@mq:5672/%2f': refused",
                "{password}"
            );
        }
    }

    #[test]
    fn text_redacts_every_url_and_leaves_the_rest() {
        assert_eq!(
            redact_text("a 'amqp://u:p@h:1/%2f' and amqps://x:y@z"),
            "a 'amqp://u:**@h:1/%2f' and amqps://x:**@z"
        );
        assert_eq!(redact_text("amqp://h/ no"), "amqp://h/ no");
        assert_eq!(
            redact_text("http://host:8080/path and more"),
            "http://host:8080/path and more"
        );
        assert_eq!(
            redact_text("first amqp://a:b@h\nsecond amqp://c:d@i"),
            "first amqp://a:**@h\nsecond amqp://c:**@i"
        );
    }
}
