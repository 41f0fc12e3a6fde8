//! Plants each kind of violation in a small scratch workspace and checks
//! that `ringraft-house` names it, and that the clean workspace passes:
//! a cycle made only by a path expression (no `use` line), a cycle
//! through a `mod.rs`'s own type, a re-export that must not count as a
//! cycle, a cycle between crates' folders, an oversize file, a file without
//! a header, a file no crate compiles and a direct file-system call.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ringraft-house-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
        self
    }

    fn check(&self) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ringraft-house")).arg(&self.0).output().expect("run ringraft-house");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-crate workspace: `core/` with a mod.rs that only re-exports, and
/// `stage/` that uses core.
fn clean(name: &str) -> Scratch {
    let s = Scratch::new(name);
    s.write("Cargo.toml", "[package]\nname = \"demo\"\nversion = \"0.1.0\"\n")
        .write("src/lib.rs", "//! Root.\npub mod core;\npub mod stage;\n")
        .write("src/core/mod.rs", "//! Core.\nmod a;\nmod b;\npub use a::Alpha;\npub use b::Beta;\n")
        .write("src/core/a.rs", "//! A.\npub struct Alpha;\n")
        .write("src/core/b.rs", "//! B.\nuse super::Alpha;\npub struct Beta(pub Alpha);\n")
        .write("src/stage/mod.rs", "//! Stage.\npub fn run() { let _ = crate::core::Beta(crate::core::Alpha); }\n");
    s
}

fn assert_clean(s: &Scratch) {
    let (ok, out) = s.check();
    assert!(ok, "the clean workspace fails:\n{out}");
    assert!(out.contains("all rules hold"), "{out}");
}

#[test]
fn a_clean_workspace_passes_and_a_re_export_is_not_a_cycle() {
    // b.rs names `super::Alpha`, which mod.rs re-exports from a.rs: the
    // edge goes to a.rs, so mod.rs -> b.rs is no cycle.
    assert_clean(&clean("clean"));
}

#[test]
fn a_cycle_made_by_a_path_expression_alone_is_found() {
    let s = clean("expr");
    assert_clean(&s);
    s.write("src/core/a.rs", "//! A.\npub struct Alpha;\npub fn f() { crate::stage::run() }\n");
    let (ok, out) = s.check();
    assert!(!ok, "{out}");
    assert!(out.contains("import cycle in src/ among {core, stage}"), "{out}");
    assert!(out.contains("src/core/a.rs:3 `crate::stage::run`"), "{out}");
}

#[test]
fn a_child_naming_a_type_its_mod_rs_defines_is_a_cycle() {
    let s = clean("modrs");
    s.write("src/core/mod.rs", "//! Core.\nmod a;\nmod b;\npub use a::Alpha;\npub use b::Beta;\npub struct Gamma;\n")
        .write("src/core/a.rs", "//! A.\npub struct Alpha(pub super::Gamma);\n");
    let (ok, out) = s.check();
    assert!(!ok, "{out}");
    assert!(out.contains("import cycle in src/core/ among {a.rs, b.rs, mod.rs}"), "{out}");
    assert!(out.contains("a.rs -> mod.rs   (src/core/a.rs:2 `super::Gamma`)"), "{out}");
}

#[test]
fn a_cycle_between_two_crates_folders_is_found() {
    let s = clean("crates");
    s.write("Cargo.toml", "[workspace]\nmembers = [\"x\", \"y\"]\n")
        .write("x/Cargo.toml", "[package]\nname = \"x-crate\"\nversion = \"0.1.0\"\n")
        .write("x/src/lib.rs", "//! X.\npub fn f() { y_crate::g() }\n")
        .write("y/Cargo.toml", "[package]\nname = \"y-crate\"\nversion = \"0.1.0\"\n")
        .write("y/src/lib.rs", "//! Y.\npub fn g() {}\n#[cfg(test)]\nmod tests { fn h() { x_crate::f() } }\n");
    let (ok, out) = s.check();
    assert!(!ok, "{out}");
    assert!(out.contains("import cycle in (packages) among {x_crate, y_crate}"), "{out}");
}

#[test]
fn file_rules_name_the_file() {
    let s = clean("files");
    let long: String =
        std::iter::once("//! Long.\n".to_string()).chain((0..1001).map(|i| format!("// {i}\n"))).collect();
    s.write("src/stage/mod.rs", "//! Stage.\nmod long;\nmod bare;\n")
        .write("src/stage/long.rs", &long)
        .write("src/stage/bare.rs", "pub fn f() {}\n")
        .write("src/stage/orphan.rs", "//! Nobody declares me.\n")
        .write("src/storage/mod.rs", "//! Storage.\npub fn f() { let _ = std::fs::read(\"x\"); }\n")
        .write("src/lib.rs", "//! Root.\npub mod core;\npub mod stage;\npub mod storage;\n");
    let (ok, out) = s.check();
    assert!(!ok, "{out}");
    for want in [
        "src/stage/long.rs: 1002 lines",
        "src/stage/bare.rs: does not open with a `//!` header",
        "src/stage/orphan.rs: no crate compiles it",
        "src/storage/mod.rs:2: pub fn f()",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn path_attributes_and_parent_dirs_are_followed() {
    let s = clean("pathattr");
    s.write("src/stage/mod.rs", "//! Stage.\n#[path = \"../shared/util.rs\"]\nmod util;\npub fn run() { util::f() }\n")
        .write("src/shared/util.rs", "//! Shared.\npub fn f() {}\n");
    assert_clean(&s);
    assert!(Path::new(&s.0).join("src/shared/util.rs").exists());
}

#[test]
fn a_cycle_through_a_glob_import_an_alias_or_a_leading_separator_is_found() {
    // A child brings its siblings in with `use super::*` and calls one.
    let s = clean("glob");
    s.write("src/core/a.rs", "//! A.\nuse super::*;\npub struct Alpha;\npub fn f() { b::g() }\n")
        .write("src/core/mod.rs", "//! Core.\nmod a;\nmod b;\npub use a::Alpha;\npub use b::Beta;\n")
        .write("src/core/b.rs", "//! B.\nuse super::Alpha;\npub struct Beta(pub Alpha);\npub fn g() {}\n");
    let (ok, out) = s.check();
    assert!(!ok, "{out}");
    assert!(out.contains("a.rs -> b.rs"), "{out}");

    // A sibling crate under another name, and a path with a leading `::`.
    for (name, call) in
        [("alias", "use y_crate as y;\npub fn f() { y::g() }"), ("leading", "pub fn f() { ::y_crate::g() }")]
    {
        let s = clean(name);
        s.write("Cargo.toml", "[workspace]\nmembers = [\"x\", \"y\"]\n")
            .write("x/Cargo.toml", "[package]\nname = \"x-crate\"\nversion = \"0.1.0\"\n")
            .write("x/src/lib.rs", &format!("//! X.\n{call}\n"))
            .write("y/Cargo.toml", "[package]\nname = \"y-crate\"\nversion = \"0.1.0\"\n")
            .write("y/src/lib.rs", "//! Y.\npub fn g() {}\n#[cfg(test)]\nmod tests { fn h() { x_crate::f() } }\n");
        let (ok, out) = s.check();
        assert!(!ok, "{name}: {out}");
        assert!(out.contains("import cycle in (packages) among {x_crate, y_crate}"), "{name}: {out}");
    }
}

#[test]
fn precise_capturing_and_a_method_named_like_a_re_export_fool_nothing() {
    let s = clean("odd");
    // `use<'a>` in a signature is no import; a method `Alpha` inside an
    // impl of mod.rs is not the re-exported `Alpha` (no false cycle).
    s.write(
        "src/core/mod.rs",
        "//! Core.\nmod a;\nmod b;\npub use a::Alpha;\npub use b::Beta;\npub struct S;\nimpl S {\n    \
         #[allow(non_snake_case)]\n    pub fn Alpha(&self) {}\n    pub fn it<'a>(&'a self) -> impl Sized + use<'a> { 0 }\n}\n",
    );
    assert_clean(&s);
}
