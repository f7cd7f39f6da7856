//! The README's Rust examples are the code that runs: each block names the file it comes from
//! (`<!-- from PATH -->` on the line before it), and its lines appear in that file in the same
//! order. A block may leave lines out (and say so in a comment), and add comments of its own.

use std::path::Path;

/// A line as compared: trimmed, without a trailing `// comment` (one after whitespace, so a
/// URL's `://` stays).
fn code_of(line: &str) -> &str {
    let line = line.trim();
    let code = line.find(" //").map_or(line, |at| &line[..at]);
    code.trim_end()
}

/// The blocks of `markdown` fenced as `rust`, each with the path its marker names.
fn rust_blocks(markdown: &str) -> Vec<(Option<String>, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```rust" {
            let source = previous
                .trim()
                .strip_prefix("<!-- from ")
                .and_then(|rest| rest.strip_suffix(" -->"))
                .map(str::to_owned);
            let body = lines
                .by_ref()
                .take_while(|line| line.trim() != "```")
                .map(str::to_owned)
                .collect();
            blocks.push((source, body));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    blocks
}

#[test]
fn every_rust_example_in_the_readme_is_in_the_file_it_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    let blocks = rust_blocks(&readme);
    assert!(!blocks.is_empty(), "the README has Rust examples");
    for (source, body) in blocks {
        let first = body.first().cloned().unwrap_or_default();
        let source =
            source.unwrap_or_else(|| panic!("the block starting `{first}` names no source file"));
        let text = std::fs::read_to_string(root.join(&source))
            .unwrap_or_else(|err| panic!("{source}, named by the block `{first}`: {err}"));
        let mut file = text.lines().map(code_of);
        for line in &body {
            let code = code_of(line);
            if code.is_empty() || code.starts_with("//") {
                continue;
            }
            assert!(
                file.any(|candidate| candidate == code),
                "`{code}` (README block `{first}`) is not in {source}, or not in this order"
            );
        }
    }
}

#[test]
fn comments_are_told_from_code() {
    assert_eq!(code_of("    let x = 1; // why"), "let x = 1;");
    assert_eq!(
        code_of("connect(\"amqp://guest@h\")"),
        "connect(\"amqp://guest@h\")"
    );
    assert_eq!(code_of("// only a comment"), "// only a comment");
}
