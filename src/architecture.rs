//! The layering of the crate, checked: each top-level module may import only from modules on its
//! own row or below it, and no two modules import each other (directly or round a circle). The
//! rows, bottom to top, are those of `docs/DESIGN.md` and the README's layout table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom row first.
const ROWS: [&[&str]; 5] = [
    &["oci", "config", "stream", "metrics", "gates"],
    &["inspect", "store", "upstream", "cache"],
    &["judge", "policy"],
    &["proxy"],
    &["server", "scan"],
];

fn row(module: &str) -> Option<usize> {
    ROWS.iter().position(|r| r.contains(&module))
}

/// `crate::<module>` references in `text`, `use crate::{a, b::c}` included.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Which top-level modules each top-level module imports (tests included: they must not reach
/// up either).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in all {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if row(&top).is_none() {
            continue; // lib.rs, main.rs and this file sit above every row
        }
        // Comments may name any module; only code imports.
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let used = graph.entry(top.clone()).or_default();
        for r in references(&text) {
            if r != top && row(&r).is_some() {
                used.insert(r);
            }
        }
    }
    graph
}

#[test]
fn every_module_imports_only_from_its_row_or_below() {
    let graph = imports();
    assert!(graph.len() >= 14, "{graph:?}");
    let mut wrong = Vec::new();
    for (module, used) in &graph {
        for u in used {
            if row(u) > row(module) {
                wrong.push(format!("{module} imports {u}, a row above it"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_modules_import_each_other() {
    let graph = imports();
    // Depth-first search for a circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut circle = path[at..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn references_are_read_from_paths_and_groups() {
    let found =
        references("use crate::oci::Digest;\nuse crate::{store, judge::Runs};\nx(crate::cache::y)");
    let want: BTreeSet<String> = ["oci", "store", "judge", "cache"].map(String::from).into();
    assert_eq!(found, want);
}
