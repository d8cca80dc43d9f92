//! No name means two things (DESIGN.md, decision 13): a method reachable on
//! `Context` or `DatagramContext` (both dereference to `Core`) never has the
//! name of a `Core` method, whose arguments would differ. Reads `src/`.

use std::collections::BTreeSet;
use std::path::Path;

/// The `pub fn` names of every `impl <ty>` block under `dir`.
fn methods(dir: &Path, ty: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            methods(&path, ty, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("impl") {
                // `impl Core {`, `impl<'a> Context<'a> {`, `impl Context<'_> {`
                let head = line.trim_end_matches('{').trim();
                let name = head
                    .split_whitespace()
                    .last()
                    .unwrap_or("")
                    .split('<')
                    .next()
                    .unwrap_or("");
                inside = name == ty && !head.contains(" for ");
            } else if line.starts_with('}') {
                inside = false;
            } else if inside {
                if let Some(rest) = line.strip_prefix("    pub fn ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.insert(name);
                }
            }
        }
    }
}

fn names(ty: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    methods(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        ty,
        &mut out,
    );
    out
}

#[test]
fn context_methods_never_shadow_core_methods() {
    let core = names("Core");
    // The reader still sees the code: a few names it must find.
    for known in ["call_later", "connection", "reactor_handle", "listen_tcp"] {
        assert!(core.contains(known), "Core::{known} not found in {core:?}");
    }
    for ty in ["Context", "DatagramContext"] {
        let ctx = names(ty);
        assert!(ctx.contains("write"), "{ty}::write not found in {ctx:?}");
        let both: Vec<_> = ctx.intersection(&core).collect();
        assert!(both.is_empty(), "{ty} shadows Core methods: {both:?}");
    }
}
