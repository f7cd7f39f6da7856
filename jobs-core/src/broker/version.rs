//! The broker's version, as its server properties give it.

use std::fmt;

/// A RabbitMQ version: `major.minor.patch`.
///
/// Parsed from the `version` the broker sends in `connection.start`; ordered, so that a
/// behaviour can be asked of "4.3 or later".
///
/// ```
/// use jobs_core::broker::BrokerVersion;
///
/// let version = BrokerVersion::parse("4.1.0-rc.1").unwrap();
/// assert_eq!(version, BrokerVersion::new(4, 1, 0));
/// assert!(version >= BrokerVersion::new(4, 0, 0));
/// assert_eq!(BrokerVersion::parse("unknown"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerVersion {
    /// The major version: 3, 4…
    pub major: u16,
    /// The minor version.
    pub minor: u16,
    /// The patch version; 0 when the text gives none.
    pub patch: u16,
}

impl BrokerVersion {
    /// The version `major.minor.patch`.
    #[must_use]
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Reads a version such as `3.10.8`, `4.1.0-rc.1`, `4.2.0+build.5` or `4.0`: the leading
    /// numbers, whatever suffix follows them. `None` when the text does not start with
    /// `major.minor`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        // A pre-release or build suffix starts at the first character that is neither a
        // digit nor a dot: `-rc.1`, `+build`, ` (beta)`.
        let end = text
            .trim()
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.trim().len());
        let mut parts = text.trim()[..end].split('.');
        let number = |part: Option<&str>| part.and_then(|part| part.parse::<u16>().ok());
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        let patch = match parts.next() {
            None | Some("") => 0,
            part => number(part)?,
        };
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for BrokerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_their_suffixes() {
        let cases = [
            ("3.10.8", Some((3, 10, 8))),
            ("3.13.7", Some((3, 13, 7))),
            ("4.0.0", Some((4, 0, 0))),
            ("4.1.0-rc.1", Some((4, 1, 0))),
            ("4.2.0+build.7", Some((4, 2, 0))),
            (" 4.3.0 ", Some((4, 3, 0))),
            ("4.0", Some((4, 0, 0))),
            ("4.0.", Some((4, 0, 0))),
            ("4", None),
            ("", None),
            ("unknown", None),
            ("v4.0.0", None),
            ("4.x.0", None),
            ("99999.0.0", None),
        ];
        for (text, expected) in cases {
            let expected = expected.map(|(a, b, c)| BrokerVersion::new(a, b, c));
            assert_eq!(BrokerVersion::parse(text), expected, "{text:?}");
        }
    }

    #[test]
    fn versions_order_numerically_not_as_text() {
        let v = |text| BrokerVersion::parse(text).unwrap();
        assert!(v("3.10.0") > v("3.9.29"));
        assert!(v("4.0.0") > v("3.13.7"));
        assert!(v("4.3.0") > v("4.2.9"));
        assert_eq!(v("4.3.0-beta.2").to_string(), "4.3.0");
    }
}
