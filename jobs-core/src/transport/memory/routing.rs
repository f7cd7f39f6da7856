//! Binding rules of the four exchange types, compiled at bind time so a publish only compares.

use super::names::NameMap;
use crate::envelope::{HeaderValue, Headers};
use crate::error::{Error, Result};
use crate::job::ExchangeKind;
use crate::topology::argument;

/// The bindings of an exchange to destinations of one kind (queues, or exchanges), in the
/// shape its type matches on.
#[derive(Debug)]
pub(super) enum Router<T> {
    /// Destinations by exact binding key.
    Direct(NameMap<Vec<T>>),
    /// Binding patterns.
    Topic(Vec<(TopicPattern, T)>),
    /// Every bound destination.
    Fanout(Vec<T>),
    /// Header matches.
    Headers(Vec<(HeaderMatch, T)>),
}

impl<T: Copy> Router<T> {
    /// A router with no bindings, for an exchange of type `kind`.
    pub(super) fn new(kind: ExchangeKind) -> Self {
        match kind {
            ExchangeKind::Direct => Self::Direct(NameMap::default()),
            ExchangeKind::Topic => Self::Topic(Vec::new()),
            ExchangeKind::Fanout => Self::Fanout(Vec::new()),
            ExchangeKind::Headers => Self::Headers(Vec::new()),
        }
    }

    /// Adds a binding of `destination` with `key` and `arguments`.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] for a headers binding with an invalid `x-match`.
    pub(super) fn add(&mut self, destination: T, key: &str, arguments: &Headers) -> Result<()> {
        match self {
            Self::Direct(keys) => keys.entry(key.to_owned()).or_default().push(destination),
            Self::Topic(patterns) => patterns.push((TopicPattern::new(key), destination)),
            Self::Fanout(all) => all.push(destination),
            Self::Headers(matches) => matches.push((HeaderMatch::new(arguments)?, destination)),
        }
        Ok(())
    }

    /// Appends the destinations a message with `routing_key` and `headers` goes to; one bound
    /// twice may appear twice.
    pub(super) fn route(&self, routing_key: &str, headers: &Headers, out: &mut Vec<T>) {
        match self {
            Self::Direct(keys) => {
                if let Some(destinations) = keys.get(routing_key) {
                    out.extend_from_slice(destinations);
                }
            }
            Self::Topic(patterns) => out.extend(
                patterns
                    .iter()
                    .filter(|(pattern, _)| pattern.matches(routing_key))
                    .map(|&(_, destination)| destination),
            ),
            Self::Fanout(all) => out.extend_from_slice(all),
            Self::Headers(matches) => out.extend(
                matches
                    .iter()
                    .filter(|(matcher, _)| matcher.matches(headers))
                    .map(|&(_, destination)| destination),
            ),
        }
    }
}

// ===== impl TopicPattern =====

/// One word of a topic binding key.
#[derive(Debug, PartialEq)]
enum Word {
    /// `#`: zero or more words.
    Hash,
    /// `*`: exactly one word.
    Star,
    /// A word that must be equal.
    Literal(Box<str>),
}

/// A topic binding key split into words.
#[derive(Debug)]
pub(super) struct TopicPattern(Vec<Word>);

/// Cursor value once a routing key has no words left.
const END: usize = usize::MAX;

impl TopicPattern {
    pub(super) fn new(key: &str) -> Self {
        let mut words = Vec::new();
        // As in RabbitMQ, the empty key has no words, and `a..b` has an empty middle word.
        if !key.is_empty() {
            for word in key.split('.') {
                let word = match word {
                    "#" => Word::Hash,
                    "*" => Word::Star,
                    literal => Word::Literal(literal.into()),
                };
                // `#.#` matches what `#` matches; collapsing keeps backtracking linear.
                if !(word == Word::Hash && words.last() == Some(&Word::Hash)) {
                    words.push(word);
                }
            }
        }
        Self(words)
    }

    /// Whether `key` matches, without allocating: wildcard matching with one backtrack point
    /// (the latest `#`), which is exact when `#` is the only variable-length wildcard.
    pub(super) fn matches(&self, key: &str) -> bool {
        let words = &self.0;
        let mut pattern = 0;
        let mut cursor = if key.is_empty() { END } else { 0 };
        // After a `#`: the pattern position after it, and the key position it absorbed up to.
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            if let Some(word) = words.get(pattern) {
                match word {
                    Word::Hash => {
                        backtrack = Some((pattern + 1, cursor));
                        pattern += 1;
                        continue;
                    }
                    Word::Star if cursor != END => {
                        cursor = next_word(key, cursor).1;
                        pattern += 1;
                        continue;
                    }
                    Word::Literal(literal) if cursor != END => {
                        let (word, next) = next_word(key, cursor);
                        if word == &**literal {
                            cursor = next;
                            pattern += 1;
                            continue;
                        }
                    }
                    Word::Star | Word::Literal(_) => {}
                }
            } else if cursor == END {
                return true;
            }
            // Mismatch: let the latest `#` absorb one more word, if any is left.
            match backtrack {
                Some((after, absorbed)) if absorbed != END => {
                    let next = next_word(key, absorbed).1;
                    backtrack = Some((after, next));
                    pattern = after;
                    cursor = next;
                }
                _ => return false,
            }
        }
    }
}

/// The word of `key` starting at byte `at`, and where the next word starts ([`END`] if none).
fn next_word(key: &str, at: usize) -> (&str, usize) {
    match key[at..].find('.') {
        Some(dot) => (&key[at..at + dot], at + dot + 1),
        None => (&key[at..], END),
    }
}

// ===== impl HeaderMatch =====

/// A headers binding: pairs that must all, or any, be present with equal values.
#[derive(Debug)]
pub(super) struct HeaderMatch {
    any: bool,
    pairs: Vec<(String, HeaderValue)>,
}

impl HeaderMatch {
    /// Compiles a headers binding's arguments.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] when `x-match` is not `all`, `any`, `all-with-x` or `any-with-x`.
    pub(super) fn new(arguments: &Headers) -> Result<Self> {
        let (any, with_x) = match arguments.get(argument::MATCH) {
            None => (false, false),
            Some(value) => match value.as_str() {
                Some("all") => (false, false),
                Some("any") => (true, false),
                Some("all-with-x") => (false, true),
                Some("any-with-x") => (true, true),
                _ => {
                    return Err(Error::Topology(format!(
                        "invalid x-match value {value} on a headers binding"
                    )));
                }
            },
        };
        let pairs = arguments
            .iter()
            .filter(|(name, _)| *name != argument::MATCH && (with_x || !name.starts_with("x-")))
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect();
        Ok(Self { any, pairs })
    }

    /// Whether a message with `headers` matches. With no pairs, `all` matches every message and
    /// `any` none, as in RabbitMQ.
    pub(super) fn matches(&self, headers: &Headers) -> bool {
        let pair_matches = |(name, expected): &(String, HeaderValue)| match headers.get(name) {
            // A void binding value asks only for the header's presence.
            Some(actual) => *expected == HeaderValue::Void || actual == expected,
            None => false,
        };
        if self.any {
            self.pairs.iter().any(pair_matches)
        } else {
            self.pairs.iter().all(pair_matches)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(pattern: &str, key: &str) -> bool {
        TopicPattern::new(pattern).matches(key)
    }

    #[test]
    fn topic_star_is_exactly_one_word() {
        assert!(topic("a.*", "a.b"));
        assert!(!topic("a.*", "a"));
        assert!(!topic("a.*", "a.b.c"));
        assert!(topic("*.b.*", "a.b.c"));
        assert!(!topic("*", ""));
        assert!(topic("*", "a"));
        assert!(topic("a.*.c", "a..c"), "an empty word is a word");
    }

    #[test]
    fn topic_hash_is_zero_or_more_words() {
        assert!(topic("a.#", "a"));
        assert!(topic("a.#", "a.b.c"));
        assert!(!topic("a.#", "b.a"));
        assert!(topic("#.b", "b"));
        assert!(topic("#.b", "a.x.b"));
        assert!(!topic("#.b", "b.a"));
        assert!(topic("#", ""));
        assert!(topic("#", "a.b.c"));
        assert!(topic("a.#.c", "a.c"));
        assert!(topic("a.#.c", "a.b.b.c"));
        assert!(!topic("a.#.c", "a.b.b"));
        assert!(topic("#.a.#", "a"));
        assert!(topic("#.#", "x.y"));
        assert!(topic("a.#.*", "a.b"));
        assert!(!topic("a.#.*", "a"));
    }

    #[test]
    fn topic_literals_match_exactly() {
        assert!(topic("a.b", "a.b"));
        assert!(!topic("a.b", "a.bc"));
        assert!(!topic("a.b", "a.b."), "a trailing dot adds an empty word");
        assert!(topic("", ""));
        assert!(!topic("", "a"));
    }

    fn headers(pairs: &[(&'static str, HeaderValue)]) -> Headers {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn headers_all_needs_every_pair_and_ignores_x_arguments() {
        let binding = HeaderMatch::new(&headers(&[
            ("x-match", "all".into()),
            ("format", "pdf".into()),
            ("type", "report".into()),
            ("x-ignored", "anything".into()),
        ]))
        .unwrap();
        assert!(binding.matches(&headers(&[
            ("format", "pdf".into()),
            ("type", "report".into())
        ])));
        assert!(!binding.matches(&headers(&[("format", "pdf".into())])));
        assert!(!binding.matches(&headers(&[
            ("format", "pdf".into()),
            ("type", "log".into())
        ])));
        let default_all =
            HeaderMatch::new(&headers(&[("format", "pdf".into()), ("n", 1i64.into())])).unwrap();
        assert!(
            !default_all.matches(&headers(&[("format", "pdf".into())])),
            "all is the default"
        );
        assert!(default_all.matches(&headers(&[("n", 1i64.into()), ("format", "pdf".into())])));
    }

    #[test]
    fn headers_any_needs_one_pair() {
        let binding = HeaderMatch::new(&headers(&[
            ("x-match", "any".into()),
            ("format", "pdf".into()),
            ("type", "report".into()),
        ]))
        .unwrap();
        assert!(binding.matches(&headers(&[("type", "report".into())])));
        assert!(!binding.matches(&headers(&[("type", "log".into()), ("other", "pdf".into())])));
        assert!(!binding.matches(&Headers::new()));
    }

    #[test]
    fn headers_edge_cases_follow_rabbitmq() {
        let only_x =
            HeaderMatch::new(&headers(&[("x-match", "all".into()), ("x-a", "1".into())])).unwrap();
        assert!(only_x.matches(&Headers::new()), "all over no pairs matches");
        let with_x = HeaderMatch::new(&headers(&[
            ("x-match", "any-with-x".into()),
            ("x-a", "1".into()),
        ]))
        .unwrap();
        assert!(with_x.matches(&headers(&[("x-a", "1".into())])));
        let presence = HeaderMatch::new(&headers(&[("flag", HeaderValue::Void)])).unwrap();
        assert!(presence.matches(&headers(&[("flag", true.into())])));
        assert!(HeaderMatch::new(&headers(&[("x-match", "some".into())])).is_err());
    }
}
