//! The `x-death` header, RabbitMQ 3.10's record of a message's dead-letterings, kept in the
//! message itself, and the dead-letter cycle detection that reads it.
//!
//! Written as `rabbit_dead_letter:make_msg` and `update_x_death_header` write it in 3.10:
//!
//! * `x-death` is an array of tables, one per (queue, reason), with `count` (long), `exchange`
//!   (the exchange the message had been published or dead-lettered to), `queue`, `reason`
//!   (`rejected`, `expired`, `maxlen`, `delivery_limit`), `routing-keys` (an array holding the
//!   message's routing key; CC and BCC are not emulated) and `time` (a timestamp). An entry
//!   this broker writes has its fields in name order, as RabbitMQ sorts an entry it updates and
//!   as a client decoding the table into a map sees them.
//! * The entry of this death goes first: a new one with `count` 1, or the existing entry of
//!   the same (queue, reason) with `count` + 1 and its other fields as they were (3.10 does not
//!   update `time`, `exchange` or `routing-keys` of an entry it counts again).
//! * With two entries or more, 3.10 first regroups them (`group_by_queue_and_reason`): the
//!   first entry of each (queue, reason) stays, with a missing `count` set to how many there
//!   were, and the fold that does it reverses their order. So only the first entry is surely
//!   the most recent; the rest come reversed at each dead-lettering.
//! * `x-first-death-reason`, `-queue` and `-exchange` are set when the message has no `x-death`
//!   yet. RabbitMQ 3.10 writes no `x-last-death-*` headers (3.13 added them), and neither does
//!   this broker.
//! * An `x-death` that is not an array is replaced by one holding this death only, as 3.10
//!   does (rabbitmq-server#767: clients that turn it into a string). Array entries that are not
//!   tables make 3.10's regrouping crash (`function_clause`); here they are dropped.
//!
//! Cycle detection (`rabbit_dead_letter:detect_cycles`, `is_cycle`) reads the header after
//! this death is recorded: a message dead-lettered for a reason other than `rejected` is not
//! delivered to a queue named in an `x-death` entry when no entry up to and including that one
//! has reason `rejected` (or is not a table: a client put it there). A client that republishes
//! a message with its `x-death` carries its history on; one that strips it starts afresh.

use std::borrow::Cow;
use std::iter;

use super::dead_letter::Reason;
use crate::envelope::{HeaderValue, Headers};

/// The header holding the dead-lettering history.
pub(super) const X_DEATH: &str = "x-death";
/// Header RabbitMQ sets to the reason of a message's first dead-lettering.
pub(super) const FIRST_DEATH_REASON: &str = "x-first-death-reason";
/// Header RabbitMQ sets to the queue a message was first dead-lettered from.
pub(super) const FIRST_DEATH_QUEUE: &str = "x-first-death-queue";
/// Header RabbitMQ sets to the exchange a message was published to before its first death.
pub(super) const FIRST_DEATH_EXCHANGE: &str = "x-first-death-exchange";

/// One dead-lettering, as `x-death` records it.
#[derive(Debug)]
pub(super) struct Death<'a> {
    pub(super) reason: Reason,
    /// The queue the message left.
    pub(super) queue: &'a str,
    /// The exchange the message had been published (or dead-lettered) to.
    pub(super) exchange: &'a str,
    /// The routing key it had been published (or dead-lettered) with.
    pub(super) routing_key: &'a str,
    /// When, in Unix seconds.
    pub(super) time: u64,
}

/// Records `death` in `headers`: `x-death` and, on the first death, `x-first-death-*`.
pub(super) fn record(headers: &mut Headers, death: &Death<'_>) {
    let history = match headers.remove(X_DEATH) {
        None => {
            headers.insert(FIRST_DEATH_REASON, death.reason.as_str());
            headers.insert(FIRST_DEATH_QUEUE, death.queue.to_owned());
            headers.insert(FIRST_DEATH_EXCHANGE, death.exchange.to_owned());
            vec![HeaderValue::Table(entry(death))]
        }
        Some(HeaderValue::Array(entries)) => updated(entries, death),
        Some(_) => vec![HeaderValue::Table(entry(death))],
    };
    headers.insert(X_DEATH, HeaderValue::Array(history));
}

/// Whether delivering a message with `headers` to queue `target` would close a dead-letter
/// cycle with no rejection in it; see the [module docs](self).
pub(super) fn is_cycle(headers: &Headers, target: &str) -> bool {
    let Some(HeaderValue::Array(deaths)) = headers.get(X_DEATH) else {
        return false;
    };
    let from_target = |death: &HeaderValue| match death {
        HeaderValue::Table(t) => t.get_str("queue") == Some(target),
        _ => false,
    };
    let Some(at) = deaths.iter().position(from_target) else {
        return false;
    };
    deaths[..=at].iter().all(|death| match death {
        HeaderValue::Table(t) => t.get_str("reason") != Some(Reason::Rejected.as_str()),
        _ => false,
    })
}

/// A new `x-death` entry for `death`, its fields in name order.
fn entry(death: &Death<'_>) -> Headers {
    Headers::from_distinct(vec![
        (Cow::Borrowed("count"), HeaderValue::Int(1)),
        (Cow::Borrowed("exchange"), death.exchange.into()),
        (Cow::Borrowed("queue"), death.queue.into()),
        (Cow::Borrowed("reason"), death.reason.as_str().into()),
        (
            Cow::Borrowed("routing-keys"),
            HeaderValue::Array(vec![death.routing_key.into()]),
        ),
        (Cow::Borrowed("time"), HeaderValue::Timestamp(death.time)),
    ])
}

/// An existing `x-death` array with `death` recorded: its entry first, the others regrouped.
fn updated(entries: Vec<HeaderValue>, death: &Death<'_>) -> Vec<HeaderValue> {
    let grouped = regroup(entries);
    let mut history = Vec::with_capacity(grouped.len() + 1);
    let mut same = None;
    for table in grouped {
        let matches = table.get_str("queue") == Some(death.queue)
            && table.get_str("reason") == Some(death.reason.as_str());
        if matches && same.is_none() {
            same = Some(table);
        } else {
            history.push(HeaderValue::Table(table));
        }
    }
    let first = same.map_or_else(|| entry(death), counted_again);
    history.insert(0, HeaderValue::Table(first));
    history
}

/// An existing entry with its `count` incremented (set to 1 when it has none, or one that is
/// not a number, on which 3.10 would crash), its fields sorted by name as 3.10 sorts them.
fn counted_again(mut entry: Headers) -> Headers {
    let count = entry
        .get("count")
        .and_then(HeaderValue::as_i64)
        .map_or(1, |count| count.saturating_add(1));
    entry.insert("count", count);
    let mut fields: Vec<_> = entry.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Headers::from_distinct(fields)
}

/// 3.10's `group_by_queue_and_reason` over the table entries of an `x-death` array: one
/// entry or none stays as it is; of more, the first of each (queue, reason) stays, with a
/// missing `count` set to how many there were, in reverse order.
fn regroup(entries: Vec<HeaderValue>) -> Vec<Headers> {
    let tables: Vec<Headers> = entries
        .into_iter()
        .filter_map(|entry| match entry {
            HeaderValue::Table(table) => Some(table),
            _ => None,
        })
        .collect();
    if tables.len() < 2 {
        return tables;
    }
    let key = |table: &Headers| (table.get("queue").cloned(), table.get("reason").cloned());
    let keys: Vec<_> = tables.iter().map(key).collect();
    let mut grouped: Vec<Headers> = tables
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| !keys[..i].contains(&keys[i]))
        .map(|(i, table)| {
            if table.get("count").is_some() {
                return table;
            }
            let duplicates = keys.iter().filter(|&k| *k == keys[i]).count();
            let count = HeaderValue::Int(i64::try_from(duplicates).unwrap_or(i64::MAX));
            Headers::from_distinct(
                iter::once((Cow::Borrowed("count"), count))
                    .chain(table)
                    .collect(),
            )
        })
        .collect();
    grouped.reverse();
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(queue: &'static str, reason: Reason) -> Death<'static> {
        Death {
            reason,
            queue,
            exchange: "ex",
            routing_key: "key",
            time: 1_700_000_000,
        }
    }

    /// The (queue, reason, count) of each `x-death` entry, in order.
    fn history(headers: &Headers) -> Vec<(String, String, i64)> {
        let Some(HeaderValue::Array(deaths)) = headers.get(X_DEATH) else {
            return Vec::new();
        };
        deaths
            .iter()
            .filter_map(|death| match death {
                HeaderValue::Table(t) => Some((
                    t.get_str("queue").unwrap_or_default().to_owned(),
                    t.get_str("reason").unwrap_or_default().to_owned(),
                    t.get("count").and_then(HeaderValue::as_i64).unwrap_or(-1),
                )),
                _ => None,
            })
            .collect()
    }

    fn entry_of(queue: &str, reason: &str, count: Option<i64>) -> HeaderValue {
        let mut table = Headers::from_iter([("queue", queue), ("reason", reason)]);
        if let Some(count) = count {
            table.insert("count", count);
        }
        HeaderValue::Table(table)
    }

    fn with_x_death(entries: Vec<HeaderValue>) -> Headers {
        Headers::from_iter([(X_DEATH, HeaderValue::Array(entries))])
    }

    #[test]
    fn a_first_death_writes_one_entry_and_the_first_death_headers() {
        let mut headers = Headers::new();
        record(&mut headers, &death("q", Reason::Expired));
        let expected = Headers::from_iter([
            ("count", HeaderValue::Int(1)),
            ("exchange", "ex".into()),
            ("queue", "q".into()),
            ("reason", "expired".into()),
            ("routing-keys", HeaderValue::Array(vec!["key".into()])),
            ("time", HeaderValue::Timestamp(1_700_000_000)),
        ]);
        assert_eq!(
            headers.get(X_DEATH),
            Some(&HeaderValue::Array(vec![HeaderValue::Table(expected)]))
        );
        assert_eq!(headers.get_str(FIRST_DEATH_REASON), Some("expired"));
        assert_eq!(headers.get_str(FIRST_DEATH_QUEUE), Some("q"));
        assert_eq!(headers.get_str(FIRST_DEATH_EXCHANGE), Some("ex"));
        assert_eq!(headers.get("x-last-death-reason"), None, "3.10 writes none");
    }

    #[test]
    fn a_death_again_counts_its_entry_and_moves_it_first() {
        let mut headers = Headers::new();
        record(&mut headers, &death("a", Reason::Expired));
        record(&mut headers, &death("b", Reason::Expired));
        record(&mut headers, &death("a", Reason::Expired));
        assert_eq!(
            history(&headers),
            [
                ("a".into(), "expired".into(), 2),
                ("b".into(), "expired".into(), 1)
            ]
        );
        record(&mut headers, &death("a", Reason::Rejected));
        assert_eq!(
            history(&headers)[0],
            ("a".into(), "rejected".into(), 1),
            "one entry per (queue, reason)"
        );
        assert_eq!(headers.get_str(FIRST_DEATH_QUEUE), Some("a"));
    }

    #[test]
    fn the_entries_behind_the_newest_come_reversed_as_in_rabbitmq_3_10() {
        let mut headers = with_x_death(vec![
            entry_of("c", "expired", Some(1)),
            entry_of("b", "expired", Some(1)),
            entry_of("a", "expired", Some(1)),
        ]);
        record(&mut headers, &death("d", Reason::Expired));
        let queues: Vec<String> = history(&headers).into_iter().map(|(q, ..)| q).collect();
        assert_eq!(queues, ["d", "a", "b", "c"]);
        assert_eq!(
            headers.get(FIRST_DEATH_QUEUE),
            None,
            "not a first death: the message had an x-death"
        );
    }

    #[test]
    fn duplicate_entries_are_merged_and_counted() {
        let mut headers = with_x_death(vec![
            entry_of("a", "expired", None),
            entry_of("b", "expired", Some(4)),
            entry_of("a", "expired", None),
        ]);
        record(&mut headers, &death("c", Reason::Rejected));
        assert_eq!(
            history(&headers),
            [
                ("c".into(), "rejected".into(), 1),
                ("b".into(), "expired".into(), 4),
                ("a".into(), "expired".into(), 2),
            ]
        );
    }

    #[test]
    fn a_malformed_x_death_does_not_panic() {
        let mut headers = Headers::from_iter([(X_DEATH, "rewritten by a client")]);
        record(&mut headers, &death("q", Reason::Expired));
        assert_eq!(history(&headers), [("q".into(), "expired".into(), 1)]);
        assert_eq!(
            headers.get(FIRST_DEATH_QUEUE),
            None,
            "3.10 resets the header but sets no first death"
        );

        let mut headers = with_x_death(vec![
            "not a table".into(),
            entry_of("q", "expired", None),
            HeaderValue::Int(7),
        ]);
        record(&mut headers, &death("q", Reason::Expired));
        assert_eq!(
            history(&headers),
            [("q".into(), "expired".into(), 1)],
            "a missing count counts as none"
        );

        let mut odd = Headers::from_iter([("queue", "q"), ("reason", "expired")]);
        odd.insert("count", "many");
        let mut headers = with_x_death(vec![HeaderValue::Table(odd), HeaderValue::Void]);
        record(&mut headers, &death("q", Reason::Expired));
        assert_eq!(history(&headers), [("q".into(), "expired".into(), 1)]);

        let mut headers = with_x_death(vec![entry_of("q", "expired", Some(i64::MAX))]);
        record(&mut headers, &death("q", Reason::Expired));
        assert_eq!(history(&headers)[0].2, i64::MAX, "saturates");
    }

    #[test]
    fn a_cycle_needs_the_target_in_x_death_and_no_rejection_up_to_it() {
        let expired = with_x_death(vec![
            entry_of("b", "expired", Some(1)),
            entry_of("a", "expired", Some(1)),
        ]);
        assert!(is_cycle(&expired, "a"));
        assert!(is_cycle(&expired, "b"));
        assert!(!is_cycle(&expired, "c"));
        let rejected = with_x_death(vec![
            entry_of("b", "expired", Some(1)),
            entry_of("r", "rejected", Some(1)),
            entry_of("a", "expired", Some(1)),
        ]);
        assert!(is_cycle(&rejected, "b"));
        assert!(
            !is_cycle(&rejected, "a"),
            "a rejection in the loop is a deliberate retry loop"
        );
        let foreign = with_x_death(vec![
            "client data".into(),
            entry_of("a", "expired", Some(1)),
        ]);
        assert!(!is_cycle(&foreign, "a"), "not a fully automatic cycle");
        assert!(!is_cycle(&Headers::from_iter([(X_DEATH, "a")]), "a"));
        assert!(!is_cycle(&Headers::new(), "a"));
    }
}
