//! The workspace as the compiler sees it, read from text: which files
//! are crate roots (from every `Cargo.toml`), the module tree each crate
//! builds from its `mod` declarations (`#[path]` included), what each
//! module declares and imports, and every path a file names that starts
//! with `crate`, `super`, `self`, a child module, an imported name or a
//! sibling crate. `resolve` turns such a path into the file that defines
//! what it names, following re-exports, so a type re-exported by a
//! `mod.rs` counts as an edge to the file that defines it.
//!
//! Not seen, as a text reader cannot: a macro called by its name (no path)
//! makes no edge, and a method is attributed to its type's file, not to the
//! file of the `impl` block that defines it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::lex::{tokenize, Tok, Token};

/// One `use` binding: `name` stands for `path` (as written, relative to
/// the module it was written in). A glob import has the name `*`.
#[derive(Clone, Debug)]
pub struct Import {
    /// The name it binds, or `*`.
    pub name: String,
    /// The path as written.
    pub path: Vec<String>,
}

/// A module: the file it lives in and what it declares and imports.
#[derive(Default, Debug)]
pub struct Module {
    /// Workspace-relative path of its file.
    pub file: String,
    /// Names of its child modules.
    pub children: HashSet<String>,
    /// Names of the items it defines (structs, functions, ...).
    pub defines: HashSet<String>,
    /// Its `use` bindings.
    pub imports: Vec<Import>,
}

/// A path named in a file.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The crate it was written in (index into `Workspace::crates`).
    pub krate: usize,
    /// The module it was written in.
    pub module: Vec<String>,
    /// The file and line.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The path as written.
    pub path: Vec<String>,
}

/// One crate: its package and module tree.
#[derive(Default, Debug)]
pub struct Crate {
    /// The package (`ringraft_tools`: the name with `_` for `-`) whose
    /// manifest names this crate.
    pub package: String,
    /// Every module, by path from the crate root.
    pub modules: HashMap<Vec<String>, Module>,
}

/// Every crate of the workspace and the paths their files name.
#[derive(Default)]
pub struct Workspace {
    /// The crates.
    pub crates: Vec<Crate>,
    /// Library crates by the name other crates use (`ringraft_proto`).
    pub libs: HashMap<String, usize>,
    /// Every path named, in every crate.
    pub refs: Vec<Reference>,
    /// Every source file any crate compiles.
    pub compiled: BTreeSet<String>,
}

/// What a manifest says about its package's targets.
struct Manifest {
    package: String,
    lib_name: Option<String>,
    lib_root: Option<PathBuf>,
    roots: Vec<PathBuf>,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    out.extend(v.into_iter().filter(|p| p.extension().is_some_and(|x| x == "rs")));
}

/// Reads the parts of a `Cargo.toml` this tool needs, without a TOML
/// parser: the package name, `[lib]`, `[[bin]]`/`[[test]]`/`[[bench]]`
/// paths and the `auto*` switches.
fn read_manifest(dir: &Path, text: &str) -> Option<Manifest> {
    let mut section = String::new();
    let mut name = None;
    let mut lib_name = None;
    let mut lib_path = None;
    let mut paths = Vec::new();
    let mut auto: HashMap<&str, bool> = HashMap::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        match (section.as_str(), k) {
            ("package", "name") => name = Some(v.replace('-', "_")),
            ("package", "autobins") => drop(auto.insert("bins", v == "true")),
            ("package", "autotests") => drop(auto.insert("tests", v == "true")),
            ("package", "autobenches") => drop(auto.insert("benches", v == "true")),
            ("lib", "name") => lib_name = Some(v.replace('-', "_")),
            ("lib", "path") => lib_path = Some(dir.join(v)),
            ("bin" | "test" | "bench" | "example", "path") => paths.push(dir.join(v)),
            _ => {}
        }
    }
    let name = name?;
    let package = name.clone();
    let lib_root = lib_path.or_else(|| Some(dir.join("src/lib.rs")).filter(|p| p.exists()));
    let mut roots = paths;
    if dir.join("src/main.rs").exists() {
        roots.push(dir.join("src/main.rs"));
    }
    if *auto.get("bins").unwrap_or(&true) {
        rs_files(&dir.join("src/bin"), &mut roots);
    }
    if *auto.get("tests").unwrap_or(&true) {
        rs_files(&dir.join("tests"), &mut roots);
    }
    if *auto.get("benches").unwrap_or(&true) {
        rs_files(&dir.join("benches"), &mut roots);
    }
    let lib_name = lib_root.as_ref().map(|_| lib_name.unwrap_or(name));
    roots.sort();
    roots.dedup();
    Some(Manifest { package, lib_name, lib_root, roots })
}

/// Every file under `root` whose name `want` accepts, sorted, skipping
/// `target`, hidden folders and fuzz corpora and artifacts.
pub fn walk(root: &Path, want: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let n = e.file_name().to_string_lossy().into_owned();
            // A symbolic link to a folder is not followed (no loops).
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if !matches!(n.as_str(), "target" | "corpus" | "artifacts") && !n.starts_with('.') {
                    stack.push(p);
                }
            } else if want(&n) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Workspace-relative, `/`-separated form of `p`, with `.` and `..`
/// worked out (a `#[path = "../x.rs"]` names the file it reaches).
pub fn rel(root: &Path, p: &Path) -> String {
    let raw = p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The name a file goes by in the import graph: `x.rs` beside a folder
/// `x/` holds the module whose children live in `x/`, so it stands where
/// that folder's `mod.rs` would (its cycles with its children are the
/// same fault as a `mod.rs`'s).
pub fn graph_name(root: &Path, file: &str) -> String {
    match file.strip_suffix(".rs") {
        Some(stem) if !file.ends_with("/mod.rs") && root.join(stem).is_dir() => format!("{stem}/mod.rs"),
        _ => file.to_string(),
    }
}

impl Workspace {
    /// Reads every crate under `root`.
    pub fn load(root: &Path) -> Workspace {
        let mut ws = Workspace::default();
        let mut roots: Vec<(PathBuf, Option<String>, String)> = Vec::new();
        for m in walk(root, |n| n == "Cargo.toml") {
            let dir = m.parent().unwrap_or(root);
            let Ok(text) = std::fs::read_to_string(&m) else { continue };
            let Some(man) = read_manifest(dir, &text) else { continue };
            if let (Some(lib), Some(name)) = (man.lib_root, man.lib_name) {
                roots.push((lib, Some(name), man.package.clone()));
            }
            roots.extend(man.roots.into_iter().map(|r| (r, None, man.package.clone())));
        }
        for (path, lib_name, package) in roots {
            if !path.exists() {
                continue;
            }
            let idx = ws.crates.len();
            ws.crates.push(Crate { package, modules: HashMap::new() });
            if let Some(name) = lib_name {
                ws.libs.insert(name, idx);
            }
            ws.load_crate(root, idx, path);
        }
        ws
    }

    fn load_crate(&mut self, root: &Path, krate: usize, root_file: PathBuf) {
        // (module path, file, whether the file is a crate root or mod.rs)
        let mut work = vec![(Vec::<String>::new(), root_file, true)];
        while let Some((module, file, owns_dir)) = work.pop() {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            let rel_file = rel(root, &file);
            self.compiled.insert(rel_file.clone());
            let toks = tokenize(&text);
            let children = FileReader::new(self, krate, &rel_file, module.clone()).read(&toks);
            let dir = if owns_dir {
                file.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                file.with_extension("")
            };
            for (inline, name, path_attr) in children {
                let mut child = module.clone();
                child.extend(inline.iter().cloned());
                child.push(name.clone());
                let base = inline.iter().fold(dir.clone(), |d, m| d.join(m));
                let (child_file, child_owns) = match path_attr {
                    Some(p) => {
                        let f = file.parent().unwrap_or(root).join(p);
                        let owns = f.file_name().is_some_and(|n| n == "mod.rs");
                        (f, owns)
                    }
                    None if base.join(format!("{name}.rs")).exists() => (base.join(format!("{name}.rs")), false),
                    None => (base.join(&name).join("mod.rs"), true),
                };
                work.push((child, child_file, child_owns));
            }
        }
    }
}

/// Reads one file of one crate: registers its modules, and collects its
/// references; returns the out-of-line child modules it declares as
/// (inline module path within the file, name, `#[path]` value).
struct FileReader<'a> {
    ws: &'a mut Workspace,
    krate: usize,
    file: &'a str,
    base: Vec<String>,
}

type ChildDecl = (Vec<String>, String, Option<String>);

const ITEM_KEYWORDS: [&str; 9] = ["struct", "enum", "fn", "trait", "type", "const", "static", "union", "macro_rules"];

impl<'a> FileReader<'a> {
    fn new(ws: &'a mut Workspace, krate: usize, file: &'a str, base: Vec<String>) -> Self {
        FileReader { ws, krate, file, base }
    }

    fn module_mut(&mut self, inline: &[String]) -> &mut Module {
        let mut path = self.base.clone();
        path.extend(inline.iter().cloned());
        let file = self.file.to_string();
        self.ws.crates[self.krate].modules.entry(path).or_insert_with(|| Module { file, ..Module::default() })
    }

    fn read(mut self, toks: &[Token]) -> Vec<ChildDecl> {
        let mut children = Vec::new();
        // Inline modules open: (name, brace depth inside it).
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut path_attr: Option<String> = None;
        self.module_mut(&[]);
        let mut i = 0;
        while i < toks.len() {
            let names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
            // Items directly in the module (not in a function, an impl or
            // a block) are its own: what it defines and imports.
            let at_module_level = depth == inline.last().map_or(0, |(_, d)| *d);
            let prev = |k: usize| i.checked_sub(k).and_then(|j| toks.get(j));
            let t = &toks[i];
            if t.is_punct('#') && toks.get(i + 1).is_some_and(|t| t.is_punct('[')) {
                if toks.get(i + 2).is_some_and(|t| t.is_ident("path")) {
                    if let Some(Tok::Str(s)) = toks.get(i + 4).map(|t| &t.tok) {
                        path_attr = Some(s.clone());
                    }
                }
            } else if t.is_punct('{') {
                depth += 1;
            } else if t.is_punct('}') {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            } else if t.is_ident("mod") {
                if let Some(name) = toks.get(i + 1).and_then(Token::ident) {
                    let name = name.to_string();
                    self.module_mut(&names).children.insert(name.clone());
                    match toks.get(i + 2) {
                        Some(t) if t.is_punct(';') => children.push((names.clone(), name, path_attr.take())),
                        Some(t) if t.is_punct('{') => {
                            depth += 1;
                            inline.push((name.clone(), depth));
                            let mut inner = names.clone();
                            inner.push(name);
                            self.module_mut(&inner);
                            path_attr = None;
                            i += 3;
                            continue;
                        }
                        _ => {}
                    }
                    i += 2;
                    continue;
                }
            } else if t.is_ident("use")
                && !prev(1).is_some_and(|p| p.is_punct('$'))
                // `use<'a>` (precise capturing in a signature) is no import.
                && !toks.get(i + 1).is_some_and(|n| n.is_punct('<'))
            {
                let end = toks[i..].iter().position(|t| t.is_punct(';')).map_or(toks.len(), |p| i + p);
                let mut imports = Vec::new();
                use_tree(&toks[i + 1..end], &mut Vec::new(), &mut imports);
                for (imp, line) in imports {
                    self.push_ref(&names, line, imp.path.clone());
                    if at_module_level {
                        self.module_mut(&names).imports.push(imp);
                    }
                }
                i = end + 1;
                continue;
            } else if let Some(kw) = t.ident().filter(|k| ITEM_KEYWORDS.contains(k)) {
                let skip = if kw == "macro_rules" { 2 } else { 1 };
                if let Some(name) = toks.get(i + skip).and_then(Token::ident).filter(|_| at_module_level) {
                    let name = name.to_string();
                    self.module_mut(&names).defines.insert(name);
                }
            } else if t.ident().is_some()
                && toks.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep)
                && path_starts_here(prev(1), prev(2))
            {
                let mut path = Vec::new();
                let mut j = i;
                while let Some(seg) = toks.get(j).and_then(Token::ident) {
                    path.push(seg.to_string());
                    if toks.get(j + 1).is_some_and(|t| t.tok == Tok::PathSep) {
                        j += 2;
                    } else {
                        break;
                    }
                }
                self.push_ref(&names, t.line, path);
                i = j + 1;
                continue;
            }
            i += 1;
        }
        children
    }

    fn push_ref(&mut self, inline: &[String], line: usize, path: Vec<String>) {
        let mut module = self.base.clone();
        module.extend(inline.iter().cloned());
        self.ws.refs.push(Reference { krate: self.krate, module, file: self.file.to_string(), line, path });
    }
}

/// Whether an identifier followed by `::` starts a path, given the two
/// tokens before it: not after `$` (`$crate`), not inside a path, but after
/// a leading `::` (`::ringraft::x`), and not the path of `pub(in path)`.
fn path_starts_here(prev: Option<&Token>, prev2: Option<&Token>) -> bool {
    match prev {
        Some(p) if p.is_punct('$') => false,
        Some(p) if p.is_ident("in") => !prev2.is_some_and(|q| q.is_punct('(')),
        Some(p) if p.tok == Tok::PathSep => {
            !prev2.is_some_and(|q| matches!(q.tok, Tok::Ident(_)) || q.is_punct('>') || q.is_punct(')'))
        }
        _ => true,
    }
}

/// Flattens a `use` tree (the tokens between `use` and `;`) into
/// bindings with their lines.
fn use_tree(toks: &[Token], prefix: &mut Vec<String>, out: &mut Vec<(Import, usize)>) {
    // Skip a visibility qualifier: `pub`, `pub(crate)`, `pub(super)`, ...
    let mut i = 0;
    let mut depth = 0;
    let mut start = prefix.len();
    let mut line;
    while i < toks.len() {
        let t = &toks[i];
        match &t.tok {
            Tok::Ident(s) if s == "as" => {
                if let Some(alias) = toks.get(i + 1).and_then(Token::ident) {
                    if let Some(last) = out.last_mut() {
                        last.0.name = alias.to_string();
                    }
                }
                i += 2;
                continue;
            }
            Tok::Ident(s) => {
                prefix.truncate(start);
                prefix.push(s.clone());
                line = t.line;
                // Read the rest of this path.
                let mut j = i + 1;
                while toks.get(j).is_some_and(|t| t.tok == Tok::PathSep) {
                    match toks.get(j + 1).map(|t| &t.tok) {
                        Some(Tok::Ident(s)) => {
                            prefix.push(s.clone());
                            j += 2;
                        }
                        Some(Tok::Punct('{')) => {
                            let Some(close) = matching_brace(toks, j + 1) else { return };
                            let inner_start = prefix.len();
                            for part in split_commas(&toks[j + 2..close]) {
                                use_tree(part, prefix, out);
                                prefix.truncate(inner_start);
                            }
                            j = close + 1;
                            prefix.truncate(start);
                            break;
                        }
                        Some(Tok::Punct('*')) => {
                            out.push((Import { name: "*".into(), path: prefix.clone() }, line));
                            j += 2;
                            prefix.truncate(start);
                            break;
                        }
                        _ => break,
                    }
                }
                if prefix.len() > start {
                    let mut path = prefix.clone();
                    let mut name = path.last().cloned().unwrap_or_default();
                    if name == "self" {
                        path.pop();
                        name = path.last().cloned().unwrap_or_default();
                    }
                    out.push((Import { name, path }, line));
                    prefix.truncate(start);
                }
                i = j;
                continue;
            }
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            Tok::Punct('{') if depth == 0 => {
                let Some(close) = matching_brace(toks, i) else { return };
                for part in split_commas(&toks[i + 1..close]) {
                    use_tree(part, prefix, out);
                }
                i = close + 1;
                start = prefix.len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The `}` closing the `{` at `open`, if the tokens hold it.
fn matching_brace(toks: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if t.is_punct('{') {
            depth += 1;
        } else if t.is_punct('}') {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

fn split_commas(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (k, t) in toks.iter().enumerate() {
        if t.is_punct('{') {
            depth += 1;
        } else if t.is_punct('}') {
            depth -= 1;
        } else if t.is_punct(',') && depth == 0 {
            parts.push(&toks[start..k]);
            start = k + 1;
        }
    }
    if start < toks.len() {
        parts.push(&toks[start..]);
    }
    parts
}

/// The crate and absolute module path a written path names, or None when
/// it names something outside the workspace (std, a dependency) or a
/// local item.
pub fn absolutize(
    ws: &Workspace,
    krate: usize,
    module: &[String],
    path: &[String],
    hops: u32,
) -> Option<(usize, Vec<String>)> {
    let first = path.first()?;
    let rest = &path[1..];
    match first.as_str() {
        "crate" => Some((krate, rest.to_vec())),
        "self" => Some((krate, [module, rest].concat())),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let keep = module.len().checked_sub(ups)?;
            Some((krate, [&module[..keep], &path[ups..]].concat()))
        }
        name => {
            let m = ws.crates[krate].modules.get(module);
            if m.is_some_and(|m| m.children.contains(name)) {
                return Some((krate, [module, path].concat()));
            }
            if hops < 8 {
                let named = |i: &&Import| i.name == name && (i.path.len() > 1 || ws.libs.contains_key(&i.path[0]));
                if let Some(imp) = m.and_then(|m| m.imports.iter().find(named)) {
                    let (k, mut abs) = absolutize(ws, krate, module, &imp.path, hops + 1)?;
                    abs.extend(rest.iter().cloned());
                    return Some((k, abs));
                }
            }
            if let Some(&lib) = ws.libs.get(name).filter(|&&lib| lib != krate) {
                return Some((lib, rest.to_vec()));
            }
            // A name a glob import (`use super::*;`) brings in.
            for glob in m.into_iter().flat_map(|m| m.imports.iter()).filter(|i| i.name == "*") {
                if hops >= 8 {
                    break;
                }
                let Some((k, base)) = absolutize(ws, krate, module, &glob.path, hops + 1) else { continue };
                let Some(g) = ws.crates[k].modules.get(&base) else { continue };
                if g.children.contains(name) || g.defines.contains(name) {
                    return Some((k, [&base[..], path].concat()));
                }
                if g.imports.iter().any(|i| i.name == name) {
                    return absolutize(ws, k, &base, path, hops + 1);
                }
            }
            None
        }
    }
}

/// The file that defines what the absolute `path` in crate `krate` names,
/// and the crate it is in, following `use` re-exports (globs included).
pub fn resolve(ws: &Workspace, krate: usize, path: &[String], hops: u32) -> Option<(String, usize)> {
    let c = &ws.crates[krate];
    let k = (0..=path.len()).rev().find(|k| c.modules.contains_key(&path[..*k]))?;
    let m = &c.modules[&path[..k]];
    if k == path.len() || hops >= 8 {
        return Some((m.file.clone(), krate));
    }
    let name = &path[k];
    if name == "*" || m.defines.contains(name) {
        return Some((m.file.clone(), krate));
    }
    let module = path[..k].to_vec();
    if let Some(imp) = m.imports.iter().find(|i| &i.name == name && i.path.len() > 1) {
        if let Some((k2, mut abs)) = absolutize(ws, krate, &module, &imp.path, hops + 1) {
            abs.extend(path[k + 1..].iter().cloned());
            return resolve(ws, k2, &abs, hops + 1).or(Some((m.file.clone(), krate)));
        }
        return Some((m.file.clone(), krate));
    }
    for glob in m.imports.iter().filter(|i| i.name == "*") {
        let Some((k2, base)) = absolutize(ws, krate, &module, &glob.path, hops + 1) else { continue };
        let Some(g) = ws.crates[k2].modules.get(&base) else { continue };
        if g.defines.contains(name) || g.children.contains(name) || g.imports.iter().any(|i| &i.name == name) {
            let mut abs = base.clone();
            abs.extend(path[k..].iter().cloned());
            return resolve(ws, k2, &abs, hops + 1);
        }
    }
    Some((m.file.clone(), krate))
}

/// One edge of the import graph: `from` names something defined in `to`.
#[derive(Clone, Debug)]
pub struct Edge {
    /// The package of the naming file.
    pub from_package: String,
    /// The package of the defining file.
    pub to_package: String,
    /// The naming file.
    pub from: String,
    /// The defining file.
    pub to: String,
    /// Where, as `file:line`, and the path as written.
    pub evidence: String,
}

/// Every edge between two different files.
pub fn edges(root: &Path, ws: &Workspace) -> Vec<Edge> {
    let mut seen: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for r in &ws.refs {
        let Some((k, abs)) = absolutize(ws, r.krate, &r.module, &r.path, 0) else { continue };
        let Some((to, to_krate)) = resolve(ws, k, &abs, 0) else { continue };
        if to == r.file {
            continue;
        }
        let (from, to) = (graph_name(root, &r.file), graph_name(root, &to));
        seen.entry((from.clone(), to.clone())).or_insert_with(|| Edge {
            from_package: ws.crates[r.krate].package.clone(),
            to_package: ws.crates[to_krate].package.clone(),
            from,
            to,
            evidence: format!("{}:{} `{}`", r.file, r.line, r.path.join("::")),
        });
    }
    seen.into_values().collect()
}
