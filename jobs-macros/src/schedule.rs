//! Schedules of periodic jobs: a cron expression (`"0 */5 * * * *"`) read in an IANA time zone
//! (`"Europe/Paris"`), or a fixed period (`"5m"`).
//!
//! Expressions and zones are checked with the crates `jobs-core` reads them with at run time
//! (`cron` and `chrono-tz`), so what compiles is what runs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr as _;

use crate::args::edit_distance;
use crate::duration;

/// The fields of a cron expression, as the errors spell them.
pub(crate) const CRON_FIELDS: &str = "`sec min hour day-of-month month day-of-week [year]`";

/// The shorthands the `cron` crate reads.
const SHORTHANDS: [&str; 5] = ["@yearly", "@monthly", "@weekly", "@daily", "@hourly"];

/// A checked schedule.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ScheduleSpec {
    pub(crate) when: When,
    /// The IANA zone a cron expression is read in; `UTC` for a period.
    pub(crate) timezone: String,
    pub(crate) skip_missed: bool,
}

/// When a periodic job runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum When {
    /// A cron expression, as written.
    Cron(String),
    /// A period, in whole seconds (at least one).
    Every(u64),
}

/// Checks a cron expression as `cron::Schedule::from_str` reads it at run time.
pub(crate) fn parse_cron(text: &str) -> Result<(), String> {
    match cron_error(text) {
        None => Ok(()),
        Some(reason) => Err(cron_message(text, &reason)),
    }
}

/// The `cron` crate's error for `text`, `None` when it parses. A panic in the crate, which no
/// input should cause, is an error too: a proc macro must not panic.
fn cron_error(text: &str) -> Option<String> {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        cron::Schedule::from_str(text).map_err(|err| err.to_string())
    }));
    match parsed {
        Ok(Ok(_)) => None,
        Ok(Err(err)) => Some(err),
        Err(_) => Some(String::new()),
    }
}

/// Why `text` is not a cron expression, from the crate's `reason` and the fields written.
fn cron_message(text: &str, reason: &str) -> String {
    // One line, single spaces: the crate reads any run of whitespace as one separator, and its
    // error then points at a column of that line.
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = words.join(" ");
    let expected = format!("expected {CRON_FIELDS}, e.g. `0 */5 * * * *`");
    let Some(first) = words.first() else {
        return format!("empty `schedule`: {expected}");
    };
    if *first == "@every" {
        return format!(
            "invalid cron expression `{line}`: `@every` is not a cron shorthand; for a fixed period write \
             `every = \"{}\"` instead of `schedule`",
            words
                .get(1)
                .copied()
                .filter(|period| parse_period(period).is_ok())
                .unwrap_or("5m")
        );
    }
    if first.starts_with('@') {
        return if SHORTHANDS.contains(first) {
            format!(
                "invalid cron expression `{line}`: a shorthand such as `{first}` stands alone; {expected}"
            )
        } else {
            format!(
                "invalid cron expression `{line}`: unknown shorthand `{first}`; expected `@yearly`, \
                 `@monthly`, `@weekly`, `@daily`, `@hourly` or {CRON_FIELDS}"
            )
        };
    }
    // The crate's reason for the expression on one line, where its column is meaningful.
    let (reason, column) = if line == text {
        split_reason(&line, reason)
    } else {
        match cron_error(&line) {
            Some(reason) => split_reason(&line, &reason),
            None => (reason.trim().to_owned(), None),
        }
    };
    let count = words.len();
    if !(6..=7).contains(&count) {
        let fields = if count == 1 { "field" } else { "fields" };
        let mut message = format!("invalid cron expression `{line}`: {count} {fields}, not 6 or 7");
        if !reason.is_empty() {
            message.push_str(&format!(" ({reason})"));
        }
        if count == 5 {
            let seconds = format!("0 {line}");
            message.push_str(&format!("; the first field is seconds: {CRON_FIELDS}"));
            if cron_error(&seconds).is_none() {
                message.push_str(&format!(", so did you mean `{seconds}`?"));
            }
        } else {
            message.push_str(&format!("; {expected}"));
        }
        return message;
    }
    let reason = if reason.is_empty() {
        // The crate gave no reason: name the word it stopped at.
        let word = column
            .and_then(|at| line.get(at..))
            .and_then(|rest| rest.split(' ').next())
            .filter(|word| !word.is_empty());
        match word {
            Some(word) => format!("cannot read `{word}`"),
            None => "cannot read it".to_owned(),
        }
    } else {
        reason
    };
    format!("invalid cron expression `{line}`: {reason}; {expected}")
}

/// Splits the `cron` crate's error for the one-line `line` (the expression, a line with `^`
/// under where it stopped, then the reason) into the reason and the byte column of the `^`.
fn split_reason(line: &str, error: &str) -> (String, Option<usize>) {
    let Some(rest) = error
        .strip_prefix(line)
        .and_then(|rest| rest.strip_prefix('\n'))
    else {
        return (error.trim().to_owned(), None);
    };
    let (caret, reason) = rest.split_once('\n').unwrap_or((rest, ""));
    let column = caret.find('^').filter(|at| {
        caret
            .get(..*at)
            .is_some_and(|spaces| spaces.trim().is_empty())
    });
    let reason: Vec<&str> = reason
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    (reason.join("; "), column)
}

/// Checks an IANA time zone name as `chrono-tz` reads it at run time.
pub(crate) fn parse_timezone(text: &str) -> Result<(), String> {
    if text.parse::<chrono_tz::Tz>().is_ok() {
        return Ok(());
    }
    let hint =
        zone_suggestion(text).map_or_else(String::new, |zone| format!(" (did you mean `{zone}`?)"));
    Err(format!(
        "unknown time zone `{text}`{hint}; expected an IANA time zone name such as `UTC`, \
         `Europe/Paris` or `America/New_York`"
    ))
}

/// The zone the user most likely meant: the same name in another case or with spaces, the
/// only zone of that city, or a close spelling.
fn zone_suggestion(text: &str) -> Option<&'static str> {
    let normalize = |name: &str| name.trim().to_ascii_lowercase().replace(' ', "_");
    let written = normalize(text);
    // No zone name is this long; and the distances below would take a while.
    if written.is_empty() || written.len() > 64 {
        return None;
    }
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
    if let Some(name) = names().find(|name| normalize(name) == written) {
        return Some(name);
    }
    let mut cities = names().filter(|name| {
        name.rsplit_once('/')
            .is_some_and(|(_, city)| normalize(city) == written)
    });
    if let (Some(name), None) = (cities.next(), cities.next()) {
        return Some(name);
    }
    names()
        .map(|name| (edit_distance(&written, &normalize(name)), name))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| name)
}

/// A period: whole seconds, at least one.
pub(crate) fn parse_period(text: &str) -> Result<u64, String> {
    let ms = duration::parse(text)?;
    if ms == 0 {
        return Err(format!(
            "`every = \"{text}\"`: a period must be longer than zero, at least `1s`"
        ));
    }
    if !ms.is_multiple_of(1000) {
        return Err(format!(
            "`every = \"{text}\"`: a period is a whole number of seconds, e.g. `1s`, `90s` or `1m30s`"
        ));
    }
    Ok(ms / 1000)
}

/// `fire-once` (the default) or `skip`: whether missed slots are skipped.
pub(crate) fn parse_missed(text: &str) -> Result<bool, String> {
    match text {
        "fire-once" => Ok(false),
        "skip" => Ok(true),
        other => {
            let normalized = other.trim().to_ascii_lowercase().replace(['_', ' '], "-");
            let hint = ["fire-once", "skip"]
                .into_iter()
                .find(|value| *value == normalized)
                .map_or_else(String::new, |value| format!(" (did you mean `{value}`?)"));
            Err(format!(
                "unknown `missed` value `{other}`{hint}; expected `fire-once` (run the latest missed slot \
                 once) or `skip`"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &str =
        "expected `sec min hour day-of-month month day-of-week [year]`, e.g. `0 */5 * * * *`";

    #[test]
    fn reads_what_the_cron_crate_reads() {
        for ok in [
            "0 */5 * * * *",
            "0 0 9 * * Mon-Fri",
            "0 0 9 ? * Mon-Fri",
            "0 30 8 1 Jan-Jun * 2030",
            "  0 0 0\t* *\n*  ",
            "@daily",
            "@hourly",
        ] {
            assert_eq!(parse_cron(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn hints_that_the_first_field_is_seconds() {
        assert_eq!(
            parse_cron("*/5 * * * *").unwrap_err(),
            "invalid cron expression `*/5 * * * *`: 5 fields, not 6 or 7; the first field is seconds: \
             `sec min hour day-of-month month day-of-week [year]`, so did you mean `0 */5 * * * *`?"
        );
        // Minutes past 59 as seconds: no suggestion that would not parse either.
        assert_eq!(
            parse_cron("0 0 * * 8").unwrap_err(),
            "invalid cron expression `0 0 * * 8`: 5 fields, not 6 or 7; the first field is seconds: \
             `sec min hour day-of-month month day-of-week [year]`"
        );
    }

    #[test]
    fn gives_the_cron_crates_reason() {
        assert_eq!(
            parse_cron("0 0 25 * * *").unwrap_err(),
            format!(
                "invalid cron expression `0 0 25 * * *`: Hours must be less than 23. ('25' specified.); {EXPECTED}"
            )
        );
        assert_eq!(
            parse_cron("*/0 * * * * *").unwrap_err(),
            format!(
                "invalid cron expression `*/0 * * * * *`: range step cannot be zero; {EXPECTED}"
            )
        );
        assert_eq!(
            parse_cron("0 0 0 * * Fri-Mon").unwrap_err(),
            format!(
                "invalid cron expression `0 0 0 * * Fri-Mon`: Invalid named range for Days of Week: Fri-Mon; \
                 {EXPECTED}"
            )
        );
        // No reason from the crate: the word it stopped at.
        assert_eq!(
            parse_cron("99999999999999999999 * * * * *").unwrap_err(),
            format!(
                "invalid cron expression `99999999999999999999 * * * * *`: cannot read `99999999999999999999`; \
                 {EXPECTED}"
            )
        );
        assert_eq!(
            parse_cron("0 0 0 1 1 1 1970-2100/0").unwrap_err(),
            format!(
                "invalid cron expression `0 0 0 1 1 1 1970-2100/0`: cannot read `1970-2100/0`; {EXPECTED}"
            )
        );
        // Over several lines, reported on one.
        assert_eq!(
            parse_cron("0 0 25\n* * *").unwrap_err(),
            format!(
                "invalid cron expression `0 0 25 * * *`: Hours must be less than 23. ('25' specified.); {EXPECTED}"
            )
        );
    }

    #[test]
    fn rejects_other_shapes() {
        assert_eq!(
            parse_cron("").unwrap_err(),
            format!("empty `schedule`: {EXPECTED}")
        );
        assert_eq!(
            parse_cron(" \t").unwrap_err(),
            format!("empty `schedule`: {EXPECTED}")
        );
        assert_eq!(
            parse_cron("* * * * * * * *").unwrap_err(),
            format!("invalid cron expression `* * * * * * * *`: 8 fields, not 6 or 7; {EXPECTED}")
        );
        assert_eq!(
            parse_cron("every minute").unwrap_err(),
            format!(
                "invalid cron expression `every minute`: 2 fields, not 6 or 7 (The 'Seconds' field does not \
                 support using names. 'every' specified.); {EXPECTED}"
            )
        );
        assert_eq!(
            parse_cron("hourly").unwrap_err(),
            format!(
                "invalid cron expression `hourly`: 1 field, not 6 or 7 (The 'Seconds' field does not support \
                 using names. 'hourly' specified.); {EXPECTED}"
            )
        );
        assert_eq!(
            parse_cron("@midnight").unwrap_err(),
            "invalid cron expression `@midnight`: unknown shorthand `@midnight`; expected `@yearly`, \
             `@monthly`, `@weekly`, `@daily`, `@hourly` or `sec min hour day-of-month month day-of-week [year]`"
        );
        assert_eq!(
            parse_cron("@every 5m").unwrap_err(),
            "invalid cron expression `@every 5m`: `@every` is not a cron shorthand; for a fixed period write \
             `every = \"5m\"` instead of `schedule`"
        );
        assert_eq!(
            parse_cron("@every often").unwrap_err(),
            "invalid cron expression `@every often`: `@every` is not a cron shorthand; for a fixed period \
             write `every = \"5m\"` instead of `schedule`"
        );
        assert_eq!(
            parse_cron("@daily 0").unwrap_err(),
            format!(
                "invalid cron expression `@daily 0`: a shorthand such as `@daily` stands alone; {EXPECTED}"
            )
        );
    }

    #[test]
    fn never_panics() {
        let pieces = [
            "",
            " ",
            "*",
            "?",
            "0",
            "59",
            "60",
            "-",
            "/",
            ",",
            "L",
            "W",
            "#",
            "@",
            "é",
            "\u{0}",
            "1-",
            "-1",
            "*/",
            "/1",
            "1-0",
            "0-0/1",
            "Jan",
            "Sun-Sat",
            "4294967296",
            "2100",
            "1970-",
            "\n",
        ];
        for a in pieces {
            for b in pieces {
                for count in [1, 5, 6, 7, 8] {
                    let text = [a, b].repeat(count).join(" ");
                    let _ = parse_cron(&text);
                    let _ = parse_cron(&format!("0 0 0 {text}"));
                }
            }
        }
    }

    #[test]
    fn reads_iana_zones() {
        for ok in ["UTC", "Europe/Paris", "America/New_York", "Etc/GMT+5"] {
            assert_eq!(parse_timezone(ok), Ok(()), "{ok}");
        }
        let unknown = |zone: &str, hint: &str| {
            format!(
                "unknown time zone `{zone}`{hint}; expected an IANA time zone name such as `UTC`, \
                 `Europe/Paris` or `America/New_York`"
            )
        };
        let hint = |zone: &str| format!(" (did you mean `{zone}`?)");
        assert_eq!(
            parse_timezone("Mars/Olympus").unwrap_err(),
            unknown("Mars/Olympus", "")
        );
        assert_eq!(parse_timezone("").unwrap_err(), unknown("", ""));
        assert_eq!(
            parse_timezone("europe/paris").unwrap_err(),
            unknown("europe/paris", &hint("Europe/Paris"))
        );
        assert_eq!(
            parse_timezone("America/New York").unwrap_err(),
            unknown("America/New York", &hint("America/New_York"))
        );
        assert_eq!(
            parse_timezone("Paris").unwrap_err(),
            unknown("Paris", &hint("Europe/Paris"))
        );
        assert_eq!(
            parse_timezone("Europe/Pariss").unwrap_err(),
            unknown("Europe/Pariss", &hint("Europe/Paris"))
        );
    }

    #[test]
    fn reads_periods_in_whole_seconds() {
        assert_eq!(parse_period("1s"), Ok(1));
        assert_eq!(parse_period("5m"), Ok(300));
        assert_eq!(parse_period("1h30m"), Ok(5_400));
        assert_eq!(parse_period("2000ms"), Ok(2));
        assert_eq!(
            parse_period("0s").unwrap_err(),
            "`every = \"0s\"`: a period must be longer than zero, at least `1s`"
        );
        assert_eq!(
            parse_period("1500ms").unwrap_err(),
            "`every = \"1500ms\"`: a period is a whole number of seconds, e.g. `1s`, `90s` or `1m30s`"
        );
        assert_eq!(
            parse_period("5").unwrap_err(),
            "invalid duration `5`: `5` needs a unit: `ms`, `s`, `m` or `h`"
        );
    }

    #[test]
    fn reads_missed() {
        assert_eq!(parse_missed("fire-once"), Ok(false));
        assert_eq!(parse_missed("skip"), Ok(true));
        assert_eq!(
            parse_missed("fire_once").unwrap_err(),
            "unknown `missed` value `fire_once` (did you mean `fire-once`?); expected `fire-once` (run the \
             latest missed slot once) or `skip`"
        );
        assert_eq!(
            parse_missed("all").unwrap_err(),
            "unknown `missed` value `all`; expected `fire-once` (run the latest missed slot once) or `skip`"
        );
    }
}
