//! Scenario files: parsing into command blocks, running them, comparing the
//! trace with the expected one, printing a diff, and rewriting expectations.

use super::commands::Env;

/// One command and what it is expected to print.
#[derive(Clone, Debug)]
pub struct Block {
    /// Comment and blank lines before the command, kept for rewriting.
    pub preamble: Vec<String>,
    /// 1-based line number of the command.
    pub line: usize,
    pub command: String,
    pub expected: Vec<String>,
}

/// A parsed scenario file.
#[derive(Clone, Debug)]
pub struct Script {
    pub blocks: Vec<Block>,
    /// Comment and blank lines after the last block.
    pub trailer: Vec<String>,
}

/// Parses `text`: `#` comments, then blocks of `command`, `----`, expected
/// lines up to a blank line.
///
/// # Errors
/// A command not followed by `----`, or a file with no command.
pub fn parse(text: &str) -> Result<Script, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut preamble = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            preamble.push(line.to_string());
            i += 1;
            continue;
        }
        if lines.get(i + 1).map(|l| l.trim_end()) != Some("----") {
            return Err(format!("line {}: command {line:?} must be followed by a `----` line", i + 1));
        }
        let (command, line_no) = (line.to_string(), i + 1);
        i += 2;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim_end().is_empty() {
            expected.push(lines[i].trim_end().to_string());
            i += 1;
        }
        // The blank line that ends the block belongs to it.
        i += 1;
        blocks.push(Block { preamble: std::mem::take(&mut preamble), line: line_no, command, expected });
    }
    if blocks.is_empty() {
        return Err("no command in the file".into());
    }
    Ok(Script { blocks, trailer: preamble })
}

/// Runs every command of `script` on a fresh environment; returns each
/// command's trace.
pub fn run(script: &Script) -> Vec<Vec<String>> {
    let mut env = Env::default();
    script.blocks.iter().map(|b| env.run(&b.command)).collect()
}

/// Compares expected and actual traces; returns a readable report of every
/// block that differs, or `None` when all match.
pub fn compare(name: &str, script: &Script, actual: &[Vec<String>]) -> Option<String> {
    let mut report = String::new();
    for (b, got) in script.blocks.iter().zip(actual) {
        if b.expected != *got {
            report.push_str(&format!("--- {name}:{} `{}`\n", b.line, b.command));
            for l in diff(&b.expected, got) {
                report.push_str(&l);
                report.push('\n');
            }
        }
    }
    if report.is_empty() {
        None
    } else {
        Some(report)
    }
}

/// The file text with every expected section replaced by `actual`.
pub fn rewrite(script: &Script, actual: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (b, got) in script.blocks.iter().zip(actual) {
        for p in &b.preamble {
            out.push_str(p);
            out.push('\n');
        }
        out.push_str(&b.command);
        out.push_str("\n----\n");
        for l in got {
            out.push_str(l);
            out.push('\n');
        }
        out.push('\n');
    }
    for t in &script.trailer {
        out.push_str(t);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A line diff (longest common subsequence): `  same`, `- expected`,
/// `+ actual`.
pub fn diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out.push(format!("  {}", expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", actual[j]));
            j += 1;
        } else {
            out.push(format!("- {}", expected[i]));
            i += 1;
        }
    }
    out
}
