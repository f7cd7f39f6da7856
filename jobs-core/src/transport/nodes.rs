//! Several nodes of one cluster in one setting: broker URLs separated by commas.
//!
//! A cluster's nodes each take connections, and a client that knows them all does not need a
//! load balancer in front of them: it connects to one and, when that node is lost, to the
//! next. The list is split only at a comma that starts another `amqp://` or `amqps://` URL, so
//! a comma inside a password (which should be percent-encoded, and often is not) stays in it.

/// The URLs of `list`: `"amqp://a,amqp://b"` is two, `"amqp://u:p,w@h"` one.
///
/// ```
/// use jobs_core::transport::split_urls;
///
/// assert_eq!(
///     split_urls("amqp://guest:guest@n1:5672/%2f, amqps://guest:guest@n2:5671/%2f"),
///     ["amqp://guest:guest@n1:5672/%2f", "amqps://guest:guest@n2:5671/%2f"]
/// );
/// assert_eq!(split_urls("amqp://app:pa,ss@n1/%2f"), ["amqp://app:pa,ss@n1/%2f"]);
/// ```
#[must_use]
pub fn split_urls(list: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut start = 0;
    for (comma, _) in list.match_indices(',') {
        let next = list[comma + 1..].trim_start();
        if comma >= start && (next.starts_with("amqp://") || next.starts_with("amqps://")) {
            urls.push(list[start..comma].trim());
            start = list.len() - next.len();
        }
    }
    urls.push(list[start..].trim());
    urls.retain(|url| !url.is_empty());
    urls
}

/// Where a transport starts in a list of `count` nodes: a different node for each process,
/// so that the replicas of a worker spread over the cluster rather than all landing on the
/// first node.
#[cfg_attr(
    not(feature = "amqp"),
    allow(dead_code, reason = "only the AMQP transport has nodes")
)]
pub(crate) fn first_node(count: usize) -> usize {
    use std::hash::{BuildHasher as _, Hasher as _};
    if count <= 1 {
        return 0;
    }
    // The standard library seeds each `RandomState` at random: a random number without a
    // dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    usize::try_from(random % u64::try_from(count).unwrap_or(1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_commas_that_start_a_url_only() {
        assert_eq!(split_urls("amqp://a/%2f"), ["amqp://a/%2f"]);
        assert_eq!(
            split_urls("amqp://a/%2f,amqp://b/%2f,amqps://c/%2f"),
            ["amqp://a/%2f", "amqp://b/%2f", "amqps://c/%2f"]
        );
        assert_eq!(
            split_urls("amqp://u:p,amqp@a/%2f"),
            ["amqp://u:p,amqp@a/%2f"],
            "not followed by ://"
        );
        assert_eq!(split_urls("amqp://a/%2f,"), ["amqp://a/%2f,"]);
        assert!(split_urls("").is_empty());
    }

    #[test]
    fn the_first_node_is_in_range_and_varies() {
        assert_eq!(first_node(0), 0);
        assert_eq!(first_node(1), 0);
        let seen: std::collections::BTreeSet<usize> = (0..200).map(|_| first_node(3)).collect();
        assert!(seen.iter().all(|&n| n < 3));
        assert_eq!(seen.len(), 3, "200 draws reach every node");
    }
}
