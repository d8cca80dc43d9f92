//! The "From Twisted" guide (`src/from_twisted.rs`) shows the README's table
//! of Twisted's names, row for row: rustdoc cannot include part of a file, so
//! the table is in both, and this keeps them one.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The first run of table rows after the line `after`.
fn table<'a>(lines: impl Iterator<Item = &'a str>, after: &str) -> Vec<&'a str> {
    lines
        .skip_while(|l| l.trim() != after)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect()
}

#[test]
fn the_guide_has_the_readmes_table_of_twisted_names() {
    let readme = read("README.md");
    let guide = read("src/from_twisted.rs");
    let ours = table(readme.lines(), "## Twisted's names in torsion");
    let theirs = table(
        guide.lines().map(|l| l.strip_prefix("//! ").unwrap_or(l)),
        "## The names",
    );
    assert!(ours.len() > 20, "the README's table was not found");
    for (n, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "row {n} differs (README.md, src/from_twisted.rs)");
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "the tables have different lengths"
    );
}
