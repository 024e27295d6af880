//! The crate's shape, read from its source: the imports between files and between
//! folders must not form a cycle.
//!
//! The module tree is found from `src/lib.rs` and `src/main.rs` by their `mod NAME;`
//! declarations. In every file (comments, strings and `#[cfg(test)]` modules removed) a
//! path that starts with `crate::`, `super::`, `self::`, `smelt::` (from the binary) or
//! a child module's name is expanded (use trees with braces included) and resolved to
//! the deepest module that exists; a name the crate root re-exports (`pub use a::b::C`)
//! resolves to where it comes from. Each resolved path is an edge from the file to the
//! module's file, and from the file's top-level folder (or root file) to the module's.
//! Strongly connected components of more than one node are cycles.
//!
//! `KNOWN` lists accepted cycles (none); the test fails when a cycle appears that is not
//! listed, and when a listed one is gone (so the list only shrinks). A second test keeps
//! the top of `src/` to the crate roots, the error type, spans and `Sme`: every other
//! module lives in its phase's folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles that exist today, each as its sorted members (files relative to `src/`, or
/// top-level modules for the folder graph). Empty since issue 17: it stays empty.
const KNOWN: &[&[&str]] = &[];

/// The files allowed at the top of `src/`: the two crate roots, the error type, spans and
/// the `Sme` value every phase reads. Everything else lives in a phase's folder.
const TOP_FILES: &[&str] = &["lib.rs", "main.rs", "span.rs", "sme.rs"];

/// A crate's modules: module path (`crate::a::b`) → file.
type Modules = BTreeMap<String, PathBuf>;

/// Removes comments, string and char literals, and `#[cfg(test)]` items (the test
/// modules of a file: their imports are not the code's).
fn strip(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && !b[..i]
                .last()
                .is_some_and(|p| p.is_ascii_alphanumeric() || *p == b'_')
        {
            // A raw string r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && (b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\'))) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            let mut j = i + 1;
            if b[j] == b'\\' {
                j += 1;
            }
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            // Whole UTF-8 characters.
            let ch = source[i..].chars().next().expect("a character");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    remove_test_modules(&out)
}

/// Cuts `#[cfg(test)] mod NAME { … }` (braces matched; strings are already gone).
fn remove_test_modules(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        if trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ") {
            match trimmed.find(['{', ';']) {
                Some(k) if trimmed.as_bytes()[k] == b'{' => {
                    let mut depth = 0;
                    let mut end = trimmed.len();
                    for (j, ch) in trimmed[k..].char_indices() {
                        match ch {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = k + j + 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    rest = &trimmed[end..];
                }
                _ => rest = after,
            }
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The `mod NAME;` declarations of a file (file modules, not inline ones).
fn declared_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let t = line.trim();
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("mod ") {
            if let Some(name) = rest.strip_suffix(';') {
                out.push(name.trim().to_string());
            }
        }
    }
    out
}

/// The module tree below `root` (`lib.rs` or `main.rs`).
fn modules(root: &Path) -> Modules {
    let mut out = Modules::new();
    let mut todo = vec![("crate".to_string(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let code = strip(&std::fs::read_to_string(&file).expect("a source file"));
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().expect("a folder").to_path_buf(),
            _ => file.with_extension(""),
        };
        for name in declared_modules(&code) {
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let child = if flat.exists() { flat } else { nested };
            assert!(child.exists(), "{}: mod {name} has no file", file.display());
            todo.push((format!("{path}::{name}"), child));
        }
        out.insert(path, file);
    }
    out
}

/// The paths a use tree or path starting at `s` names, each as segments.
fn use_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let mut prefix: Vec<String> = Vec::new();
    loop {
        skip_ws(&mut i);
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            let mut all = Vec::new();
            loop {
                skip_ws(&mut i);
                if i >= chars.len() || chars[i] == '}' {
                    i += 1;
                    break;
                }
                let rest: String = chars[i..].iter().collect();
                let (subs, used) = use_tree(&rest);
                for sub in subs {
                    let mut p = prefix.clone();
                    p.extend(sub.into_iter().filter(|seg| seg != "self"));
                    all.push(p);
                }
                i += rest[..used].chars().count();
                skip_ws(&mut i);
                if i < chars.len() && chars[i] == ',' {
                    i += 1;
                }
            }
            let used: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
            return (all, used);
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        if start == i {
            break;
        }
        prefix.push(chars[start..i].iter().collect());
        let mut j = i;
        skip_ws(&mut j);
        if j + 1 < chars.len() && chars[j] == ':' && chars[j + 1] == ':' {
            i = j + 2;
        } else {
            break;
        }
    }
    let used: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
    (vec![prefix], used)
}

/// The names a file re-exports: name → the path it comes from, as written.
fn reexports(code: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for marker in ["pub use ", "pub(crate) use "] {
        let mut rest = code;
        while let Some(at) = rest.find(marker) {
            let (paths, used) = use_tree(&rest[at + marker.len()..]);
            for p in paths {
                if let Some(last) = p.last() {
                    out.insert(last.clone(), p.clone());
                }
            }
            rest = &rest[at + marker.len() + used..];
        }
    }
    out
}

/// The module a path names: the deepest existing prefix, followed through the names
/// that module re-exports (`pub use`, `pub(crate) use`: the item lives where the
/// re-export points).
fn resolve(modules: &Modules, exports: &Exports, segs: &[String]) -> Option<String> {
    let mut segs = segs.to_vec();
    for _ in 0..8 {
        let n = (1..=segs.len())
            .rev()
            .find(|&n| modules.contains_key(&segs[..n].join("::")))?;
        let module = segs[..n].join("::");
        let Some(next) = segs.get(n) else {
            return Some(module);
        };
        let Some(src) = exports.get(&module).and_then(|m| m.get(next)) else {
            return Some(module);
        };
        let mut q = absolute(&module, src, modules);
        q.extend(segs[n + 1..].iter().cloned());
        if q == segs {
            return Some(module);
        }
        segs = q;
    }
    None
}

/// Re-exports of every module: module → (name → the path it re-exports, as written).
type Exports = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// A path as written in `module` made absolute (`crate::…`).
fn absolute(module: &str, p: &[String], modules: &Modules) -> Vec<String> {
    let mut base: Vec<String> = module.split("::").map(String::from).collect();
    match p.first().map(String::as_str) {
        Some("crate") => p.to_vec(),
        Some("self") => {
            base.extend(p[1..].iter().cloned());
            base
        }
        Some("super") => {
            let mut q = p;
            while q.first().is_some_and(|s| s == "super") {
                base.pop();
                q = &q[1..];
            }
            base.extend(q.iter().cloned());
            base
        }
        Some(name) if modules.contains_key(&format!("{module}::{name}")) => {
            base.extend(p.iter().cloned());
            base
        }
        _ => p.to_vec(),
    }
}

/// Edges `(from module, to module)` of one crate; `lib` is the library's module map when
/// the crate is the binary (its `smelt::` paths).
fn edges(modules: &Modules, lib: Option<&Modules>) -> BTreeSet<(String, String)> {
    let exports_of = |m: &Modules| -> Exports {
        m.iter()
            .map(|(module, file)| {
                let code = strip(&std::fs::read_to_string(file).expect("a source file"));
                (module.clone(), reexports(&code))
            })
            .collect()
    };
    let exports = exports_of(modules);
    let lib_exports = lib.map(exports_of);
    let mut out = BTreeSet::new();
    for (module, file) in modules {
        let code = strip(&std::fs::read_to_string(file).expect("a source file"));
        let children: Vec<String> = declared_modules(&code);
        let chars: Vec<(usize, char)> = code.char_indices().collect();
        let starts: Vec<String> = ["crate", "super", "self", "smelt"]
            .iter()
            .map(|s| s.to_string())
            .chain(children.iter().cloned())
            .map(|s| format!("{s}::"))
            .collect();
        for (k, &(at, _)) in chars.iter().enumerate() {
            if k > 0 && (is_ident(chars[k - 1].1) || chars[k - 1].1 == ':') {
                continue;
            }
            if !starts.iter().any(|s| code[at..].starts_with(s.as_str())) {
                continue;
            }
            // A use tree ends well within this (the longest in the crate is a few lines).
            let mut end = (at + 4000).min(code.len());
            while !code.is_char_boundary(end) {
                end -= 1;
            }
            let (paths, _) = use_tree(&code[at..end]);
            for p in paths {
                if p.len() < 2 && !(p.len() == 1 && children.contains(&p[0])) {
                    continue;
                }
                let mut segs: Vec<String> = match p[0].as_str() {
                    "crate" => p.clone(),
                    "smelt" if lib.is_some() => {
                        let mut q = vec!["lib".to_string()];
                        q.extend(p[1..].iter().cloned());
                        q
                    }
                    "super" | "self" => {
                        let mut base: Vec<String> = module.split("::").map(String::from).collect();
                        let mut q = p.as_slice();
                        // `self` in a mod.rs or a file is the module itself.
                        if q[0] == "self" {
                            q = &q[1..];
                        }
                        while q.first().is_some_and(|s| s == "super") {
                            base.pop();
                            q = &q[1..];
                        }
                        base.extend(q.iter().cloned());
                        base
                    }
                    name if children.iter().any(|c| c == name) => {
                        let mut q: Vec<String> = module.split("::").map(String::from).collect();
                        q.extend(p.iter().cloned());
                        q
                    }
                    _ => continue,
                };
                let target = if segs[0] == "lib" {
                    segs[0] = "crate".to_string();
                    match (lib, &lib_exports) {
                        (Some(l), Some(e)) => resolve(l, e, &segs).map(|t| format!("lib:{t}")),
                        _ => None,
                    }
                } else {
                    resolve(modules, &exports, &segs)
                };
                if let Some(t) = target {
                    if &t != module {
                        out.insert((module.clone(), t));
                    }
                }
            }
        }
    }
    out
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut nodes: BTreeSet<&String> = BTreeSet::new();
    let mut adj: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (a, b) in edges {
        nodes.insert(a);
        nodes.insert(b);
        adj.entry(a).or_default().push(b);
    }
    struct T<'a> {
        adj: &'a BTreeMap<&'a String, Vec<&'a String>>,
        index: BTreeMap<&'a String, usize>,
        low: BTreeMap<&'a String, usize>,
        stack: Vec<&'a String>,
        on: BTreeSet<&'a String>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a String) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for &w in t.adj.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        adj: &adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

/// A module's file relative to `src/`.
fn short(modules: &Modules, module: &str, src: &Path) -> String {
    let m = module.strip_prefix("lib:").unwrap_or(module);
    modules[m]
        .strip_prefix(src)
        .expect("under src")
        .display()
        .to_string()
}

/// The top-level module (or root file) a module belongs to.
fn top(module: &str) -> String {
    let m = module.strip_prefix("lib:").unwrap_or(module);
    let parts: Vec<&str> = m.split("::").collect();
    let name = parts.get(1).copied().unwrap_or("(root)");
    if module.starts_with("lib:") {
        format!("lib:{name}")
    } else {
        name.to_string()
    }
}

#[test]
fn no_import_cycles_between_files_or_folders() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = modules(&src.join("lib.rs"));
    let bin = modules(&src.join("main.rs"));
    let mut found: Vec<Vec<String>> = Vec::new();
    // The library: files, then folders.
    let lib_edges = edges(&lib, None);
    for c in cycles(&lib_edges) {
        found.push(c.iter().map(|m| short(&lib, m, &src)).collect());
    }
    let folders: BTreeSet<(String, String)> = lib_edges
        .iter()
        .map(|(a, b)| (top(a), top(b)))
        .filter(|(a, b)| a != b)
        .collect();
    found.extend(cycles(&folders));
    // The binary (its edges into the library cannot close a cycle).
    let bin_edges: BTreeSet<(String, String)> = edges(&bin, Some(&lib))
        .into_iter()
        .filter(|(_, b)| !b.starts_with("lib:"))
        .collect();
    for c in cycles(&bin_edges) {
        found.push(c.iter().map(|m| short(&bin, m, &src)).collect());
    }
    for c in &mut found {
        c.sort();
    }
    found.sort();
    found.dedup();
    let known: Vec<Vec<String>> = KNOWN
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let new: Vec<&Vec<String>> = found.iter().filter(|c| !known.contains(c)).collect();
    let gone: Vec<&Vec<String>> = known.iter().filter(|c| !found.contains(c)).collect();
    let mut ties = String::new();
    for c in &new {
        for (a, b) in lib_edges.iter().chain(&folders) {
            let (sa, sb) = if lib.contains_key(a) && lib.contains_key(b) {
                (short(&lib, a, &src), short(&lib, b, &src))
            } else {
                (a.clone(), b.clone())
            };
            if c.contains(&sa) && c.contains(&sb) {
                ties.push_str(&format!("  {sa} -> {sb}\n"));
            }
        }
    }
    assert!(
        new.is_empty() && gone.is_empty(),
        "import cycles changed.\nnew (remove them): {new:#?}\nwhat ties them:\n{ties}gone (take them off KNOWN): {gone:#?}"
    );
    // The reader sees the crate: a sanity check that edges were found at all.
    assert!(lib_edges.len() > 50, "only {} edges read", lib_edges.len());
}

#[test]
fn the_top_of_src_holds_only_the_roots_error_span_and_sme() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_file() && name.ends_with(".rs") && !TOP_FILES.contains(&name.as_str()) {
            stray.push(name);
        }
    }
    stray.sort();
    assert!(
        stray.is_empty(),
        "top-level files outside a phase's folder: {stray:?} (allowed: {TOP_FILES:?} and error/)"
    );
    // Every folder with Rust files is a module of the library or of the binary.
    let lib = modules(&src.join("lib.rs"));
    let bin = modules(&src.join("main.rs"));
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() && path.join("mod.rs").exists() {
            let m = path.join("mod.rs");
            assert!(
                lib.values().chain(bin.values()).any(|f| *f == m),
                "{} is not declared as a module",
                path.display()
            );
        }
    }
}

/// The paths into the phases' insides: `smelt::internals` and the hidden modules.
const INSIDES: &[&str] = &[
    "smelt::internals",
    "smelt::algebra",
    "smelt::derive::",
    "smelt::ir::",
    "smelt::numeric",
    "smelt::sim::",
    "smelt::simplify",
    "smelt::span::",
    "smelt::syntax",
];

#[test]
fn the_binary_and_the_api_test_use_only_the_curated_surface() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("src/main.rs"), root.join("tests/api.rs")];
    for entry in std::fs::read_dir(root.join("src/cli")).expect("src/cli") {
        files.push(entry.expect("entry").path());
    }
    let mut found = Vec::new();
    for f in &files {
        let code = strip(&std::fs::read_to_string(f).expect("readable"));
        for inside in INSIDES {
            if code.contains(inside) {
                found.push(format!("{}: {inside}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the binary and tests/api.rs must use only what src/lib.rs re-exports:\n{}",
        found.join("\n")
    );
}

/// The Rust files under a folder, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_public_function_fails_with_a_bare_string() {
    // One error type for every phase: a `pub fn` returns `crate::Error` (or a module's
    // typed error), never `Result<_, String>`; private helpers may, converted at the
    // boundary. The binary (src/cli) is not the library and is not read.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(src.join("cli"))) {
        let code = strip(&std::fs::read_to_string(f).expect("readable"));
        let mut rest = code.as_str();
        while let Some(at) = rest.find("pub fn ") {
            let sig = &rest[at..];
            let end = sig.find(['{', ';']).unwrap_or(sig.len());
            let sig = &sig[..end];
            if let Some(ret) = sig.split("->").nth(1) {
                let ret: String = ret.split_whitespace().collect();
                if ret.starts_with("Result<") && ret.ends_with(",String>") {
                    let name = sig["pub fn ".len()..]
                        .split(['(', '<'])
                        .next()
                        .unwrap_or("");
                    found.push(format!(
                        "{}: {name}",
                        f.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
            rest = &rest[at + "pub fn ".len()..];
        }
    }
    assert!(
        found.is_empty(),
        "public functions returning Result<_, String>:\n{}",
        found.join("\n")
    );
}
