//! The layout's rules, checked on the source tree (README → Contributing):
//!
//! - engine/src's folders are layers and depend one way: runtime < event < stream, pg <
//!   ingest, analytics < ops (peers do not use each other);
//! - inside a folder, sibling modules have no cycle;
//! - no non-test source file is over 400 lines;
//! - every SQL statement the engine sends is in `pg/sql.rs`;
//! - every SQL function is created in exactly one place under `migrations/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The layers, lowest first; modules of one rank are peers.
const LAYERS: [(&str, u8); 7] =
    [("runtime", 0), ("event", 1), ("stream", 2), ("pg", 2), ("ingest", 3), ("analytics", 3), ("ops", 4)];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The engine's library sources: (path under engine/src, text).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(ROOT).join("engine/src");
    let mut paths = Vec::new();
    files(&src, "rs", &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .filter(|(rel, _)| !rel.starts_with("bin/"))
        .collect()
}

/// A source file's code without its inline test module and comments.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or(text);
    body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn is_test_file(rel: &str) -> bool {
    rel.ends_with("tests.rs") || rel.contains("/tests/")
}

/// Identifiers following each occurrence of `prefix` in `code`.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The top-level folder (module) and the sibling module a file belongs to.
fn place(rel: &str) -> (String, String) {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    let top = parts[0].to_owned();
    let sibling = parts.get(1).map_or("mod", |s| *s).to_owned();
    (top, sibling)
}

#[test]
fn folders_depend_one_way_down_the_layers() {
    let mut wrong = Vec::new();
    for (rel, text) in sources() {
        let (top, _) = place(&rel);
        let Some(own) = rank(&top) else { continue };
        for used in names_after(&code(&text), "crate::") {
            if used == top {
                continue;
            }
            match rank(used) {
                Some(r) if r < own => {}
                _ => wrong.push(format!("{rel} ({top}) uses crate::{used}")),
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies against the layers:\n{}", wrong.join("\n"));
    let tops: BTreeSet<String> = sources().iter().map(|(rel, _)| place(rel).0).filter(|t| t != "lib").collect();
    let known: BTreeSet<String> = LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(tops, known, "every folder of engine/src is a layer of LAYERS");
}

#[test]
fn sibling_modules_have_no_cycle() {
    // Within each folder: module → the sibling modules it names (super::x, crate::folder::x).
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (rel, text) in sources() {
        let (top, own) = place(&rel);
        if top == "lib" || is_test_file(&rel) {
            continue;
        }
        let body = code(&text);
        let mut used: Vec<&str> = names_after(&body, &format!("crate::{top}::"));
        if rel.matches('/').count() == 1 {
            used.extend(names_after(&body, "super::"));
        }
        let graph = graphs.entry(top).or_default();
        let edges = graph.entry(own.clone()).or_default();
        edges.extend(used.into_iter().filter(|u| *u != own && *u != "mod").map(str::to_owned));
    }
    for (top, graph) in &graphs {
        let modules: BTreeSet<&String> = graph.keys().collect();
        // Repeatedly remove modules that use no remaining module; what is left is cyclic.
        let mut left: BTreeSet<&String> = modules.clone();
        loop {
            let leaf: Vec<&String> = left
                .iter()
                .copied()
                .filter(|m| graph[*m].iter().all(|u| !left.contains(u) || !modules.contains(u)))
                .collect();
            if leaf.is_empty() {
                break;
            }
            for m in leaf {
                left.remove(m);
            }
        }
        let cyclic: Vec<String> = left
            .iter()
            .map(|m| format!("{m} -> {:?}", graph[*m].iter().filter(|u| left.contains(u)).collect::<Vec<_>>()))
            .collect();
        assert!(cyclic.is_empty(), "a cycle among engine/src/{top}'s modules: {cyclic:?}");
    }
}

#[test]
fn no_source_file_is_over_400_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(rel, _)| !is_test_file(rel))
        .map(|(rel, text)| (rel, text.split("#[cfg(test)]").next().unwrap_or(text).lines().count()))
        .filter(|(_, n)| *n > 400)
        .map(|(rel, n)| format!("{rel}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}

#[test]
fn every_sql_statement_is_in_pg_sql() {
    const KEYWORDS: [&str; 12] = [
        "SELECT ", "INSERT ", "UPDATE ", "DELETE ", "SET ", "COPY ", "BEGIN", "CREATE ", "DROP ", "ALTER ", "LOCK ",
        "WITH ",
    ];
    let mut stray = Vec::new();
    for (rel, text) in sources() {
        if rel == "pg/sql.rs" || is_test_file(&rel) {
            continue;
        }
        for literal in code(&text).split('"').skip(1).step_by(2) {
            if KEYWORDS.iter().any(|k| literal.starts_with(k)) {
                stray.push(format!("{rel}: \"{literal}\""));
            }
        }
    }
    assert!(stray.is_empty(), "statements outside engine/src/pg/sql.rs:\n{}", stray.join("\n"));
}

#[test]
fn every_sql_function_is_created_in_one_place() {
    let mut paths = Vec::new();
    files(&Path::new(ROOT).join("migrations"), "sql", &mut paths);
    let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let upper = text.to_uppercase();
        for (i, _) in upper.match_indices("FUNCTION ") {
            let before = upper[..i].trim_end();
            if !(before.ends_with("CREATE") || before.ends_with("CREATE OR REPLACE")) {
                continue;
            }
            let name: String = text[i + "FUNCTION ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            if !name.is_empty() {
                created.entry(name).or_default().push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    assert!(created.len() >= 25, "the scan finds the functions: {:?}", created.keys());
    let twice: Vec<String> =
        created.iter().filter(|(_, files)| files.len() > 1).map(|(f, files)| format!("{f}: {files:?}")).collect();
    assert!(twice.is_empty(), "functions created more than once:\n{}", twice.join("\n"));
    // The two position merges come from one template whose header names both.
    let merge = std::fs::read_to_string(Path::new(ROOT).join("migrations/repeatable/merge.sql")).unwrap();
    for generated in ["merge_deposited_events", "merge_redeemed_events"] {
        assert!(!created.contains_key(generated) && merge.contains(generated), "{generated}");
    }
}
