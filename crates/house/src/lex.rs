//! The tokenizer the house checks read Rust sources with: identifiers,
//! punctuation and string literals with their line numbers, comments
//! dropped. It is not a Rust lexer, only enough of one to find module
//! declarations, `use` trees and paths without being fooled by text in
//! comments, strings or character literals.

/// One token of a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// An identifier or keyword (`r#` prefix removed).
    Ident(String),
    /// `::`
    PathSep,
    /// A string literal's contents (escapes left as written).
    Str(String),
    /// Any other punctuation character.
    Punct(char),
}

/// A token and the 1-based line it starts on.
#[derive(Clone, Debug)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its line.
    pub line: usize,
}

impl Token {
    /// Whether this is the identifier `s`.
    pub fn is_ident(&self, s: &str) -> bool {
        matches!(&self.tok, Tok::Ident(i) if i == s)
    }

    /// Whether this is the punctuation `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }

    /// The identifier, if this is one.
    pub fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(i) => Some(i),
            _ => None,
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits `src` into tokens. Numbers are skipped; an unterminated literal
/// or comment ends the file quietly (the compiler reports those).
pub fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let n = chars.len();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < n {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < n {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => {
                let start_line = line;
                let (s, next, lines) = quoted(&chars, i + 1);
                out.push(Token { tok: Tok::Str(s), line: start_line });
                line += lines;
                i = next;
            }
            'r' | 'b' if raw_string_start(&chars, i).is_some() => {
                let (hashes, open) = raw_string_start(&chars, i).unwrap_or((0, i));
                let start_line = line;
                let mut j = open + 1;
                let mut s = String::new();
                while j < n {
                    if chars[j] == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#') {
                        break;
                    }
                    if chars[j] == '\n' {
                        line += 1;
                    }
                    s.push(chars[j]);
                    j += 1;
                }
                out.push(Token { tok: Tok::Str(s), line: start_line });
                i = j + 1 + hashes;
            }
            'b' if at(i + 1) == '"' => {
                let start_line = line;
                let (s, next, lines) = quoted(&chars, i + 2);
                out.push(Token { tok: Tok::Str(s), line: start_line });
                line += lines;
                i = next;
            }
            'b' if at(i + 1) == '\'' => i = char_literal_end(&chars, i + 1).unwrap_or(i + 2),
            '\'' => match char_literal_end(&chars, i) {
                Some(end) => i = end,
                // A lifetime or label: skip the quote, the name follows.
                None => i += 1,
            },
            c if c.is_ascii_digit() => {
                while i < n && (is_ident_char(chars[i]) || chars[i] == '.' && at(i + 1).is_ascii_digit()) {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let mut j = i;
                if c == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
                    j = i + 2;
                }
                let start = j;
                while j < n && is_ident_char(chars[j]) {
                    j += 1;
                }
                out.push(Token { tok: Tok::Ident(chars[start..j].iter().collect()), line });
                i = j;
            }
            ':' if at(i + 1) == ':' => {
                out.push(Token { tok: Tok::PathSep, line });
                i += 2;
            }
            c => {
                out.push(Token { tok: Tok::Punct(c), line });
                i += 1;
            }
        }
    }
    out
}

/// Reads a `"`-quoted body starting after the quote: (contents, index
/// after the closing quote, newlines inside).
fn quoted(chars: &[char], mut i: usize) -> (String, usize, usize) {
    let mut s = String::new();
    let mut lines = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                s.push('\\');
                if let Some(&e) = chars.get(i + 1) {
                    s.push(e);
                    if e == '\n' {
                        lines += 1;
                    }
                }
                i += 2;
            }
            '"' => return (s, i + 1, lines),
            c => {
                if c == '\n' {
                    lines += 1;
                }
                s.push(c);
                i += 1;
            }
        }
    }
    (s, i, lines)
}

/// At `r"`, `r#"`, `br"`, `br#"`: (number of hashes, index of the quote).
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j))
}

/// At a `'`: the index after the character literal, or None when this is
/// a lifetime or label.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1) {
        Some('\\') => {
            let mut j = i + 2;
            while j < chars.len() && j < i + 12 {
                if chars[j] == '\'' {
                    return Some(j + 1);
                }
                j += 1;
            }
            None
        }
        Some(_) if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        tokenize(src).into_iter().filter_map(|t| t.ident().map(str::to_owned)).collect()
    }

    #[test]
    fn comments_strings_and_chars_hide_their_words() {
        let src = "a // crate::x\n/* b /* nested */ c */ d \"crate::y\" 'e' '\\'' f<'g> r#\"h\"# i";
        assert_eq!(idents(src), ["a", "d", "f", "g", "i"]);
    }

    #[test]
    fn lines_count_through_multi_line_literals() {
        let toks = tokenize("a\n\"x\ny\"\nb");
        let b = toks.iter().find(|t| t.is_ident("b")).map(|t| t.line);
        assert_eq!(b, Some(4));
    }

    #[test]
    fn paths_keep_their_separators() {
        let toks = tokenize("crate::core::raft");
        assert_eq!(toks.len(), 5);
        assert_eq!(toks[1].tok, Tok::PathSep);
    }
}
