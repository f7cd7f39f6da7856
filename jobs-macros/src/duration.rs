//! Durations (`"30s"`, `"1500ms"`, `"1m30s"`) and backoff schedules (`"1s, 5s, 30s"`,
//! `"exp(1s, x2, 5m)"`), checked at compile time and emitted as milliseconds.

const UNITS: &str = "`ms`, `s`, `m` or `h`";
const EXAMPLES: &str = "`30s`, `1500ms`, `5m`, `1h` or `1m30s`";

/// A backoff schedule, delays in milliseconds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BackoffSpec {
    Steps(Vec<u64>),
    Exponential { initial: u64, factor: u32, max: u64 },
}

/// Parses a duration such as `30s`, `1500ms` or `1m30s` into milliseconds.
///
/// Units go from the largest to the smallest, each at most once, so that a duration reads one
/// way only.
pub(crate) fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "empty duration: expected a number and a unit, e.g. {EXAMPLES}"
        ));
    }
    let invalid = |why: &str| format!("invalid duration `{text}`: {why}");
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_unit: Option<u64> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid(&format!(
                "expected a number and a unit, e.g. {EXAMPLES}"
            )));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" if after.starts_with('.') || after.starts_with(',') => {
                return Err(invalid(
                    "fractions are not supported; use a smaller unit, e.g. `1500ms`",
                ));
            }
            "" => return Err(invalid(&format!("`{number}` needs a unit: {UNITS}"))),
            other => {
                return Err(invalid(&format!(
                    "unknown unit `{other}`; expected {UNITS}"
                )));
            }
        };
        if last_unit.is_some_and(|last| scale >= last) {
            return Err(invalid(
                "units must go from the largest to the smallest, each once, e.g. `1m30s`",
            ));
        }
        last_unit = Some(scale);
        let value = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| invalid("too long"))?;
        total = value;
        rest = after;
    }
    Ok(total)
}

/// Parses `"1s, 5s, 30s"` (steps) or `"exp(1s, x2, 5m)"` (exponential).
pub(crate) fn parse_backoff(text: &str) -> Result<BackoffSpec, String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("exp(") {
        return parse_exponential(text, inner);
    }
    if text.is_empty() {
        return Err(
            "empty backoff: expected delays such as `1s, 5s, 30s`, or `exp(1s, x2, 5m)`".to_owned(),
        );
    }
    let mut steps = Vec::new();
    for part in text.split(',') {
        let delay = parse(part).map_err(|why| format!("invalid backoff `{text}`: {why}"))?;
        if delay == 0 {
            return Err(format!(
                "invalid backoff `{text}`: delays must be longer than zero"
            ));
        }
        steps.push(delay);
    }
    Ok(BackoffSpec::Steps(steps))
}

fn parse_exponential(text: &str, inner: &str) -> Result<BackoffSpec, String> {
    let invalid = |why: &str| format!("invalid backoff `{text}`: {why}");
    let expected =
        "expected `exp(<first delay>, x<factor>, <longest delay>)`, e.g. `exp(1s, x2, 5m)`";
    let Some(inner) = inner.strip_suffix(')') else {
        return Err(invalid(expected));
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let [initial, factor, max] = parts.as_slice() else {
        return Err(invalid(expected));
    };
    let initial = parse(initial).map_err(|why| invalid(&why))?;
    let max = parse(max).map_err(|why| invalid(&why))?;
    let factor = factor
        .strip_prefix('x')
        .and_then(|f| f.parse::<u32>().ok())
        .ok_or_else(|| {
            invalid(&format!(
                "the factor `{factor}` should be `x` and a whole number, e.g. `x2`"
            ))
        })?;
    if factor == 0 {
        return Err(invalid("the factor must be at least `x1`"));
    }
    if initial == 0 {
        return Err(invalid("the first delay must be longer than zero"));
    }
    if max < initial {
        return Err(invalid("the longest delay is shorter than the first"));
    }
    Ok(BackoffSpec::Exponential {
        initial,
        factor,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_units() {
        assert_eq!(parse("30s"), Ok(30_000));
        assert_eq!(parse("1500ms"), Ok(1_500));
        assert_eq!(parse("5m"), Ok(300_000));
        assert_eq!(parse("1h"), Ok(3_600_000));
        assert_eq!(parse(" 2s "), Ok(2_000));
        assert_eq!(parse("0s"), Ok(0));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("1m30s"), Ok(90_000));
        assert_eq!(parse("1h1m1s1ms"), Ok(3_661_001));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "", "30", "s", "30 s", "1.5s", "30sec", "5d", "30s1m", "1s1s", "-1s", "1m 30s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse("30").unwrap_err(),
            "invalid duration `30`: `30` needs a unit: `ms`, `s`, `m` or `h`"
        );
        assert_eq!(
            parse("5d").unwrap_err(),
            "invalid duration `5d`: unknown unit `d`; expected `ms`, `s`, `m` or `h`"
        );
        assert!(parse("1.5s").unwrap_err().contains("fractions"));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(
            parse("99999999999999999999h").unwrap_err(),
            "invalid duration `99999999999999999999h`: too long"
        );
        assert!(parse("5124095576030431h").is_err());
    }

    #[test]
    fn parses_steps() {
        assert_eq!(
            parse_backoff("1s, 5s, 30s"),
            Ok(BackoffSpec::Steps(vec![1_000, 5_000, 30_000]))
        );
        assert_eq!(parse_backoff("250ms"), Ok(BackoffSpec::Steps(vec![250])));
    }

    #[test]
    fn parses_exponential() {
        assert_eq!(
            parse_backoff("exp(1s, x2, 5m)"),
            Ok(BackoffSpec::Exponential {
                initial: 1_000,
                factor: 2,
                max: 300_000
            })
        );
        assert_eq!(
            parse_backoff("exp(500ms,x1,500ms)"),
            Ok(BackoffSpec::Exponential {
                initial: 500,
                factor: 1,
                max: 500
            })
        );
    }

    #[test]
    fn rejects_malformed_backoff() {
        for bad in [
            "",
            "1s,,5s",
            "1s, 5s,",
            "0s, 5s",
            "exp(1s, 2, 5m)",
            "exp(1s, x0, 5m)",
            "exp(1s, x1.5, 5m)",
            "exp(1s, x2)",
            "exp(1s, x2, 5m",
            "exp(0s, x2, 5m)",
            "exp(10s, x2, 5s)",
            "fast",
        ] {
            assert!(parse_backoff(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
