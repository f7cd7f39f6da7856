//! Routing keys, binding keys and AMQP topic matching.

/// AMQP's limit on routing keys and names (a short string).
pub(crate) const MAX_LEN: usize = 255;

/// The exchange types, as the attribute names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Direct,
    Topic,
    Fanout,
    Headers,
}

impl Kind {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "direct" => Some(Self::Direct),
            "topic" => Some(Self::Topic),
            "fanout" => Some(Self::Fanout),
            "headers" => Some(Self::Headers),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Topic => "topic",
            Self::Fanout => "fanout",
            Self::Headers => "headers",
        }
    }

    /// Whether the exchange routes on the routing key at all.
    pub(crate) fn routes_on_key(self) -> bool {
        matches!(self, Self::Direct | Self::Topic)
    }
}

/// What is wrong with a non-empty routing key, the exact key a producer publishes with.
pub(crate) fn routing_key_problem(key: &str) -> Option<String> {
    shape_problem("routing key", key).or_else(|| {
        let wildcard = key.chars().find(|c| matches!(c, '*' | '#'))?;
        Some(format!(
            "routing key `{key}` contains the wildcard `{wildcard}`: a producer publishes with an exact \
             key; put patterns in `binding`, on a `topic` exchange"
        ))
    })
}

/// What is wrong with a binding key on a direct or topic exchange, apart from whether it
/// matches the job's routing key.
pub(crate) fn binding_problem(binding: &str, kind: Kind) -> Option<String> {
    if binding.is_empty() {
        return Some(
            "empty binding: on a `direct` or `topic` exchange the queue would only get messages \
             published with an empty routing key"
                .to_owned(),
        );
    }
    if let Some(problem) = shape_problem("binding", binding) {
        return Some(problem);
    }
    let has_wildcard = binding.contains(['*', '#']);
    match kind {
        Kind::Topic => binding
            .split('.')
            .find(|word| word.len() > 1 && word.contains(['*', '#']))
            .map(|word| {
                format!(
                    "binding `{binding}` has a wildcard inside the word `{word}`: `*` and `#` only match \
                     as whole words between dots, e.g. `uploads.*`"
                )
            }),
        Kind::Direct if has_wildcard => Some(format!(
            "binding `{binding}`: a `direct` exchange matches keys exactly; `*` and `#` only work on a \
             `topic` exchange"
        )),
        _ => None,
    }
}

/// Length, whitespace and empty words: what every routing or binding key must get right.
fn shape_problem(what: &str, key: &str) -> Option<String> {
    if key.len() > MAX_LEN {
        Some(format!("{what} `{key}` is longer than {MAX_LEN} bytes"))
    } else if key.chars().any(char::is_whitespace) {
        Some(format!("{what} `{key}` contains whitespace"))
    } else if key.split('.').any(str::is_empty) {
        Some(format!("{what} `{key}` has an empty segment"))
    } else {
        None
    }
}

/// Whether a topic exchange routes `key` through a binding with `pattern`: `*` matches exactly
/// one word, `#` zero or more.
pub(crate) fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    words_match(&pattern, &key)
}

fn words_match(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => {
            (0..=key.len()).any(|skip| key.get(skip..).is_some_and(|tail| words_match(rest, tail)))
        }
        Some((&"*", rest)) => key
            .split_first()
            .is_some_and(|(_, tail)| words_match(rest, tail)),
        Some((word, rest)) => key
            .split_first()
            .is_some_and(|(first, tail)| first == word && words_match(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(topic_matches("a.*", "a.b"));
        assert!(topic_matches("*.b", "a.b"));
        assert!(topic_matches("*", "a"));
        assert!(!topic_matches("a.*", "a"));
        assert!(!topic_matches("a.*", "a.b.c"));
        assert!(!topic_matches("*.*", "a"));
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert!(topic_matches("#", "a"));
        assert!(topic_matches("#", "a.b.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(topic_matches("a.#.c", "a.b.b.c"));
        assert!(topic_matches("#.#", "a"));
        assert!(!topic_matches("a.#", "b.a"));
        assert!(!topic_matches("a.#.c", "a.b.d"));
    }

    #[test]
    fn words_match_exactly() {
        assert!(topic_matches("a.b", "a.b"));
        assert!(!topic_matches("a.b", "a.bc"));
        assert!(!topic_matches("a", "a.b"));
        assert!(topic_matches("*.#.*", "a.b"));
        assert!(!topic_matches("*.#.*", "a"));
    }

    #[test]
    fn routing_keys_are_exact_dotted_words() {
        assert_eq!(routing_key_problem("uploads.oss"), None);
        assert_eq!(routing_key_problem("a-b_c:d"), None);
        assert_eq!(
            routing_key_problem("a..b").as_deref(),
            Some("routing key `a..b` has an empty segment")
        );
        assert!(routing_key_problem(".a").is_some());
        assert!(routing_key_problem("a.").is_some());
        assert!(routing_key_problem("a b").unwrap().contains("whitespace"));
        assert!(routing_key_problem("a.*").unwrap().contains("wildcard `*`"));
        assert!(routing_key_problem("#").unwrap().contains("wildcard `#`"));
        assert!(
            routing_key_problem(&"a".repeat(256))
                .unwrap()
                .contains("255 bytes")
        );
    }

    #[test]
    fn wildcards_only_bind_on_topic_exchanges() {
        assert_eq!(binding_problem("a.*", Kind::Topic), None);
        assert_eq!(binding_problem("#", Kind::Topic), None);
        assert!(
            binding_problem("a.*", Kind::Direct)
                .unwrap()
                .contains("`direct` exchange matches keys exactly")
        );
        assert!(
            binding_problem("a.b*", Kind::Topic)
                .unwrap()
                .contains("inside the word `b*`")
        );
        assert!(
            binding_problem("a..*", Kind::Topic)
                .unwrap()
                .contains("empty segment")
        );
        assert!(
            binding_problem("", Kind::Topic)
                .unwrap()
                .contains("empty binding")
        );
    }
}
