//! The README and the binary say the same thing: every long option `--help`
//! lists has a row in the README's Options table and the other way round,
//! every variable is named there, the version the README installs is this
//! one, the README shows `make demo` and `make test` (what `.ci/run` runs),
//! and it stays under 2,500 words.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::collections::BTreeSet;

fn readme() -> String {
    std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every `--long-option` at the start of a word in `text`.
fn long_options(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_options_table_and_help_list_the_same_options() {
    let out = Drainit::new(Mode::Parent).arg("--help").run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let help = String::from_utf8(out.stdout).unwrap();
    // The options part of --help: the lines that start with an option.
    let listed: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--") || l.starts_with("-v,") || l.starts_with("-q,"))
        .flat_map(|l| long_options(l.split("  ").next().unwrap()))
        .filter(|o| o != "--help" && o != "--version")
        .collect();
    let readme = readme();
    let section = readme
        .split("\n## Options\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a '## Options' section");
    let rows: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `-"))
        .flat_map(|l| long_options(l.split(" | ").next().unwrap()))
        .collect();
    assert!(!listed.is_empty());
    assert_eq!(
        listed, rows,
        "--help (left) and the README's Options table (right) differ"
    );
    for var in VARIABLES {
        assert!(section.contains(var), "the Options table lacks {var}");
    }
}

#[test]
fn the_readme_names_this_version_and_the_make_targets_and_is_short() {
    let readme = readme();
    let version = env!("CARGO_PKG_VERSION");
    for file in [
        format!("drainit-{version}-x86_64-linux"),
        format!("drainit-{version}-aarch64-linux"),
        format!("drainit:{version}"),
    ] {
        assert!(readme.contains(&file), "the README lacks {file}");
    }
    // No other version is offered for install.
    for word in readme.split(|c: char| c.is_whitespace() || c == '`') {
        if let Some(rest) = word.strip_prefix("drainit-")
            && rest.starts_with(|c: char| c.is_ascii_digit())
        {
            assert!(rest.starts_with(version), "an old version: {word}");
        }
    }
    for target in ["make demo", "make test"] {
        assert!(readme.contains(target), "the README lacks `{target}`");
    }
    let ci = std::fs::read_to_string(format!("{}/.ci/run", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "make test"),
        ".ci/run runs the README's test command"
    );
    let words = readme.split_whitespace().count();
    assert!(words < 2500, "README.md has {words} words");
}
