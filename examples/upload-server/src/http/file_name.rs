//! The name an upload is stored under. The client's file name only ever contributes a
//! cleaned-up suffix, for people reading the directory: it can never leave the upload
//! directory or collide with another upload.

/// The longest suffix kept from the client's name; the end is kept, with the extension.
const MAX_SUFFIX: usize = 64;

/// The stored file's name: `{id}-{suffix}`, where `id` is unique (the job's message id) and
/// the suffix is the last component of the client's name, reduced to `[A-Za-z0-9._-]`, without
/// leading dots, at most [`MAX_SUFFIX`] characters, or `upload` when nothing is left.
pub(crate) fn stored_name(id: &str, client_name: Option<&str>) -> String {
    format!("{id}-{}", suffix(client_name.unwrap_or_default()))
}

fn suffix(client_name: &str) -> String {
    // Either separator: a browser on Windows may send `C:\Users\ada\report.pdf`.
    let base = client_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: Vec<char> = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let kept = &cleaned[cleaned.len().saturating_sub(MAX_SUFFIX)..];
    let suffix: String = kept.iter().collect();
    let suffix = suffix.trim_start_matches('.');
    if suffix.is_empty() {
        "upload".to_owned()
    } else {
        suffix.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_plain_name() {
        assert_eq!(stored_name("id", Some("report.pdf")), "id-report.pdf");
        assert_eq!(
            stored_name("id", Some("backup.tar.flaky")),
            "id-backup.tar.flaky"
        );
    }

    #[test]
    fn never_leaves_the_directory() {
        for hostile in [
            "../../etc/passwd",
            "/etc/passwd",
            "..\\..\\windows\\system.ini",
            "a/../../b",
            "..",
            ".",
            "",
        ] {
            let name = stored_name("id", Some(hostile));
            assert!(name.starts_with("id-"), "{hostile}: {name}");
            assert!(!name.contains(['/', '\\']), "{hostile}: {name}");
            assert_ne!(&name[3..], "..", "{hostile}");
        }
        assert_eq!(stored_name("id", Some("../../etc/passwd")), "id-passwd");
        assert_eq!(stored_name("id", Some("C:\\x\\y.pdf")), "id-y.pdf");
        assert_eq!(stored_name("id", Some("..")), "id-upload");
        assert_eq!(stored_name("id", None), "id-upload");
    }

    #[test]
    fn replaces_what_is_not_plain_and_bounds_the_length() {
        assert_eq!(
            stored_name("id", Some("my résumé (1).pdf")),
            "id-my_r_sum___1_.pdf"
        );
        assert_eq!(stored_name("id", Some("a\nb\0c")), "id-a_b_c");
        let long = format!("{}.pdf", "x".repeat(500));
        let name = stored_name("id", Some(&long));
        assert_eq!(name.len(), 3 + MAX_SUFFIX);
        assert!(name.ends_with("x.pdf"), "{name}");
    }
}
