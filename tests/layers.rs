//! The layering of DESIGN.md §1, checked on the source: every module of
//! `src/` may import (`use crate::…`, `crate::…` paths, `super::…` that reach
//! the crate root) only from its own layer or the layers below it; only the
//! reactor names `mio`; the test tools never import the reactor. A new
//! top-level module must be given a layer here, so the rule cannot erode
//! silently.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// From the bottom up. A module may use its own layer and those before it.
const LAYERS: &[(&str, &[&str])] = &[
    // Pure: no clock, no socket, no protocol. (`test_logs`: the unit tests'
    // log capture, used from any layer.)
    ("base", &["error", "address", "buf", "defer", "test_logs"]),
    // The mio-free core: clock, timer queue, handles, queued operations
    // (std data), panic policy, local futures and threads.
    // Introspection's plain data sits here too: it names connection handles.
    (
        "core",
        &["core", "context", "local", "threads", "task", "introspect"],
    ),
    // The protocol traits and what their callbacks are handed (the context
    // and the connection state behind it), the wrapper hook.
    ("protocol", &["protocol", "datagram", "transport", "wrap"]),
    // The one connection engine and the one interpreter of queued operations.
    ("conn", &["conn"]),
    // Transports and codecs: each on the engine, none knowing another's
    // internals (see SIBLINGS).
    ("transports", &["reactor", "testing", "tls", "protocols"]),
    // Composition.
    (
        "composition",
        &[
            "service",
            "endpoints",
            "reconnect",
            "policies",
            "multi",
            "connect",
            "promises",
            "from_twisted",
            "http",
            "process",
            "aio",
            "prometheus",
            "stuck_reactor",
        ],
    ),
];

/// Pairs (module, module it must not import) within a layer.
const SIBLINGS: &[(&str, &str)] = &[("testing", "reactor"), ("reactor", "testing")];

/// Upward imports still to go, each with the change that removes it. Listed
/// so that the rest stays checked meanwhile; the test fails once one is gone
/// and still listed.
const PENDING: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`src/reactor/tcp.rs` is
/// `["reactor", "tcp"]`, `src/reactor/mod.rs` is `["reactor"]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a line, without its comment (doc links do not count).
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with("//") {
        return "";
    }
    match line.find("//") {
        // A `//` inside a string literal is rare in `use` lines; good enough.
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

fn ident_after(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules a file refers to.
fn imports(module: &[String], text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let line = code(line);
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let name = ident_after(&rest[i + 7..]);
            // `$crate::` in macros and `foo_crate::` are not ours.
            if !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && !name.is_empty()
            {
                found.insert(name);
            }
            rest = &rest[i + 7..];
        }
        // `super::` chains that climb to the crate root.
        let mut rest = line;
        while let Some(i) = rest.find("super::") {
            let before = rest[..i].chars().last();
            if matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_') {
                rest = &rest[i + 7..];
                continue;
            }
            let mut tail = &rest[i..];
            let mut depth = module.len();
            while let Some(t) = tail.strip_prefix("super::") {
                depth = depth.saturating_sub(1);
                tail = t;
            }
            if depth == 0 {
                let name = ident_after(tail);
                if !name.is_empty() {
                    found.insert(name);
                }
            }
            rest = &rest[i + 7..];
        }
    }
    found
}

fn names_mio(text: &str) -> bool {
    text.lines()
        .map(code)
        .any(|l| l.contains("mio::") || l.contains("use mio"))
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut pending_seen = BTreeSet::new();
    for file in &files {
        let module = module_path(&src, file);
        let Some(top) = module.first() else {
            continue; // lib.rs: the crate root re-exports everything
        };
        let Some(layer) = layer_of(top) else {
            problems.push(format!(
                "{}: module `{top}` has no layer in tests/layers.rs",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for used in imports(&module, &text) {
            if used == *top {
                continue;
            }
            if PENDING.contains(&(top.as_str(), used.as_str())) {
                pending_seen.insert((top.clone(), used.clone()));
                continue;
            }
            match layer_of(&used) {
                Some(l) if l > layer => problems.push(format!(
                    "{}: `{top}` ({}) imports `{used}` ({}), a layer above it",
                    file.display(),
                    LAYERS[layer].0,
                    LAYERS[l].0
                )),
                Some(_) if SIBLINGS.contains(&(top.as_str(), used.as_str())) => problems.push(
                    format!("{}: `{top}` must not import `{used}`", file.display()),
                ),
                // The same layer or below; or not a module of ours (a macro,
                // an item re-exported at the root such as `crate::Address`).
                _ => {}
            }
        }
        if top != "reactor" && names_mio(&text) {
            problems.push(format!(
                "{}: only the reactor names mio (`{top}` does)",
                file.display()
            ));
        }
    }
    for (module, used) in PENDING {
        if !pending_seen.contains(&(module.to_string(), used.to_string())) {
            problems.push(format!(
                "`{module}` no longer imports `{used}`: remove it from PENDING"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    let m = |s: &str| -> Vec<String> { s.split('/').map(String::from).collect() };
    let found = imports(
        &m("core"),
        "use crate::reactor::Net;\nlet x = crate::tls::f();",
    );
    assert_eq!(found, ["reactor", "tls"].map(String::from).into());
    // Doc comments and comments do not count.
    assert!(imports(&m("core"), "/// see [`crate::reactor`]\n// crate::tls").is_empty());
    // `super::` from a top-level module's own file reaches the root.
    let found = imports(
        &m("core/ops"),
        "use super::super::reactor::X;\nuse super::Core;",
    );
    assert_eq!(found, ["reactor"].map(String::from).into());
    assert!(names_mio("use mio::Poll;"));
    assert!(!names_mio("// mio::Poll"));
}
