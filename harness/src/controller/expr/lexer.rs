//! Lexer: Go expr's `parser/lexer`, the user's text as tokens.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Identifier,
    Number,
    Str,
    Operator,
    Bracket,
    Eof,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) value: String,
    pub(super) line: usize,
    pub(super) column: usize,
}

impl Token {
    pub(super) fn is(&self, kind: Kind, value: &str) -> bool {
        self.kind == kind && self.value == value
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Identifier => "Identifier",
            Kind::Number => "Number",
            Kind::Str => "String",
            Kind::Operator => "Operator",
            Kind::Bracket => "Bracket",
            Kind::Eof => "EOF",
        };
        if self.value.is_empty() {
            f.write_str(kind)
        } else {
            write!(f, "{kind}({:?})", self.value)
        }
    }
}

pub(super) fn is_alpha(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

pub(super) fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_numeric()
}

pub(super) struct Lexer {
    pub(super) chars: Vec<char>,
    /// 1-based (line, column) of each char, plus one entry for the end of input.
    pub(super) at: Vec<(usize, usize)>,
    pub(super) tokens: Vec<Token>,
}

impl Lexer {
    pub(super) fn lex(src: &str) -> Result<Vec<Token>, ConditionError> {
        let chars: Vec<char> = src.chars().collect();
        let mut at = Vec::with_capacity(chars.len() + 1);
        let (mut line, mut column) = (1, 1);
        for &c in &chars {
            at.push((line, column));
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        at.push((line, column));
        let mut lexer = Lexer {
            chars,
            at,
            tokens: Vec::new(),
        };
        lexer.run()?;
        Ok(lexer.tokens)
    }

    pub(super) fn error(&self, i: usize, message: impl Into<String>) -> ConditionError {
        let (line, column) = self.at[i.min(self.chars.len())];
        ConditionError::Syntax {
            message: message.into(),
            line,
            column,
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    pub(super) fn push(
        &mut self,
        kind: Kind,
        start: usize,
        value: String,
    ) -> Result<(), ConditionError> {
        if self.tokens.len() >= MAX_TOKENS {
            return Err(ConditionError::Unsupported(format!(
                "condition is longer than {MAX_TOKENS} tokens"
            )));
        }
        let (line, column) = self.at[start];
        self.tokens.push(Token {
            kind,
            value,
            line,
            column,
        });
        Ok(())
    }

    pub(super) fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().collect()
    }

    pub(super) fn run(&mut self) -> Result<(), ConditionError> {
        let mut i = 0;
        while let Some(c) = self.get(i) {
            let start = i;
            match c {
                c if c.is_whitespace() => i += 1,
                '\'' | '"' => {
                    let (end, value) = self.string(i)?;
                    self.push(Kind::Str, start, value)?;
                    i = end;
                }
                '0'..='9' => i = self.number(start, start)?,
                '?' => {
                    i += 1;
                    if matches!(self.get(i), Some('.' | '?')) {
                        i += 1;
                    }
                    self.push(Kind::Operator, start, self.text(start, i))?;
                }
                '/' => match self.get(i + 1) {
                    Some('/') => {
                        while self.get(i).is_some_and(|c| c != '\n') {
                            i += 1;
                        }
                    }
                    Some('*') => {
                        i += 2;
                        loop {
                            match self.get(i) {
                                None => return Err(self.error(i, "unclosed comment")),
                                Some('*') if self.get(i + 1) == Some('/') => {
                                    i += 2;
                                    break;
                                }
                                Some(_) => i += 1,
                            }
                        }
                    }
                    _ => {
                        i += 1;
                        self.push(Kind::Operator, start, "/".to_string())?;
                    }
                },
                '#' => {
                    i += 1;
                    if self.get(i) == Some('#') {
                        i += 1;
                    }
                    self.push(Kind::Operator, start, self.text(start, i))?;
                    let name_start = i;
                    while self.get(i).is_some_and(is_alnum) {
                        i += 1;
                    }
                    if i > name_start {
                        self.push(Kind::Identifier, name_start, self.text(name_start, i))?;
                    }
                }
                '|' => {
                    i += 1;
                    if self.get(i) == Some('|') {
                        i += 1;
                    }
                    self.push(Kind::Operator, start, self.text(start, i))?;
                }
                '(' | '[' | '{' | ')' | ']' | '}' => {
                    i += 1;
                    self.push(Kind::Bracket, start, c.to_string())?;
                }
                ',' | ':' | ';' | '%' | '+' | '-' | '^' => {
                    i += 1;
                    self.push(Kind::Operator, start, c.to_string())?;
                }
                '&' | '!' | '=' | '*' | '<' | '>' => {
                    i += 1;
                    if matches!(self.get(i), Some('&' | '=' | '*')) {
                        i += 1;
                    }
                    self.push(Kind::Operator, start, self.text(start, i))?;
                }
                '.' => {
                    if self.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                        i = self.number(start, i + 1)?;
                    } else {
                        i += 1;
                        if self.get(i) == Some('.') {
                            i += 1;
                        }
                        self.push(Kind::Operator, start, self.text(start, i))?;
                    }
                }
                c if is_alpha(c) => {
                    while self.get(i).is_some_and(is_alnum) {
                        i += 1;
                    }
                    let word = self.text(start, i);
                    let kind = match word.as_str() {
                        "not" | "in" | "or" | "and" | "matches" | "contains" | "startsWith"
                        | "endsWith" | "let" => Kind::Operator,
                        _ => Kind::Identifier,
                    };
                    self.push(kind, start, word)?;
                }
                c => {
                    let shown = if c.is_control() {
                        format!("U+{:04X}", c as u32)
                    } else {
                        format!("U+{:04X} '{c}'", c as u32)
                    };
                    return Err(self.error(i, format!("unrecognized character: {shown}")));
                }
            }
        }
        self.push(Kind::Eof, self.chars.len(), String::new())
    }

    /// Scans like Go's `scanNumber`, from `from` (which may be just past a leading `.`).
    pub(super) fn number(&mut self, start: usize, from: usize) -> Result<usize, ConditionError> {
        let run = |lexer: &Lexer, mut i: usize, digits: &str| {
            while lexer.get(i).is_some_and(|c| digits.contains(c)) {
                i += 1;
            }
            i
        };
        let mut i = from;
        let mut digits = "0123456789_";
        if self.get(i) == Some('0') {
            i += 1;
            match self.get(i) {
                Some('x' | 'X') => {
                    i += 1;
                    digits = "0123456789abcdefABCDEF_";
                }
                Some('o' | 'O') => {
                    i += 1;
                    digits = "01234567_";
                }
                Some('b' | 'B') => {
                    i += 1;
                    digits = "01_";
                }
                _ => {}
            }
        }
        i = run(self, i, digits);
        if self.get(i) == Some('.') && self.get(i + 1) != Some('.') {
            i = run(self, i + 1, digits);
        }
        if matches!(self.get(i), Some('e' | 'E')) {
            i += 1;
            if matches!(self.get(i), Some('+' | '-')) {
                i += 1;
            }
            i = run(self, i, digits);
        }
        if self.get(i).is_some_and(is_alnum) {
            let word = self.text(start, i + 1);
            return Err(self.error(start, format!("bad number syntax: {word:?}")));
        }
        self.push(Kind::Number, start, self.text(start, i))?;
        Ok(i)
    }

    /// Scans and unescapes a quoted string as Go's lexer does; returns the index past the
    /// closing quote.
    pub(super) fn string(&self, open: usize) -> Result<(usize, String), ConditionError> {
        let quote = self.chars[open];
        let mut out = String::new();
        let mut i = open + 1;
        loop {
            match self.get(i) {
                None | Some('\n') => return Err(self.error(i, "literal not terminated")),
                Some(c) if c == quote => return Ok((i + 1, out)),
                Some('\\') => {
                    let invalid = || self.error(i, "invalid char escape");
                    let escaped = self.get(i + 1).ok_or_else(invalid)?;
                    let simple = match escaped {
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'f' => Some('\u{c}'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        'v' => Some('\u{b}'),
                        '\\' => Some('\\'),
                        c if c == quote => Some(c),
                        _ => None,
                    };
                    if let Some(c) = simple {
                        out.push(c);
                        i += 2;
                        continue;
                    }
                    let (digits_from, base, count) = match escaped {
                        '0'..='7' => (i + 1, 8, 3),
                        'x' => (i + 2, 16, 2),
                        'u' => (i + 2, 16, 4),
                        'U' => (i + 2, 16, 8),
                        _ => return Err(invalid()),
                    };
                    let mut code: u32 = 0;
                    for k in 0..count {
                        let digit = self
                            .get(digits_from + k)
                            .and_then(|c| c.to_digit(base))
                            .ok_or_else(invalid)?;
                        code = code * base + digit;
                    }
                    // Go keeps \ooo and \xhh as raw bytes; a Rust string can only hold them as
                    // the code points of the same value.
                    if base == 8 && code > 255 {
                        return Err(invalid());
                    }
                    out.push(char::from_u32(code).ok_or_else(invalid)?);
                    i = digits_from + count;
                }
                Some(c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
    }
}
