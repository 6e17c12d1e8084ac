//! The language of `successCondition` / `failureCondition`: expr-lang as Argo Rollouts v1.9.1 runs
//! it (antonmedv/expr v1.15.5 behind `utils/evaluate/evaluate.go`).
//!
//! A verdict hangs on details where the `expr-lang` crate and Go expr disagree. The one that
//! matters most: the crate answers `nil` for an index past the end of an array, while Go fails
//! with `reflect: slice index out of range`. Argo turns that failure into an Error measurement
//! (retried every 10 s, five in a row to fail the metric), so `result[0] == 0` on an empty vector
//! must be an error here too, not `false`. The crate is therefore never handed the user's text:
//!
//! 1. A parser that follows Go expr's lexer and Pratt parser (its precedences, `not in`, pipes,
//!    `??`, `let`, closures with or without braces) builds a tree. Syntax errors surface here,
//!    once, so a policy can be refused before a rollout starts.
//! 2. A checker follows Go expr's compile-time type check against the Go type Argo binds
//!    `result` to: `float64` for a scalar, `[]float64` for a vector. Go rejects `result >= 0.95`
//!    on a vector at compile time, even in a branch that `||` would skip, and so does this. Both
//!    shapes are checked at parse time; a condition that fails for both (an unknown name,
//!    `1 + "a"`) could only ever produce Error measurements and is refused.
//! 3. The tree is printed back as crate source in which indexing, slicing, ranges, map literals and
//!    closure pointers go through helpers registered here with Go's behaviour, and literals are
//!    passed as bindings instead of being re-quoted (the crate's string unescaping is not Go's).
//!
//! Argo's own functions are registered as v1.9.1 defines them: `isNaN`/`isInf` take a `float64`
//! (an integer literal argument is converted, as Go's checker does, anything else is an
//! "interface conversion" error), `asInt`/`asFloat` accept numbers and numeric strings, and
//! `isNil(x)` / `default(x, d)` ignore their first argument and look at the raw result, which a
//! Prometheus provider never leaves nil: `isNil` is always false and `default` always returns
//! `result` itself, so `default(result[0], 0) >= 0.95` compares a vector and errors, as in Argo.
//!
//! Known differences from Go expr that remain (none changes the verdict of a realistic
//! Prometheus condition):
//! - Runtime error texts from operators on values whose type is only known at run time (for
//!   example through `default`) are the crate's (`Invalid operands for operator >=`), not Go's.
//! - `==` between arrays compares elements numerically; Go uses `reflect.DeepEqual`, which is
//!   false for `result == [1.0]` because `[]float64` and `[]interface {}` differ.
//! - `matches`, `toJSON`/`fromJSON`, `toBase64`/`fromBase64`, `now`, `date` and `duration` need
//!   expr-lang features this build may not enable; a condition using an unavailable one is
//!   refused at parse time rather than failing every measurement.
//! - `let` is accepted only at the start of the condition or of a closure body, and function
//!   values (`let f = isNaN; f(x)`) are refused; Go allows both anywhere.
//! - A range (`a..b`) may hold at most a million elements ("memory budget exceeded"), and a
//!   condition may be at most 1000 tokens long and 32 levels deep, so that nothing a user writes
//!   can exhaust the stack. Deliberate resource bombs built with `reduce` are not guarded.
//! - Which builtins exist follows expr v1.15 (`sum`, `mean`, `median`, `first`, `last`, `sort`,
//!   ..., no `uniq`/`concat`/`bitand`); `ceil`, `floor` and `round` are accepted although their
//!   presence in v1.15.5 could not be confirmed.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;

use expr::{Context, ContextProvider, Environment, Program, Value};

/// Longer conditions are refused: tree depth is bounded by the token count, and every later
/// stage (checker, printer, the crate's parser and evaluator) recurses over the tree.
const MAX_TOKENS: usize = 1000;
/// Deeper trees are refused: the crate's pest parser needs about 20 KiB of stack per level in a
/// debug build, and 32 levels must fit a 1 MiB stack with room to spare.
const MAX_DEPTH: usize = 32;
/// Deeper recursion in the parser (parentheses count, although they leave no node) is refused.
const MAX_NESTING: usize = 64;
/// Later Go expr versions cap ranges at this size; v1.15 would simply run out of memory.
const RANGE_BUDGET: i128 = 1_000_000;
/// Prefix of the bindings that carry literals into the crate program.
const CONST_PREFIX: &str = "__k";

// ------------------------------------------------------------------------------------------------
// Public API
// ------------------------------------------------------------------------------------------------

/// What a provider answered, in the shape Argo binds to `result`.
///
/// Prometheus vectors and matrices become `[]float64` in Argo (matrices flattened), scalars
/// `float64`; the shape decides which conditions type-check, so it is kept rather than always
/// wrapping a scalar in a vector.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    Scalar(f64),
    Vector(Vec<f64>),
}

impl MetricValue {
    fn to_value(&self) -> Value {
        match self {
            MetricValue::Scalar(x) => Value::Float(*x),
            MetricValue::Vector(xs) => Value::Array(xs.iter().map(|x| Value::Float(*x)).collect()),
        }
    }
}

/// A condition that parsed, with its source kept for messages and reports.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Program,
    consts: Vec<Value>,
    /// Go's compile step, done up front for each shape of `result`: the static type of the
    /// condition, or the compile error every measurement of that shape would report.
    scalar: Result<Ty, String>,
    vector: Result<Ty, String>,
}

/// Why a condition was refused before any measurement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Go expr's parser rejects the text as well; Argo would report this at every measurement.
    #[error("{message} ({line}:{column})")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    /// The text parses but fails Go expr's type check for a scalar and for a vector result alike
    /// (an unknown name, `1 + "a"`), so under Argo every measurement would be an Error.
    #[error("{0}")]
    NeverEvaluates(String),
    /// Valid expr-lang that this emulation cannot run faithfully; see the module documentation.
    #[error("{0}")]
    Unsupported(String),
}

/// Why a condition could not be judged for one result: under Argo, an Error measurement whose
/// message is this error's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Go expr's compile step rejects the condition for this shape of result, e.g.
    /// `invalid operation: >= (mismatched types []float64 and float64)` for `result >= 0.95` on a
    /// vector.
    #[error("{0}")]
    Compile(String),
    /// Evaluation failed, e.g. `reflect: slice index out of range` for `result[0]` on `[]`.
    #[error("{0}")]
    Runtime(String),
    /// The condition produced something other than a bool; the payload is Go's `%T` of it.
    #[error("expected bool, but got {0}")]
    NotBool(String),
}

impl Condition {
    /// Parses and checks a condition, refusing what Argo could never evaluate.
    ///
    /// # Errors
    ///
    /// [`ConditionError::Syntax`] for text Go expr does not parse,
    /// [`ConditionError::NeverEvaluates`] for text that fails Go's type check whatever the result
    /// shape, [`ConditionError::Unsupported`] for constructs listed in the module documentation.
    pub fn parse(src: &str) -> Result<Condition, ConditionError> {
        let tree = Parser::parse(src)?;
        if depth_exceeds(&tree, MAX_DEPTH) {
            return Err(too_deep(MAX_DEPTH));
        }
        let scalar = Checker::new(Ty::Float).check(&tree);
        let vector = Checker::new(Ty::Array(Box::new(Ty::Float))).check(&tree);
        if let (Err(_), Err(e)) = (&scalar, &vector) {
            return Err(ConditionError::NeverEvaluates(e.clone()));
        }
        let mut printer = Printer::default();
        printer.root(&tree).map_err(ConditionError::Unsupported)?;
        let program = expr::compile(&printer.out).map_err(|e| {
            ConditionError::Unsupported(format!(
                "internal error: the condition could not be translated ({e})"
            ))
        })?;
        Ok(Condition {
            source: src.to_string(),
            program,
            consts: printer.consts,
            scalar,
            vector,
        })
    }

    /// The text the condition was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Judges one result, as Argo's `EvalCondition` does.
    ///
    /// # Errors
    ///
    /// Every error is what Argo records as an Error measurement; see [`EvalError`].
    pub fn evaluate(&self, result: &MetricValue) -> Result<bool, EvalError> {
        let checked = match result {
            MetricValue::Scalar(_) => &self.scalar,
            MetricValue::Vector(_) => &self.vector,
        };
        let static_type = checked
            .as_ref()
            .map_err(|e| EvalError::Compile(e.clone()))?;
        let value = result.to_value();
        let bindings = Bindings {
            result: &value,
            consts: &self.consts,
        };
        // The crate is written not to panic; should it anyway, the measurement errors instead of
        // taking the controller down.
        let outcome = catch_unwind(AssertUnwindSafe(|| ENV.run(&self.program, &bindings)))
            .map_err(|_| EvalError::Runtime("evaluation logic panicked".to_string()))?;
        match outcome {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBool(result_type_name(
                &other,
                static_type,
                &value,
            ))),
            Err(e) => Err(EvalError::Runtime(e.to_string())),
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl std::str::FromStr for Condition {
    type Err = ConditionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Condition::parse(s)
    }
}

/// Go's `%T` of a non-bool outcome. Arrays built by the condition are `[]interface {}` in Go,
/// while `result` itself (or `default(...)`, which returns it) is `[]float64`.
fn result_type_name(value: &Value, static_type: &Ty, result: &Value) -> String {
    match value {
        Value::Integer(_) if *static_type == Ty::Int64 => "int64".to_string(),
        other => dynamic_type(other, Some(result)).to_string(),
    }
}

/// Go's `%T` where `result` may be the value: a vector that is `result` (the same floats, bit
/// for bit, so NaN included) is `[]float64`, other arrays `[]interface {}`.
fn dynamic_type(v: &Value, result: Option<&Value>) -> &'static str {
    let same_floats = |a: &[Value], b: &[Value]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
                _ => false,
            })
    };
    match (v, result) {
        (Value::Array(items), Some(Value::Array(result))) if same_floats(items, result) => {
            "[]float64"
        }
        _ => go_type(v),
    }
}

// ------------------------------------------------------------------------------------------------
// Lexer (Go expr's parser/lexer)
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Identifier,
    Number,
    Str,
    Operator,
    Bracket,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    value: String,
    line: usize,
    column: usize,
}

impl Token {
    fn is(&self, kind: Kind, value: &str) -> bool {
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

fn is_alpha(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_numeric()
}

struct Lexer {
    chars: Vec<char>,
    /// 1-based (line, column) of each char, plus one entry for the end of input.
    at: Vec<(usize, usize)>,
    tokens: Vec<Token>,
}

impl Lexer {
    fn lex(src: &str) -> Result<Vec<Token>, ConditionError> {
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

    fn error(&self, i: usize, message: impl Into<String>) -> ConditionError {
        let (line, column) = self.at[i.min(self.chars.len())];
        ConditionError::Syntax {
            message: message.into(),
            line,
            column,
        }
    }

    fn get(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn push(&mut self, kind: Kind, start: usize, value: String) -> Result<(), ConditionError> {
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

    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().collect()
    }

    fn run(&mut self) -> Result<(), ConditionError> {
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
    fn number(&mut self, start: usize, from: usize) -> Result<usize, ConditionError> {
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
    fn string(&self, open: usize) -> Result<(usize, String), ConditionError> {
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

// ------------------------------------------------------------------------------------------------
// Parser (Go expr's parser/parser.go)
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// `#`, `#index`, `#acc` inside a closure; the name is empty for `#` and for `.field`.
    Pointer(String),
    /// The operator as written (`!` or `not`, `-`, `+`), for Go's error messages.
    Unary(&'static str, Box<Node>),
    /// The operator as written (`and` or `&&`, ...), for Go's error messages.
    Binary(&'static str, Box<Node>, Box<Node>),
    Member {
        base: Box<Node>,
        prop: Box<Node>,
        optional: bool,
    },
    Slice {
        base: Box<Node>,
        from: Option<Box<Node>>,
        to: Option<Box<Node>>,
    },
    /// A builtin, one of Argo's functions, or a call of anything else by name.
    Call {
        name: String,
        args: Vec<Node>,
    },
    Method {
        base: Box<Node>,
        name: String,
        args: Vec<Node>,
    },
    Closure(Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Array(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Let {
        name: String,
        value: Box<Node>,
        body: Box<Node>,
    },
}

impl Node {
    fn children(&self) -> Vec<&Node> {
        match self {
            Node::Nil
            | Node::Bool(_)
            | Node::Int(_)
            | Node::Float(_)
            | Node::Str(_)
            | Node::Ident(_)
            | Node::Pointer(_) => Vec::new(),
            Node::Unary(_, n) | Node::Closure(n) => vec![n],
            Node::Binary(_, l, r) => vec![l, r],
            Node::Member { base, prop, .. } => vec![base, prop],
            Node::Slice { base, from, to } => {
                let mut v: Vec<&Node> = vec![base];
                v.extend(from.as_deref());
                v.extend(to.as_deref());
                v
            }
            Node::Call { args, .. } => args.iter().collect(),
            Node::Method { base, args, .. } => {
                let mut v: Vec<&Node> = vec![base];
                v.extend(args.iter());
                v
            }
            Node::Cond(c, a, b) => vec![c, a, b],
            Node::Array(items) => items.iter().collect(),
            Node::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            Node::Let { value, body, .. } => vec![value, body],
        }
    }
}

fn too_deep(limit: usize) -> ConditionError {
    ConditionError::Unsupported(format!("condition is nested more than {limit} levels deep"))
}

/// Iterative, so that measuring a deep tree cannot itself overflow the stack.
fn depth_exceeds(root: &Node, limit: usize) -> bool {
    let mut stack = vec![(root, 1)];
    while let Some((node, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        stack.extend(node.children().into_iter().map(|c| (c, depth + 1)));
    }
    false
}

/// Go expr's binary operators: precedence, right associativity, canonical spelling.
fn binary_op(op: &str) -> Option<(u16, bool, &'static str)> {
    Some(match op {
        "|" => (0, false, "|"),
        "or" => (10, false, "or"),
        "||" => (10, false, "||"),
        "and" => (15, false, "and"),
        "&&" => (15, false, "&&"),
        "==" => (20, false, "=="),
        "!=" => (20, false, "!="),
        "<" => (20, false, "<"),
        ">" => (20, false, ">"),
        ">=" => (20, false, ">="),
        "<=" => (20, false, "<="),
        "in" => (20, false, "in"),
        "matches" => (20, false, "matches"),
        "contains" => (20, false, "contains"),
        "startsWith" => (20, false, "startsWith"),
        "endsWith" => (20, false, "endsWith"),
        ".." => (25, false, ".."),
        "+" => (30, false, "+"),
        "-" => (30, false, "-"),
        "*" => (60, false, "*"),
        "/" => (60, false, "/"),
        "%" => (60, false, "%"),
        "**" => (100, true, "**"),
        "^" => (100, true, "^"),
        "??" => (500, false, "??"),
        _ => return None,
    })
}

fn unary_op(op: &str) -> Option<(u16, &'static str)> {
    Some(match op {
        "not" => (50, "not"),
        "!" => (50, "!"),
        "-" => (90, "-"),
        "+" => (90, "+"),
        _ => return None,
    })
}

/// Builtins that take a closure, and how many arguments Go's parser reads for them.
fn predicate_arity(name: &str) -> Option<usize> {
    match name {
        "all" | "none" | "any" | "one" | "filter" | "map" | "count" | "find" | "findIndex"
        | "findLast" | "findLastIndex" | "groupBy" => Some(2),
        "reduce" => Some(3),
        _ => None,
    }
}

/// The rest of expr v1.15's builtins (see the module documentation about `ceil`/`floor`/`round`).
const BUILTINS: &[&str] = &[
    "len",
    "type",
    "abs",
    "int",
    "float",
    "string",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "upper",
    "lower",
    "split",
    "splitAfter",
    "replace",
    "repeat",
    "join",
    "indexOf",
    "lastIndexOf",
    "hasPrefix",
    "hasSuffix",
    "max",
    "min",
    "sum",
    "mean",
    "median",
    "toJSON",
    "fromJSON",
    "toBase64",
    "fromBase64",
    "now",
    "duration",
    "date",
    "first",
    "last",
    "get",
    "take",
    "keys",
    "values",
    "toPairs",
    "fromPairs",
    "sort",
    "sortBy",
    "ceil",
    "floor",
    "round",
];

fn is_builtin(name: &str) -> bool {
    predicate_arity(name).is_some() || BUILTINS.contains(&name)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    closure_depth: usize,
    nesting: usize,
}

type PResult<T> = Result<T, ConditionError>;

impl Parser {
    fn parse(src: &str) -> PResult<Node> {
        let tokens = Lexer::lex(src)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            closure_depth: 0,
            nesting: 0,
        };
        let node = parser.expression(0)?;
        if parser.current().kind != Kind::Eof {
            return Err(parser.unexpected());
        }
        Ok(node)
    }

    fn current(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn error_at(&self, token: &Token, message: impl Into<String>) -> ConditionError {
        ConditionError::Syntax {
            message: message.into(),
            line: token.line,
            column: token.column,
        }
    }

    fn unexpected(&self) -> ConditionError {
        let token = self.current();
        self.error_at(token, format!("unexpected token {token}"))
    }

    fn next(&mut self) -> PResult<()> {
        if self.pos + 1 >= self.tokens.len() {
            return Err(self.error_at(self.current(), "unexpected end of expression"));
        }
        self.pos += 1;
        Ok(())
    }

    fn is(&self, kind: Kind, value: &str) -> bool {
        self.current().is(kind, value)
    }

    fn expect(&mut self, kind: Kind, value: &str) -> PResult<()> {
        if self.is(kind, value) {
            self.next()
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_kind(&mut self, kind: Kind) -> PResult<Token> {
        let token = self.current().clone();
        if token.kind == kind {
            self.next()?;
            Ok(token)
        } else {
            Err(self.unexpected())
        }
    }

    fn expression(&mut self, precedence: u16) -> PResult<Node> {
        if self.nesting >= MAX_NESTING {
            return Err(too_deep(MAX_NESTING));
        }
        self.nesting += 1;
        let node = self.expression_at(precedence);
        self.nesting -= 1;
        node
    }

    fn expression_at(&mut self, precedence: u16) -> PResult<Node> {
        if precedence == 0 && self.is(Kind::Operator, "let") {
            return self.let_declaration();
        }
        let mut left = self.primary()?;
        let mut previous = "";
        while self.current().kind == Kind::Operator {
            let mut negate = false;
            if self.is(Kind::Operator, "not") {
                // Consumed even when no operator follows: Go does the same.
                self.next()?;
                negate = true;
            }
            let op_token = self.current().clone();
            let Some((op_precedence, right_assoc, op)) = binary_op(&op_token.value) else {
                break;
            };
            if op_precedence < precedence {
                break;
            }
            self.next()?;
            if op == "|" {
                left = self.pipe(left)?;
                previous = op;
                continue;
            }
            if previous == "??" && op != "??" {
                return Err(self.error_at(
                    &op_token,
                    format!(
                        "Operator ({op}) and coalesce expressions (??) cannot be mixed. Wrap \
                         either by parentheses."
                    ),
                ));
            }
            let right = self.expression(if right_assoc {
                op_precedence
            } else {
                op_precedence + 1
            })?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
            if negate {
                left = Node::Unary("not", Box::new(left));
            }
            previous = op;
        }
        if precedence == 0 {
            left = self.conditional(left)?;
        }
        Ok(left)
    }

    fn let_declaration(&mut self) -> PResult<Node> {
        self.expect(Kind::Operator, "let")?;
        let name = self.expect_kind(Kind::Identifier)?.value;
        self.expect(Kind::Operator, "=")?;
        let value = self.expression(0)?;
        self.expect(Kind::Operator, ";")?;
        let body = self.expression(0)?;
        Ok(Node::Let {
            name,
            value: Box::new(value),
            body: Box::new(body),
        })
    }

    fn conditional(&mut self, mut node: Node) -> PResult<Node> {
        while self.is(Kind::Operator, "?") {
            self.next()?;
            let (yes, no) = if self.is(Kind::Operator, ":") {
                self.next()?;
                (node.clone(), self.expression(0)?)
            } else {
                let yes = self.expression(0)?;
                self.expect(Kind::Operator, ":")?;
                (yes, self.expression(0)?)
            };
            node = Node::Cond(Box::new(node), Box::new(yes), Box::new(no));
        }
        Ok(node)
    }

    fn primary(&mut self) -> PResult<Node> {
        let token = self.current().clone();
        if token.kind == Kind::Operator
            && let Some((precedence, op)) = unary_op(&token.value)
        {
            self.next()?;
            let operand = self.expression(precedence)?;
            return self.postfix(Node::Unary(op, Box::new(operand)));
        }
        if token.is(Kind::Bracket, "(") {
            self.next()?;
            let inner = self.expression(0)?;
            self.expect(Kind::Bracket, ")")?;
            return self.postfix(inner);
        }
        if token.is(Kind::Operator, "#") || token.is(Kind::Operator, ".") {
            if self.closure_depth == 0 {
                return Err(self.error_at(&token, "cannot use pointer accessor outside closure"));
            }
            let mut name = String::new();
            if token.is(Kind::Operator, "#") {
                self.next()?;
                if self.current().kind == Kind::Identifier {
                    name = self.current().value.clone();
                    self.next()?;
                }
            }
            return self.postfix(Node::Pointer(name));
        }
        self.secondary()
    }

    fn secondary(&mut self) -> PResult<Node> {
        let token = self.current().clone();
        let node = match token.kind {
            Kind::Identifier => {
                self.next()?;
                match token.value.as_str() {
                    "true" => return Ok(Node::Bool(true)),
                    "false" => return Ok(Node::Bool(false)),
                    "nil" => return Ok(Node::Nil),
                    _ => self.call(token.value)?,
                }
            }
            Kind::Number => {
                self.next()?;
                return number_literal(&token.value).map_err(|m| self.error_at(&token, m));
            }
            Kind::Str => {
                self.next()?;
                return Ok(Node::Str(token.value));
            }
            _ if token.is(Kind::Bracket, "[") => self.array()?,
            _ if token.is(Kind::Bracket, "{") => self.map()?,
            _ => return Err(self.unexpected()),
        };
        self.postfix(node)
    }

    fn call(&mut self, name: String) -> PResult<Node> {
        if !self.is(Kind::Bracket, "(") {
            return Ok(Node::Ident(name));
        }
        let args = match predicate_arity(&name) {
            Some(arity) => {
                self.expect(Kind::Bracket, "(")?;
                let mut args = vec![self.expression(0)?];
                self.expect(Kind::Operator, ",")?;
                args.push(self.closure()?);
                if arity == 3 && self.is(Kind::Operator, ",") {
                    self.next()?;
                    args.push(self.expression(0)?);
                }
                self.expect(Kind::Bracket, ")")?;
                args
            }
            None => self.arguments()?,
        };
        Ok(Node::Call { name, args })
    }

    fn closure(&mut self) -> PResult<Node> {
        let braced = self.is(Kind::Bracket, "{");
        if braced {
            self.next()?;
        }
        self.closure_depth += 1;
        let body = self.expression(0);
        self.closure_depth -= 1;
        let body = body?;
        if braced {
            self.expect(Kind::Bracket, "}")?;
        }
        Ok(Node::Closure(Box::new(body)))
    }

    fn arguments(&mut self) -> PResult<Vec<Node>> {
        self.expect(Kind::Bracket, "(")?;
        let mut args = Vec::new();
        while !self.is(Kind::Bracket, ")") {
            if !args.is_empty() {
                self.expect(Kind::Operator, ",")?;
            }
            args.push(self.expression(0)?);
        }
        self.expect(Kind::Bracket, ")")?;
        Ok(args)
    }

    fn array(&mut self) -> PResult<Node> {
        self.expect(Kind::Bracket, "[")?;
        let mut items = Vec::new();
        while !self.is(Kind::Bracket, "]") {
            if !items.is_empty() {
                self.expect(Kind::Operator, ",")?;
                if self.is(Kind::Bracket, "]") {
                    break;
                }
            }
            items.push(self.expression(0)?);
        }
        self.expect(Kind::Bracket, "]")?;
        Ok(Node::Array(items))
    }

    fn map(&mut self) -> PResult<Node> {
        self.expect(Kind::Bracket, "{")?;
        let mut pairs = Vec::new();
        while !self.is(Kind::Bracket, "}") {
            if !pairs.is_empty() {
                self.expect(Kind::Operator, ",")?;
                if self.is(Kind::Bracket, "}") {
                    break;
                }
                if self.is(Kind::Operator, ",") {
                    return Err(self.unexpected());
                }
            }
            let token = self.current().clone();
            let key = match token.kind {
                Kind::Number | Kind::Str | Kind::Identifier => {
                    self.next()?;
                    Node::Str(token.value)
                }
                _ if token.is(Kind::Bracket, "(") => self.expression(0)?,
                _ => {
                    return Err(self.error_at(
                        &token,
                        format!(
                            "a map key must be a quoted string, a number, a identifier, or an \
                             expression enclosed in parentheses (unexpected token {token})"
                        ),
                    ));
                }
            };
            self.expect(Kind::Operator, ":")?;
            let value = self.expression(0)?;
            pairs.push((key, value));
        }
        self.expect(Kind::Bracket, "}")?;
        Ok(Node::Map(pairs))
    }

    fn postfix(&mut self, mut node: Node) -> PResult<Node> {
        // After `?.`, Go keeps short-circuiting the rest of a `.name` chain on nil.
        let mut chained = false;
        loop {
            let token = self.current().clone();
            if token.kind != Kind::Operator && token.kind != Kind::Bracket {
                break;
            }
            if token.value == "." || token.value == "?." {
                self.next()?;
                let property = self.current().clone();
                self.next()?;
                let valid_word = property.kind == Kind::Operator
                    && property.value.chars().next().is_some_and(is_alpha)
                    && property.value.chars().all(is_alnum);
                if property.kind != Kind::Identifier && !valid_word {
                    return Err(self.error_at(&property, "expected name"));
                }
                let optional = token.value == "?." || chained;
                chained = optional;
                node = if self.is(Kind::Bracket, "(") {
                    let args = self.arguments()?;
                    Node::Method {
                        base: Box::new(node),
                        name: property.value,
                        args,
                    }
                } else {
                    Node::Member {
                        base: Box::new(node),
                        prop: Box::new(Node::Str(property.value)),
                        optional,
                    }
                };
            } else if token.value == "[" {
                self.next()?;
                chained = false;
                if self.is(Kind::Operator, ":") {
                    self.next()?;
                    let to = if self.is(Kind::Bracket, "]") {
                        None
                    } else {
                        Some(Box::new(self.expression(0)?))
                    };
                    self.expect(Kind::Bracket, "]")?;
                    node = Node::Slice {
                        base: Box::new(node),
                        from: None,
                        to,
                    };
                } else {
                    let from = self.expression(0)?;
                    if self.is(Kind::Operator, ":") {
                        self.next()?;
                        let to = if self.is(Kind::Bracket, "]") {
                            None
                        } else {
                            Some(Box::new(self.expression(0)?))
                        };
                        self.expect(Kind::Bracket, "]")?;
                        node = Node::Slice {
                            base: Box::new(node),
                            from: Some(Box::new(from)),
                            to,
                        };
                    } else {
                        self.expect(Kind::Bracket, "]")?;
                        node = Node::Member {
                            base: Box::new(node),
                            prop: Box::new(from),
                            optional: false,
                        };
                    }
                }
            } else {
                break;
            }
        }
        Ok(node)
    }

    fn pipe(&mut self, left: Node) -> PResult<Node> {
        let name = self.expect_kind(Kind::Identifier)?.value;
        let mut args = vec![left];
        match predicate_arity(&name) {
            Some(arity) => {
                self.expect(Kind::Bracket, "(")?;
                args.push(self.closure()?);
                if arity == 3 && self.is(Kind::Operator, ",") {
                    self.next()?;
                    args.push(self.expression(0)?);
                }
                self.expect(Kind::Bracket, ")")?;
            }
            None => args.extend(self.arguments()?),
        }
        Ok(Node::Call { name, args })
    }
}

/// Go's parsing of a number token, with its error texts.
fn number_literal(raw: &str) -> Result<Node, String> {
    let value = raw.replace('_', "");
    let int_error = |e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {value:?}: {why}")
    };
    if value.contains('x') {
        let digits = value
            .strip_prefix("0x")
            .or_else(|| value.strip_prefix("0X"))
            .unwrap_or("");
        return i64::from_str_radix(digits, 16)
            .map(Node::Int)
            .map_err(|e| format!("invalid hex literal: {}", int_error(e)));
    }
    if value.contains(['.', 'e', 'E']) {
        return match value.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Node::Float(f)),
            Ok(_) => Err(format!(
                "invalid float literal: strconv.ParseFloat: parsing {value:?}: value out of range"
            )),
            Err(_) => Err(format!(
                "invalid float literal: strconv.ParseFloat: parsing {value:?}: invalid syntax"
            )),
        };
    }
    value
        .parse::<i64>()
        .map(Node::Int)
        .map_err(|e| format!("invalid integer literal: {}", int_error(e)))
}

// ------------------------------------------------------------------------------------------------
// Checker (Go expr's checker/checker.go, for the types a Prometheus result can have)
// ------------------------------------------------------------------------------------------------

/// Static types as Go expr's checker sees them; `Any` is Go's `interface {}`.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Any,
    Nil,
    Bool,
    Int,
    /// What `asInt` returns; only its name differs from `Int`.
    Int64,
    Float,
    Str,
    Array(Box<Ty>),
    Map,
    /// A function value, with Go's name of its type.
    Func(&'static str),
}

impl Ty {
    fn is_any(&self) -> bool {
        *self == Ty::Any
    }
    fn is_nil(&self) -> bool {
        *self == Ty::Nil
    }
    fn is_bool(&self) -> bool {
        *self == Ty::Bool
    }
    fn is_int(&self) -> bool {
        matches!(self, Ty::Int | Ty::Int64)
    }
    fn is_float(&self) -> bool {
        *self == Ty::Float
    }
    fn is_number(&self) -> bool {
        self.is_int() || self.is_float()
    }
    fn is_str(&self) -> bool {
        *self == Ty::Str
    }
    fn is_array(&self) -> bool {
        matches!(self, Ty::Array(_))
    }
    fn is_map(&self) -> bool {
        *self == Ty::Map
    }

    /// Go's `reflect.Kind`, enough to tell "same kind" apart.
    fn kind(&self) -> u8 {
        match self {
            Ty::Any => 0,
            Ty::Nil => 1,
            Ty::Bool => 2,
            Ty::Int => 3,
            Ty::Int64 => 4,
            Ty::Float => 5,
            Ty::Str => 6,
            Ty::Array(_) => 7,
            Ty::Map => 8,
            Ty::Func(_) => 9,
        }
    }

    fn elem(&self) -> Ty {
        match self {
            Ty::Array(e) => (**e).clone(),
            _ => Ty::Any,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Any => f.write_str("interface {}"),
            Ty::Nil => f.write_str("<nil>"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Int64 => f.write_str("int64"),
            Ty::Float => f.write_str("float64"),
            Ty::Str => f.write_str("string"),
            Ty::Array(e) => write!(f, "[]{e}"),
            Ty::Map => f.write_str("map[string]interface {}"),
            Ty::Func(name) => f.write_str(name),
        }
    }
}

/// Go's `or(l, r, fns...)`: one side unknown and the other acceptable.
fn either_any(l: &Ty, r: &Ty, accepts: &[fn(&Ty) -> bool]) -> bool {
    (l.is_any() && r.is_any())
        || (l.is_any() && accepts.iter().any(|f| f(r)))
        || (r.is_any() && accepts.iter().any(|f| f(l)))
}

fn comparable(l: &Ty, r: &Ty) -> bool {
    l.is_nil()
        || r.is_nil()
        || l.kind() == r.kind()
        || (l.is_number() && r.is_number())
        || l.is_any()
        || r.is_any()
}

fn combined(a: &Ty, b: &Ty) -> Ty {
    if a.kind() == b.kind() {
        a.clone()
    } else if a.is_float() || b.is_float() {
        Ty::Float
    } else {
        Ty::Int
    }
}

fn assignable(t: &Ty, to: &Ty) -> bool {
    t == to || to.is_any()
}

/// Parameter types of typed functions, as Go's `checkArguments` compares them.
#[derive(Clone, Copy)]
enum Param {
    Any,
    Float,
    Int,
    Str,
    ArrStr,
    ArrAny,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Any => "interface {}",
            Param::Float => "float64",
            Param::Int => "int",
            Param::Str => "string",
            Param::ArrStr => "[]string",
            Param::ArrAny => "[]interface {}",
        }
    }

    fn accepts(self, t: &Ty) -> bool {
        match self {
            // A float parameter is not checked at all: Go converts integer literals and leaves
            // the rest to fail at run time.
            Param::Any | Param::Float => true,
            _ if t.is_any() || t.is_nil() => true,
            Param::Int => t.is_int(),
            Param::Str => t.is_str(),
            Param::ArrStr => *t == Ty::Array(Box::new(Ty::Str)),
            Param::ArrAny => *t == Ty::Array(Box::new(Ty::Any)),
        }
    }
}

/// Argo's functions: parameters, result type, Go's name of the function type.
fn argo_signature(name: &str) -> Option<(&'static [Param], Ty, &'static str)> {
    Some(match name {
        "isNaN" | "isInf" => (&[Param::Float], Ty::Bool, "func(float64) bool"),
        "asInt" => (&[Param::Any], Ty::Int64, "func(interface {}) int64"),
        "asFloat" => (&[Param::Any], Ty::Float, "func(interface {}) float64"),
        "isNil" => (&[Param::Any], Ty::Bool, "func(interface {}) bool"),
        "default" => (
            &[Param::Any, Param::Any],
            Ty::Any,
            "func(interface {}, interface {}) interface {}",
        ),
        _ => return None,
    })
}

/// Builtins that Go declares with plain Go signatures (several overloads, the last error wins).
fn builtin_signatures(name: &str) -> Option<(&'static [&'static [Param]], Ty)> {
    use Param::{Any, ArrAny, ArrStr, Int, Str};
    Some(match name {
        "type" | "string" | "toJSON" => (&[&[Any]], Ty::Str),
        "trim" => (&[&[Str], &[Str, Str]], Ty::Str),
        "trimPrefix" | "trimSuffix" => (&[&[Str, Str], &[Str]], Ty::Str),
        "upper" | "lower" | "toBase64" | "fromBase64" => (&[&[Str]], Ty::Str),
        "split" | "splitAfter" => (
            &[&[Str, Str], &[Str, Str, Int]],
            Ty::Array(Box::new(Ty::Str)),
        ),
        "replace" => (&[&[Str, Str, Str, Int], &[Str, Str, Str]], Ty::Str),
        "repeat" => (&[&[Str, Int]], Ty::Str),
        "join" => (
            &[
                &[ArrStr, Str],
                &[ArrAny, Str],
                &[ArrAny],
                &[ArrStr, Str],
                &[ArrStr],
            ],
            Ty::Str,
        ),
        "indexOf" | "lastIndexOf" => (&[&[Str, Str]], Ty::Int),
        "hasPrefix" | "hasSuffix" => (&[&[Str, Str]], Ty::Bool),
        "fromJSON" | "duration" => (&[&[Str]], Ty::Any),
        "now" => (&[&[]], Ty::Any),
        "date" => (&[&[Str], &[Str, Str], &[Str, Str, Str]], Ty::Any),
        _ => return None,
    })
}

type CResult = Result<Ty, String>;

struct Checker {
    result: Ty,
    vars: Vec<(String, Ty)>,
    /// Innermost last: the collection a closure iterates and its extra pointers.
    scopes: Vec<(Ty, Vec<(&'static str, Ty)>)>,
}

impl Checker {
    fn new(result: Ty) -> Self {
        Checker {
            result,
            vars: Vec::new(),
            scopes: Vec::new(),
        }
    }

    fn env_type(&self, name: &str) -> Option<Ty> {
        if name == "result" {
            return Some(self.result.clone());
        }
        argo_signature(name).map(|(_, _, go)| Ty::Func(go))
    }

    fn var(&self, name: &str) -> Option<Ty> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    fn ident(&self, name: &str) -> CResult {
        if let Some(t) = self.var(name) {
            return Ok(t);
        }
        if name == "$env" {
            return Ok(Ty::Map);
        }
        if is_builtin(name) {
            return Ok(Ty::Func("func(...interface {}) (interface {}, error)"));
        }
        self.env_type(name)
            .ok_or_else(|| format!("unknown name {name}"))
    }

    fn check(&mut self, node: &Node) -> CResult {
        match node {
            Node::Nil => Ok(Ty::Nil),
            Node::Bool(_) => Ok(Ty::Bool),
            Node::Int(_) => Ok(Ty::Int),
            Node::Float(_) => Ok(Ty::Float),
            Node::Str(_) => Ok(Ty::Str),
            Node::Ident(name) => self.ident(name),
            Node::Pointer(name) => self.pointer(name),
            Node::Unary(op, inner) => {
                let t = self.check(inner)?;
                let ok = match *op {
                    "!" | "not" => (t.is_bool() || t.is_any()).then_some(Ty::Bool),
                    _ => (t.is_number() || t.is_any()).then(|| t.clone()),
                };
                ok.ok_or_else(|| format!("invalid operation: {op} (mismatched type {t})"))
            }
            Node::Binary(op, l, r) => self.binary(op, l, r),
            Node::Member { base, prop, .. } => self.member(base, prop),
            Node::Slice { base, from, to } => {
                let t = self.check(base)?;
                if !(t.is_any() || t.is_str() || t.is_array()) {
                    return Err(format!("cannot slice {t}"));
                }
                for bound in [from, to].into_iter().flatten() {
                    let b = self.check(bound)?;
                    if !b.is_int() && !b.is_any() {
                        return Err(format!("non-integer slice index {b}"));
                    }
                }
                Ok(t)
            }
            Node::Call { name, args } => self.call(name, args),
            Node::Method { base, name, args } => {
                let callee = self.member(base, &Node::Str(name.clone()))?;
                for arg in args {
                    self.check(arg)?;
                }
                if callee.is_any() {
                    Ok(Ty::Any)
                } else {
                    Err(format!("{callee} is not callable"))
                }
            }
            Node::Closure(body) => self.check(body),
            Node::Cond(c, a, b) => {
                let ct = self.check(c)?;
                if !ct.is_bool() && !ct.is_any() {
                    return Err(format!("non-bool expression (type {ct}) used as condition"));
                }
                let (t1, t2) = (self.check(a)?, self.check(b)?);
                Ok(match (t1.is_nil(), t2.is_nil()) {
                    (true, true) => Ty::Nil,
                    (true, false) => t2,
                    (false, true) => t1,
                    _ if assignable(&t1, &t2) => t1,
                    _ => Ty::Any,
                })
            }
            Node::Array(items) => {
                for item in items {
                    self.check(item)?;
                }
                Ok(Ty::Array(Box::new(Ty::Any)))
            }
            Node::Map(pairs) => {
                for (k, v) in pairs {
                    self.check(k)?;
                    self.check(v)?;
                }
                Ok(Ty::Map)
            }
            Node::Let { name, value, body } => {
                if self.env_type(name).is_some() {
                    return Err(format!("cannot redeclare {name}"));
                }
                if is_builtin(name) {
                    return Err(format!("cannot redeclare builtin {name}"));
                }
                if self.var(name).is_some() {
                    return Err(format!("cannot redeclare variable {name}"));
                }
                let t = self.check(value)?;
                self.vars.push((name.clone(), t));
                let body = self.check(body);
                self.vars.pop();
                body
            }
        }
    }

    fn pointer(&self, name: &str) -> CResult {
        let Some((collection, vars)) = self.scopes.last() else {
            return Err("cannot use pointer accessor outside closure".to_string());
        };
        if name.is_empty() {
            return match collection {
                Ty::Any => Ok(Ty::Any),
                Ty::Array(e) => Ok((**e).clone()),
                other => Err(format!("cannot use {other} as array")),
            };
        }
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| format!("unknown pointer #{name}"))
    }

    fn binary(&mut self, op: &'static str, l: &Node, r: &Node) -> CResult {
        let lt = self.check(l)?;
        let rt = self.check(r)?;
        let numbers = lt.is_number() && rt.is_number();
        let found = match op {
            "==" | "!=" => comparable(&lt, &rt).then_some(Ty::Bool),
            "or" | "||" | "and" | "&&" => ((lt.is_bool() && rt.is_bool())
                || either_any(&lt, &rt, &[Ty::is_bool]))
            .then_some(Ty::Bool),
            "<" | ">" | ">=" | "<=" => (numbers
                || (lt.is_str() && rt.is_str())
                || either_any(&lt, &rt, &[Ty::is_number, Ty::is_str]))
            .then_some(Ty::Bool),
            "-" | "*" if numbers => Some(combined(&lt, &rt)),
            "-" | "*" => either_any(&lt, &rt, &[Ty::is_number]).then_some(Ty::Any),
            "/" | "**" | "^" => {
                (numbers || either_any(&lt, &rt, &[Ty::is_number])).then_some(Ty::Float)
            }
            "%" if lt.is_int() && rt.is_int() => Some(combined(&lt, &rt)),
            "%" => either_any(&lt, &rt, &[Ty::is_int]).then_some(Ty::Any),
            "+" if numbers => Some(combined(&lt, &rt)),
            "+" if lt.is_str() && rt.is_str() => Some(Ty::Str),
            "+" => either_any(&lt, &rt, &[Ty::is_number, Ty::is_str]).then_some(Ty::Any),
            "in" => {
                if rt.is_map() {
                    if !lt.is_nil() && !lt.is_any() && !assignable(&lt, &Ty::Str) {
                        return Err(format!("cannot use {lt} as type string in map key"));
                    }
                    Some(Ty::Bool)
                } else if rt.is_array() {
                    let elem = rt.elem();
                    if !lt.is_nil() && !comparable(&lt, &elem) {
                        return Err(format!("cannot use {lt} as type {elem} in array"));
                    }
                    Some(Ty::Bool)
                } else {
                    ((lt.is_any() && (rt.is_str() || rt.is_array() || rt.is_map())) || rt.is_any())
                        .then_some(Ty::Bool)
                }
            }
            "matches" | "contains" | "startsWith" | "endsWith" => ((lt.is_str() && rt.is_str())
                || either_any(&lt, &rt, &[Ty::is_str]))
            .then_some(Ty::Bool),
            ".." => ((lt.is_int() && rt.is_int()) || either_any(&lt, &rt, &[Ty::is_int]))
                .then(|| Ty::Array(Box::new(Ty::Int))),
            "??" => Some(match (lt.is_nil(), rt.is_nil()) {
                (true, true) => Ty::Nil,
                (true, false) => rt.clone(),
                (false, true) => lt.clone(),
                _ if assignable(&rt, &lt) => lt.clone(),
                _ => Ty::Any,
            }),
            _ => return Err(format!("unknown operator ({op})")),
        };
        found.ok_or_else(|| format!("invalid operation: {op} (mismatched types {lt} and {rt})"))
    }

    fn member(&mut self, base: &Node, prop: &Node) -> CResult {
        let bt = self.check(base)?;
        let pt = self.check(prop)?;
        if matches!(base, Node::Ident(n) if n == "$env") {
            return Ok(match prop {
                Node::Str(name) => self.env_type(name).unwrap_or(Ty::Any),
                _ => Ty::Any,
            });
        }
        if let Node::Str(name) = prop
            && bt.is_nil()
        {
            return Err(format!("type {bt} has no field {name}"));
        }
        match &bt {
            Ty::Any => Ok(Ty::Any),
            Ty::Map => {
                if !pt.is_nil() && !pt.is_any() && !assignable(&pt, &Ty::Str) {
                    return Err(format!("cannot use {pt} to get an element from {bt}"));
                }
                Ok(Ty::Any)
            }
            Ty::Array(e) => {
                if !pt.is_int() && !pt.is_any() {
                    return Err(format!(
                        "array elements can only be selected using an integer (got {pt})"
                    ));
                }
                Ok((**e).clone())
            }
            _ => Err(format!("type {bt}[{pt}] is undefined")),
        }
    }

    fn call(&mut self, name: &str, args: &[Node]) -> CResult {
        if predicate_arity(name).is_some() {
            return self.predicate(name, args);
        }
        if let Some(t) = self.builtin(name, args) {
            return t;
        }
        if let Some((params, ret, _)) = argo_signature(name)
            && self.var(name).is_none()
        {
            return self.typed_call(name, params, ret, args);
        }
        let callee = self.ident(name)?;
        for arg in args {
            self.check(arg)?;
        }
        match callee {
            // Only reachable through `let f = isNaN`, which the printer refuses.
            Ty::Any | Ty::Func(_) => Ok(Ty::Any),
            other => Err(format!("{other} is not callable")),
        }
    }

    fn typed_call(&mut self, name: &str, params: &[Param], ret: Ty, args: &[Node]) -> CResult {
        if args.len() > params.len() {
            return Err(format!("too many arguments to call {name}"));
        }
        if args.len() < params.len() {
            return Err(format!("not enough arguments to call {name}"));
        }
        for (arg, param) in args.iter().zip(params) {
            let t = self.check(arg)?;
            if !param.accepts(&t) {
                // Go's message really ends with a space.
                return Err(format!(
                    "cannot use {t} as argument (type {}) to call {name} ",
                    param.name()
                ));
            }
        }
        Ok(ret)
    }

    fn predicate(&mut self, name: &str, args: &[Node]) -> CResult {
        let (Some(first), Some(closure)) = (args.first(), args.get(1)) else {
            return Err(format!("not enough arguments to call {name}"));
        };
        let collection = self.check(first)?;
        if !collection.is_array() && !collection.is_any() {
            return Err(format!(
                "builtin {name} takes only array (got {collection})"
            ));
        }
        let vars = match name {
            "map" => vec![("index", Ty::Int)],
            "reduce" => vec![("index", Ty::Int), ("acc", Ty::Any)],
            _ => Vec::new(),
        };
        self.scopes.push((collection.clone(), vars));
        let body = self.check(closure);
        self.scopes.pop();
        let body = body?;
        if name == "reduce" {
            if let Some(initial) = args.get(2) {
                self.check(initial)?;
            }
            return Ok(body);
        }
        if body.is_nil() {
            return Err("closure cannot be nil".to_string());
        }
        let must_be_bool = !matches!(name, "map" | "groupBy");
        if must_be_bool && !body.is_bool() && !body.is_any() {
            return Err(format!("predicate should return boolean (got {body})"));
        }
        Ok(match name {
            "filter" => Ty::Array(Box::new(collection.elem())),
            "map" => Ty::Array(Box::new(body)),
            "count" | "findIndex" | "findLastIndex" => Ty::Int,
            "find" | "findLast" => collection.elem(),
            "groupBy" => Ty::Map,
            _ => Ty::Bool,
        })
    }

    /// `None` when `name` is not a builtin, so the caller can try Argo's functions.
    fn builtin(&mut self, name: &str, args: &[Node]) -> Option<CResult> {
        if let Some((overloads, ret)) = builtin_signatures(name) {
            let mut last = String::new();
            for params in overloads {
                match self.typed_call(name, params, ret.clone(), args) {
                    Ok(t) => return Some(Ok(t)),
                    Err(e) => last = e,
                }
            }
            return Some(Err(last));
        }
        if !BUILTINS.contains(&name) {
            return None;
        }
        let n = args.len();
        let count = |expected: usize| {
            (n != expected)
                .then(|| format!("invalid number of arguments (expected {expected}, got {n})"))
        };
        if name == "get"
            && let Some(e) = count(2)
        {
            return Some(Err(e));
        }
        let mut types = Vec::with_capacity(n);
        for arg in args {
            match self.check(arg) {
                Ok(t) => types.push(t),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(validate_builtin(name, &types, count))
    }
}

/// Go's `Validate` functions of the builtins that have one.
fn validate_builtin(name: &str, types: &[Ty], count: impl Fn(usize) -> Option<String>) -> CResult {
    let one = |e: Option<String>| e.map_or(Ok(()), Err);
    let t0 = types.first().cloned().unwrap_or(Ty::Nil);
    match name {
        "len" => {
            one(count(1))?;
            if t0.is_array() || t0.is_map() || t0.is_str() || t0.is_any() {
                Ok(Ty::Int)
            } else {
                Err(format!("invalid argument for len (type {t0})"))
            }
        }
        "abs" => {
            one(count(1))?;
            if t0.is_number() || t0.is_any() {
                Ok(t0)
            } else {
                Err(format!("invalid argument for abs (type {t0})"))
            }
        }
        "int" | "float" | "ceil" | "floor" | "round" => {
            one(count(1))?;
            let strings = matches!(name, "int" | "float");
            if t0.is_number() || t0.is_any() || (strings && t0.is_str()) {
                Ok(if name == "int" { Ty::Int } else { Ty::Float })
            } else {
                Err(format!("invalid argument for {name} (type {t0})"))
            }
        }
        "max" | "min" => {
            if types.is_empty() {
                return Err(format!("not enough arguments to call {name}"));
            }
            for t in types {
                if t.is_any() {
                    return Ok(Ty::Any);
                }
                if !t.is_number() {
                    return Err(format!("invalid argument for {name} (type {t})"));
                }
            }
            Ok(t0)
        }
        "sum" | "mean" | "median" => {
            one(count(1))?;
            if t0.is_array() || t0.is_any() {
                Ok(if name == "sum" { Ty::Any } else { Ty::Float })
            } else {
                let verb = if name == "mean" { "avg" } else { name };
                Err(format!("cannot {verb} {t0}"))
            }
        }
        "first" | "last" => {
            one(count(1))?;
            match t0 {
                Ty::Any => Ok(Ty::Any),
                Ty::Array(e) => Ok(*e),
                other => Err(format!("cannot get {name} element from {other}")),
            }
        }
        "get" => match t0 {
            Ty::Any => Ok(Ty::Any),
            Ty::Array(e) => match &types[1] {
                Ty::Nil => Err("cannot use nil as slice index".to_string()),
                p if !p.is_int() && !p.is_any() => Err(format!("non-integer slice index {p}")),
                _ => Ok(*e),
            },
            Ty::Map => match &types[1] {
                Ty::Nil => Err("cannot use nil as map index".to_string()),
                p if !p.is_str() && !p.is_any() => {
                    Err(format!("cannot use {p} to get an element from {t0}"))
                }
                _ => Ok(Ty::Any),
            },
            other => Err(format!("type {other} does not support indexing")),
        },
        "take" => {
            one(count(2))?;
            if !t0.is_array() && !t0.is_any() {
                return Err(format!("cannot take from {t0}"));
            }
            if !types[1].is_int() && !types[1].is_any() {
                return Err(format!("cannot take {} elements", types[1]));
            }
            Ok(t0)
        }
        "keys" | "values" => {
            one(count(1))?;
            if t0.is_map() || t0.is_any() {
                Ok(Ty::Array(Box::new(Ty::Any)))
            } else {
                Err(format!("cannot get {name} from {t0}"))
            }
        }
        "toPairs" => {
            one(count(1))?;
            if t0.is_map() || t0.is_any() {
                Ok(Ty::Array(Box::new(Ty::Any)))
            } else {
                Err(format!("cannot transform {t0} to pairs"))
            }
        }
        "fromPairs" => {
            one(count(1))?;
            if t0.is_array() || t0.is_any() {
                Ok(Ty::Map)
            } else {
                Err(format!("cannot transform {t0} from pairs"))
            }
        }
        "sort" | "sortBy" => {
            let (low, high) = if name == "sort" { (1, 2) } else { (2, 3) };
            if types.len() < low || types.len() > high {
                return Err(format!(
                    "invalid number of arguments (expected {low} or {high}, got {})",
                    types.len()
                ));
            }
            if !t0.is_array() && !t0.is_any() {
                return Err(format!("cannot sort {t0}"));
            }
            for t in &types[1..] {
                if !t.is_str() && !t.is_any() {
                    return Err(format!(
                        "invalid argument for sort (expected string, got {t})"
                    ));
                }
            }
            Ok(Ty::Array(Box::new(Ty::Any)))
        }
        _ => Ok(Ty::Any),
    }
}

// ------------------------------------------------------------------------------------------------
// Printer: the checked tree as crate source
// ------------------------------------------------------------------------------------------------

/// Builtins this build of the crate registers only as stubs that name a missing feature.
static UNAVAILABLE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    let ctx = Context::default();
    let mut missing = HashSet::new();
    for name in [
        "toJSON",
        "fromJSON",
        "toBase64",
        "fromBase64",
        "now",
        "duration",
        "date",
    ] {
        if let Err(e) = expr::eval(&format!("{name}()"), &ctx)
            && e.to_string().contains("requires expr-lang's")
        {
            missing.insert(name);
        }
    }
    if expr::eval(r#""a" matches "a""#, &ctx).is_err() {
        missing.insert("matches");
    }
    missing
});

#[derive(Default)]
struct Printer {
    out: String,
    consts: Vec<Value>,
    /// Let-bound names in scope, innermost last, with their crate names.
    vars: Vec<(String, String)>,
    /// One frame per closure being printed: its id and which pointers its body used.
    closures: Vec<ClosureFrame>,
    counter: usize,
}

struct ClosureFrame {
    id: usize,
    used: HashSet<&'static str>,
}

type Printed = Result<(), String>;

impl Printer {
    fn root(&mut self, node: &Node) -> Printed {
        self.program(node)
    }

    fn fresh(&mut self) -> usize {
        self.counter += 1;
        self.counter
    }

    fn constant(&mut self, value: Value) {
        let _ = write!(self.out, "{CONST_PREFIX}{}", self.consts.len());
        self.consts.push(value);
    }

    /// A position where the crate accepts `let` statements: the whole condition, a closure body,
    /// or the body of another `let` there.
    fn program(&mut self, node: &Node) -> Printed {
        if let Node::Let { name, value, body } = node {
            let crate_name = format!("__v{}", self.fresh());
            let _ = write!(self.out, "let {crate_name} = ");
            self.expr(value, false)?;
            self.out.push_str("; ");
            self.vars.push((name.clone(), crate_name));
            let printed = self.program(body);
            self.vars.pop();
            return printed;
        }
        self.expr(node, false)
    }

    /// Prints one node as a self-delimiting term. `floats` turns integer literals into floats,
    /// as Go's checker does inside the argument of a function that takes a `float64`.
    fn expr(&mut self, node: &Node, floats: bool) -> Printed {
        match node {
            Node::Nil => self.out.push_str("nil"),
            Node::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Node::Int(i) if floats => self.constant(Value::Float(*i as f64)),
            Node::Int(i) => self.constant(Value::Integer(*i)),
            Node::Float(f) => self.constant(Value::Float(*f)),
            Node::Str(s) => self.constant(Value::String(s.clone())),
            Node::Ident(name) => {
                if let Some((_, crate_name)) = self.vars.iter().rev().find(|(n, _)| n == name) {
                    let crate_name = crate_name.clone();
                    self.out.push_str(&crate_name);
                } else if name == "result" || name == "$env" {
                    self.out.push_str(name);
                } else if is_builtin(name) || argo_signature(name).is_some() {
                    return Err(format!("function values are not supported ({name})"));
                } else {
                    return Err(format!("unknown name {name}"));
                }
            }
            Node::Pointer(name) => {
                let Some(frame) = self.closures.last_mut() else {
                    return Err("cannot use pointer accessor outside closure".to_string());
                };
                let (prefix, key) = match name.as_str() {
                    "" => ("__h", "#"),
                    "index" => ("__i", "#index"),
                    "acc" => ("__a", "#acc"),
                    other => return Err(format!("unknown pointer #{other}")),
                };
                frame.used.insert(key);
                let id = frame.id;
                let _ = write!(self.out, "{prefix}{id}");
            }
            Node::Unary(op, inner) => {
                self.out.push('(');
                self.out.push_str(match *op {
                    "not" | "!" => "!",
                    other => other,
                });
                self.expr(inner, floats)?;
                self.out.push(')');
            }
            Node::Binary(op, l, r) => self.binary(op, l, r, floats)?,
            Node::Member {
                base,
                prop,
                optional,
            } => {
                let helper = if *optional { "__index_opt" } else { "__index" };
                self.call_helper(helper, &[Some(base), Some(prop)])?;
            }
            Node::Slice { base, from, to } => {
                self.call_helper("__slice", &[Some(base), from.as_deref(), to.as_deref()])?;
            }
            Node::Call { name, args } => {
                if self.vars.iter().any(|(n, _)| n == name) {
                    return Err(format!("calling function values is not supported ({name})"));
                }
                if UNAVAILABLE.contains(name.as_str()) {
                    return Err(format!(
                        "{name}() needs an expr-lang feature this build does not enable"
                    ));
                }
                let float_args = matches!(name.as_str(), "isNaN" | "isInf");
                self.out.push_str(name);
                self.out.push('(');
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expr(arg, float_args)?;
                }
                self.out.push(')');
            }
            Node::Method { base, name, .. } => {
                let name = Node::Str(name.clone());
                self.call_helper("__method", &[Some(base), Some(&name)])?;
            }
            Node::Closure(body) => {
                let id = self.fresh();
                self.closures.push(ClosureFrame {
                    id,
                    used: HashSet::new(),
                });
                let outer = std::mem::take(&mut self.out);
                let printed = self.program(body);
                let inner = std::mem::replace(&mut self.out, outer);
                let frame = self.closures.pop().expect("pushed above");
                printed?;
                // The crate promotes a plain argument mentioning `#` to a closure, so pointers
                // never appear outside these bindings.
                self.out.push('{');
                for (prefix, key) in [("__h", "#"), ("__i", "#index"), ("__a", "#acc")] {
                    if frame.used.contains(key) {
                        let _ = write!(self.out, "let {prefix}{id} = {key}; ");
                    }
                }
                self.out.push_str(&inner);
                self.out.push('}');
            }
            Node::Cond(c, a, b) => {
                self.out.push('(');
                self.expr(c, false)?;
                self.out.push_str(" ? ");
                self.expr(a, false)?;
                self.out.push_str(" : ");
                self.expr(b, false)?;
                self.out.push(')');
            }
            Node::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expr(item, false)?;
                }
                self.out.push(']');
            }
            Node::Map(pairs) => {
                let flat: Vec<Option<&Node>> =
                    pairs.iter().flat_map(|(k, v)| [Some(k), Some(v)]).collect();
                self.call_helper("__map", &flat)?;
            }
            Node::Let { .. } => {
                return Err(
                    "`let` is only supported at the start of a condition or closure".to_string(),
                );
            }
        }
        Ok(())
    }

    fn binary(&mut self, op: &str, l: &Node, r: &Node, floats: bool) -> Printed {
        if op == ".." {
            return self.call_helper("__range", &[Some(l), Some(r)]);
        }
        if op == "matches" && UNAVAILABLE.contains("matches") {
            return Err(
                "the `matches` operator needs expr-lang's `regex` feature, which this build does \
                 not enable"
                    .to_string(),
            );
        }
        let symbol = match op {
            "and" | "&&" => "&&",
            "or" | "||" => "||",
            "^" | "**" => "**",
            other => other,
        };
        // Go converts integer literals on both sides of these only.
        let floats = floats && matches!(op, "+" | "-" | "*");
        self.out.push('(');
        self.expr(l, floats)?;
        let _ = write!(self.out, " {symbol} ");
        self.expr(r, floats)?;
        self.out.push(')');
        Ok(())
    }

    fn call_helper(&mut self, name: &str, args: &[Option<&Node>]) -> Printed {
        self.out.push_str(name);
        self.out.push('(');
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            match arg {
                Some(node) => self.expr(node, false)?,
                None => self.out.push_str("nil"),
            }
        }
        self.out.push(')');
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Runtime: bindings and the functions the printed program calls
// ------------------------------------------------------------------------------------------------

struct Bindings<'a> {
    result: &'a Value,
    consts: &'a [Value],
}

impl ContextProvider for Bindings<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        if key == "result" {
            return Some(self.result);
        }
        let index = key.strip_prefix(CONST_PREFIX)?.parse::<usize>().ok()?;
        self.consts.get(index)
    }

    fn to_context(&self) -> Context {
        let mut ctx = Context::default();
        ctx.insert("result", self.result.clone());
        ctx
    }
}

type Fallible = expr::Result<Value>;

fn fail(message: impl Into<String>) -> Fallible {
    Err(expr::Error::ExprError(message.into()))
}

fn exactly<const N: usize>(args: Vec<Value>, name: &str) -> expr::Result<[Value; N]> {
    let n = args.len();
    args.try_into().map_err(|_| {
        expr::Error::ExprError(format!(
            "invalid number of arguments for {name} (expected {N}, got {n})"
        ))
    })
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_function("__index", |c| {
        let [base, key] = exactly(c.args, "index")?;
        fetch(&base, &key)
    });
    env.add_function("__index_opt", |c| {
        let [base, key] = exactly(c.args, "index")?;
        if base.is_nil() {
            Ok(Value::Nil)
        } else {
            fetch(&base, &key)
        }
    });
    env.add_function("__slice", |c| {
        let [base, from, to] = exactly(c.args, "slice")?;
        slice(&base, &from, &to)
    });
    env.add_function("__range", |c| {
        let [from, to] = exactly(c.args, "range")?;
        range(&from, &to)
    });
    env.add_function("__map", |c| {
        let mut entries = Vec::with_capacity(c.args.len() / 2);
        let mut args = c.args.into_iter();
        while let (Some(key), Some(value)) = (args.next(), args.next()) {
            match key {
                Value::String(k) => entries.push((k, value)),
                other => {
                    return fail(format!(
                        "interface conversion: interface {{}} is {}, not string",
                        asserted_type(&other)
                    ));
                }
            }
        }
        Ok(entries.into_iter().collect())
    });
    env.add_function("__method", |c| {
        let [base, name] = exactly(c.args, "method")?;
        let name = go_format(&name);
        match base {
            Value::Map(_) | Value::KeyedMap(_) => {
                fail("reflect: call of reflect.Value.Call on zero Value")
            }
            other => fail(format!("cannot fetch {name} from {}", go_type(&other))),
        }
    });
    env.add_function("isNaN", |c| {
        let [x] = exactly(c.args, "isNaN")?;
        float_arg(&x, c.ctx.get("result")).map(|f| Value::Bool(f.is_nan()))
    });
    env.add_function("isInf", |c| {
        let [x] = exactly(c.args, "isInf")?;
        float_arg(&x, c.ctx.get("result")).map(|f| Value::Bool(f.is_infinite()))
    });
    env.add_function("asInt", |c| {
        let [x] = exactly(c.args, "asInt")?;
        match x {
            Value::Integer(i) => Ok(Value::Integer(i)),
            Value::Float(f) => Ok(Value::Integer(go_trunc(f))),
            Value::String(s) => parse_go_int(&s).map(Value::Integer),
            other => fail(format!(
                "asInt() not supported on {} {}",
                dynamic_type(&other, c.ctx.get("result")),
                go_format(&other)
            )),
        }
    });
    env.add_function("asFloat", |c| {
        let [x] = exactly(c.args, "asFloat")?;
        match x {
            Value::Integer(i) => Ok(Value::Float(i as f64)),
            Value::Float(f) => Ok(Value::Float(f)),
            Value::String(s) => parse_go_float(&s).map(Value::Float),
            other => fail(format!(
                "asFloat() not supported on {} {}",
                dynamic_type(&other, c.ctx.get("result")),
                go_format(&other)
            )),
        }
    });
    // Argo's isNil/default look at the provider's raw value, which a Prometheus answer never
    // leaves nil (an empty vector is a non-nil empty slice).
    env.add_function("isNil", |c| {
        let [_] = exactly(c.args, "isNil")?;
        Ok(Value::Bool(false))
    });
    env.add_function("default", |c| {
        let [_, _] = exactly(c.args, "default")?;
        Ok(c.ctx.get("result").cloned().unwrap_or(Value::Nil))
    });
    env
});

/// Go's `runtime.Fetch`: what indexing and `.field` do, including the out-of-range failure the
/// crate would turn into `nil`.
fn fetch(base: &Value, key: &Value) -> Fallible {
    match base {
        Value::Array(items) => {
            let i = go_index(key, items.len(), "slice")?;
            Ok(items[i].clone())
        }
        Value::String(s) => {
            let i = go_index(key, s.len(), "string")?;
            Ok(Value::Integer(i64::from(s.as_bytes()[i])))
        }
        Value::Map(map) => match key {
            Value::String(k) => Ok(map.get(k).cloned().unwrap_or(Value::Nil)),
            Value::Nil => Ok(map.get("").cloned().unwrap_or(Value::Nil)),
            other => fail(format!(
                "reflect.Value.MapIndex: value of type {} is not assignable to type string",
                go_type(other)
            )),
        },
        Value::KeyedMap(pairs) => Ok(pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Nil)),
        other => fail(format!(
            "cannot fetch {} from {}",
            go_format(key),
            go_type(other)
        )),
    }
}

fn go_index(key: &Value, len: usize, what: &str) -> expr::Result<usize> {
    let raw = i128::from(go_int(key)?);
    let index = if raw < 0 { raw + len as i128 } else { raw };
    if index < 0 || index >= len as i128 {
        return Err(expr::Error::ExprError(format!(
            "reflect: {what} index out of range"
        )));
    }
    Ok(index as usize)
}

/// Go's `runtime.ToInt`.
fn go_int(v: &Value) -> expr::Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Float(f) => Ok(go_trunc(*f)),
        other => Err(expr::Error::ExprError(format!(
            "invalid operation: int({})",
            asserted_type(other)
        ))),
    }
}

/// Go's float-to-int conversion on amd64: NaN and out-of-range values become the minimum int.
fn go_trunc(f: f64) -> i64 {
    let bound = -(i64::MIN as f64);
    if f.is_nan() || !(-bound..bound).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Go's `runtime.Slice`, which clamps rather than failing.
fn slice(base: &Value, from: &Value, to: &Value) -> Fallible {
    let len = match base {
        Value::Array(items) => items.len(),
        Value::String(s) => s.len(),
        _ => return fail(format!("cannot slice {}", go_format(from))),
    } as i128;
    let bound = |v: &Value, default: i128| -> expr::Result<i128> {
        if v.is_nil() {
            Ok(default)
        } else {
            go_int(v).map(i128::from)
        }
    };
    let mut a = bound(from, 0)?;
    let mut b = bound(to, len)?;
    if a < 0 {
        a = (len + a).max(0);
    }
    if b < 0 {
        b = (len + b).max(0);
    }
    b = b.min(len);
    a = a.min(b);
    let (a, b) = (a as usize, b as usize);
    Ok(match base {
        Value::Array(items) => Value::Array(items[a..b].to_vec()),
        Value::String(s) => Value::String(String::from_utf8_lossy(&s.as_bytes()[a..b]).into()),
        _ => Value::Nil,
    })
}

fn range(from: &Value, to: &Value) -> Fallible {
    let (a, b) = (i128::from(go_int(from)?), i128::from(go_int(to)?));
    let size = b - a + 1;
    if size > RANGE_BUDGET {
        return fail("memory budget exceeded");
    }
    Ok(Value::Array(
        (a..=b)
            .map(|i| Value::Integer(i as i64))
            .collect::<Vec<_>>(),
    ))
}

/// A `float64` parameter: Go type-asserts, so even an integer is refused at run time (integer
/// literals were already turned into floats by the printer).
fn float_arg(v: &Value, result: Option<&Value>) -> expr::Result<f64> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Nil => fail("interface conversion: interface {} is nil, not float64").map(|_| 0.0),
        other => Err(expr::Error::ExprError(format!(
            "interface conversion: interface {{}} is {}, not float64",
            dynamic_type(other, result)
        ))),
    }
}

fn parse_go_int(s: &str) -> expr::Result<i64> {
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        expr::Error::ExprError(format!("strconv.ParseInt: parsing {s:?}: {why}"))
    })
}

fn parse_go_float(s: &str) -> expr::Result<f64> {
    let error =
        |why: &str| expr::Error::ExprError(format!("strconv.ParseFloat: parsing {s:?}: {why}"));
    let f = s.parse::<f64>().map_err(|_| error("invalid syntax"))?;
    let spelled_inf = s
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    if f.is_infinite() && !spelled_inf {
        return Err(error("value out of range"));
    }
    Ok(f)
}

/// Go's `%T`, for values a condition can produce (arrays are `[]interface {}` in Go unless they
/// are `result` itself; callers that can tell the difference do).
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Integer(_) => "int",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Bytes(_) => "[]uint8",
        Value::Map(_) => "map[string]interface {}",
        Value::KeyedMap(_) => "map[interface {}][]interface {}",
    }
}

/// The dynamic type as a failed Go type assertion names it.
fn asserted_type(v: &Value) -> &'static str {
    if v.is_nil() { "nil" } else { go_type(v) }
}

/// Go's `%v`.
fn go_format(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => go_float(*f),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_format).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Bytes(bytes) => {
            let parts: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Map(map) => {
            let mut parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect();
            parts.sort();
            format!("map[{}]", parts.join(" "))
        }
        Value::KeyedMap(pairs) => {
            let parts: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_format(k), go_format(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%v` of a `float64` (`strconv.FormatFloat(f, 'g', -1, 64)` with %v's exponent rule).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits; only the layout differs from Go's.
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..21).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    format!("{f}")
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;

    fn v(xs: &[f64]) -> MetricValue {
        MetricValue::Vector(xs.to_vec())
    }

    fn s(x: f64) -> MetricValue {
        MetricValue::Scalar(x)
    }

    /// What one evaluation should give.
    #[derive(Debug)]
    enum Want {
        Is(bool),
        /// A compile (type-check) error whose text contains this.
        Compile(&'static str),
        /// A runtime error whose text contains this.
        Runtime(&'static str),
        /// "expected bool, but got <this>".
        NotBool(&'static str),
    }
    use Want::{Compile, Is, NotBool, Runtime};

    fn check_row(src: &str, result: &MetricValue, want: &Want) {
        let cond =
            Condition::parse(src).unwrap_or_else(|e| panic!("{src:?} should parse, got {e:?}"));
        let got = cond.evaluate(result);
        let ok = match (want, &got) {
            (Is(b), Ok(g)) => b == g,
            (Compile(m), Err(EvalError::Compile(e))) => e.contains(m),
            (Runtime(m), Err(EvalError::Runtime(e))) => e.contains(m),
            (NotBool(t), Err(EvalError::NotBool(g))) => t == g,
            _ => false,
        };
        assert!(ok, "{src:?} on {result:?}: wanted {want:?}, got {got:?}");
    }

    #[test]
    fn canonical_success_rate_condition() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("result[0] >= 0.95", v(&[0.97]), Is(true)),
            ("result[0] >= 0.95", v(&[0.95]), Is(true)),
            ("result[0] >= 0.95", v(&[0.5]), Is(false)),
            // Argo: the empty vector makes the measurement Error, not Failed.
            (
                "result[0] >= 0.95",
                v(&[]),
                Runtime("reflect: slice index out of range"),
            ),
            ("result[0] >= 0.95", v(&[0.97, 0.1]), Is(true)),
            ("result[0] <= 0.01", v(&[0.0]), Is(true)),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn out_of_range_index_is_an_error_whatever_uses_it() {
        // The crate alone answers nil here, which `==`, `!=`, `in` and `??` would turn into a
        // verdict.
        let rows: &[(&str, MetricValue, Want)] = &[
            ("result[0] == 0", v(&[]), Runtime("index out of range")),
            ("result[0] != 0", v(&[]), Runtime("index out of range")),
            ("result[0] in [1, 2]", v(&[]), Runtime("index out of range")),
            (
                "(result[0] ?? 1) == 1",
                v(&[]),
                Runtime("index out of range"),
            ),
            ("result[1] > 0", v(&[1.0]), Runtime("index out of range")),
            ("isNil(result[0])", v(&[]), Runtime("index out of range")),
            ("isNaN(result[0])", v(&[]), Runtime("index out of range")),
            ("result[-1] == 3", v(&[1.0, 2.0, 3.0]), Is(true)),
            ("result[-3] == 1", v(&[1.0, 2.0, 3.0]), Is(true)),
            (
                "result[-4] == 1",
                v(&[1.0, 2.0, 3.0]),
                Runtime("index out of range"),
            ),
            (
                "result[len(result) - 1] == 3",
                v(&[1.0, 2.0, 3.0]),
                Is(true),
            ),
            // A float index is a compile error for a typed array, as in Go.
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn guards_against_empty_results() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("len(result) == 0", v(&[]), Is(true)),
            ("len(result) == 0", v(&[1.0]), Is(false)),
            ("len(result) == 0 || result[0] >= 0.95", v(&[]), Is(true)),
            (
                "len(result) == 0 || result[0] >= 0.95",
                v(&[0.5]),
                Is(false),
            ),
            ("len(result) > 0 && result[0] >= 0.95", v(&[]), Is(false)),
            ("len(result) > 0 && result[0] >= 0.95", v(&[0.99]), Is(true)),
            ("len(result) > 0 and result[0] < 0.95", v(&[]), Is(false)),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn nan_compares_false_and_inf_is_detectable() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("result[0] >= 0.9", v(&[NAN]), Is(false)),
            ("result[0] < 0.9", v(&[NAN]), Is(false)),
            ("result[0] == result[0]", v(&[NAN]), Is(false)),
            ("result[0] != result[0]", v(&[NAN]), Is(true)),
            ("isNaN(result[0])", v(&[NAN]), Is(true)),
            ("isNaN(result[0])", v(&[0.5]), Is(false)),
            ("isNaN(result[0]) || result[0] >= 0.95", v(&[NAN]), Is(true)),
            (
                "result[0] >= 0.95 && !isNaN(result[0])",
                v(&[0.97]),
                Is(true),
            ),
            (
                "result[0] >= 0.95 && !isNaN(result[0])",
                v(&[NAN]),
                Is(false),
            ),
            ("isInf(result[0])", v(&[INF]), Is(true)),
            ("isInf(result[0])", v(&[-INF]), Is(true)),
            ("isInf(result[0])", v(&[1.0]), Is(false)),
            ("result[0] > 1000", v(&[INF]), Is(true)),
            // Scalars: the docs' form works only for them.
            ("isNaN(result) || result >= 0.95", s(NAN), Is(true)),
            ("isNaN(result) || result >= 0.95", s(0.5), Is(false)),
            ("isInf(result)", s(-INF), Is(true)),
            // ... and on a vector it is an error (AR#363), at run time for isNaN.
            (
                "isNaN(result) || result >= 0.95",
                v(&[0.99]),
                Compile("invalid operation: >= (mismatched types []float64 and float64)"),
            ),
            (
                "isNaN(result)",
                v(&[0.99]),
                Runtime("interface conversion: interface {} is []float64, not float64"),
            ),
            // Integer literals are converted for a float64 parameter; other integers are not.
            ("isNaN(1)", v(&[]), Is(false)),
            ("isNaN(-(2 * 3))", v(&[]), Is(false)),
            (
                "isNaN(len(result))",
                v(&[]),
                Runtime("interface conversion: interface {} is int, not float64"),
            ),
            // Go converts the literal inside `*` too, which makes the product a float.
            ("isNaN(len(result) * 1)", v(&[]), Is(false)),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn logic_arithmetic_and_ternary() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("result[0] > 0.5 && result[0] < 0.9", v(&[0.7]), Is(true)),
            (
                "result[0] > 0.5 and not (result[0] > 0.9)",
                v(&[0.7]),
                Is(true),
            ),
            ("result[0] < 0.5 || result[0] > 0.9", v(&[0.7]), Is(false)),
            ("result[0] < 0.5 or result[0] > 0.6", v(&[0.7]), Is(true)),
            ("!(result[0] > 1)", v(&[0.7]), Is(true)),
            ("not true", v(&[]), Is(false)),
            ("result[0] * 100 > 5", v(&[0.06]), Is(true)),
            ("result[0] * 100 > 5", v(&[0.04]), Is(false)),
            ("result[0] / 2 == 0.25", v(&[0.5]), Is(true)),
            ("result[0] - 1 < 0", v(&[0.5]), Is(true)),
            ("-result[0] < 0", v(&[1.0]), Is(true)),
            ("result[0] ** 2 == 4", v(&[2.0]), Is(true)),
            ("result[0] ^ 2 == 4", v(&[2.0]), Is(true)),
            ("2 ** 3 ** 2 == 512", v(&[]), Is(true)),
            ("1 + 2 * 3 == 7", v(&[]), Is(true)),
            ("(1 + 2) * 3 == 9", v(&[]), Is(true)),
            ("7 % 3 == 1", v(&[]), Is(true)),
            // `/` is always a float division in Go expr.
            ("len(result) / 2 == 0.5", v(&[1.0]), Is(true)),
            ("1 / 0 > 1000", v(&[]), Is(true)),
            ("(result[0] > 0.5 ? 1 : 0) == 1", v(&[0.7]), Is(true)),
            (
                "result[0] > 0.5 ? result[0] < 0.9 : false",
                v(&[0.95]),
                Is(false),
            ),
            (
                "len(result) == 0 ? true : result[0] > 0.5",
                v(&[]),
                Is(true),
            ),
            // Mixing ints and floats compares numerically.
            ("result[0] > 1", v(&[1.5]), Is(true)),
            ("result[0] == 1", v(&[1.0]), Is(true)),
            ("result[0] >= 1", v(&[0.999]), Is(false)),
            ("result > 1", s(1.5), Is(true)),
            ("result >= 1", s(0.5), Is(false)),
            ("result == 0", s(0.0), Is(true)),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn result_shape_decides_what_type_checks() {
        let rows: &[(&str, MetricValue, Want)] = &[
            (
                "result >= 1",
                v(&[1.5]),
                Compile("invalid operation: >= (mismatched types []float64 and int)"),
            ),
            (
                "result[0] > 1",
                s(1.5),
                Compile("type float64[int] is undefined"),
            ),
            (
                "len(result) > 0",
                s(1.0),
                Compile("invalid argument for len (type float64)"),
            ),
            // Go's checker visits both sides, so a skipped branch still fails to compile.
            (
                "true || result >= 0.95",
                v(&[]),
                Compile("mismatched types []float64 and float64"),
            ),
            ("true || result >= 0.95", s(0.0), Is(true)),
            (
                "max(result) > 1",
                v(&[2.0]),
                Compile("invalid argument for max (type []float64)"),
            ),
            ("max(result, 1) > 1", s(2.0), Is(true)),
            (
                "all(result, {# > 0})",
                s(1.0),
                Compile("builtin all takes only array (got float64)"),
            ),
            ("result[1:] == [2]", s(1.0), Compile("cannot slice float64")),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn closures_over_the_vector() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("all(result, {# < 0.5})", v(&[0.1, 0.2]), Is(true)),
            ("all(result, {# < 0.5})", v(&[0.1, 0.7]), Is(false)),
            ("all(result, {# < 0.5})", v(&[]), Is(true)),
            ("all(result, # < 1000)", v(&[1.0, 999.0]), Is(true)),
            ("any(result, {# > 0.5})", v(&[0.1, 0.7]), Is(true)),
            ("any(result, {# > 0.5})", v(&[]), Is(false)),
            ("none(result, {isNaN(#)})", v(&[0.1, NAN]), Is(false)),
            ("one(result, {# > 0.5})", v(&[0.1, 0.7]), Is(true)),
            (
                "len(filter(result, {# > 0.5})) == 2",
                v(&[0.6, 0.1, 0.9]),
                Is(true),
            ),
            (
                "count(result, {# > 0.5}) == 2",
                v(&[0.6, 0.1, 0.9]),
                Is(true),
            ),
            ("sum(map(result, {# * 2})) == 6", v(&[1.0, 2.0]), Is(true)),
            ("map(result, {#index})[1] == 1", v(&[5.0, 6.0]), Is(true)),
            ("find(result, {# > 1}) == 2", v(&[1.0, 2.0, 3.0]), Is(true)),
            (
                "findIndex(result, {# > 1}) == 1",
                v(&[1.0, 2.0, 3.0]),
                Is(true),
            ),
            (
                "findLast(result, {# > 1}) == 3",
                v(&[1.0, 2.0, 3.0]),
                Is(true),
            ),
            (
                "reduce(result, #acc + #, 0) == 6",
                v(&[1.0, 2.0, 3.0]),
                Is(true),
            ),
            // A pointer used as a plain argument inside a closure stays the element.
            ("all(result, {sum([#, 1]) > 1})", v(&[0.5, 2.0]), Is(true)),
            (
                "all(result, {any(result, {# >= 2}) && # > 0})",
                v(&[1.0, 2.0]),
                Is(true),
            ),
            ("result | all(# > 0.5)", v(&[0.6]), Is(true)),
            ("result | len() == 1", v(&[0.6]), Is(true)),
            (
                "filter(result, # > 5)[0] > 0",
                v(&[1.0]),
                Runtime("index out of range"),
            ),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn argo_functions() {
        let rows: &[(&str, MetricValue, Want)] = &[
            // default/isNil ignore their first argument and look at the raw result.
            ("default(result, 0) < 0.05", s(0.01), Is(true)),
            ("default(result[0], 0) >= 0.95", v(&[0.97]), Runtime("")),
            (
                "default(result[0], 0) >= 0.95",
                v(&[]),
                Runtime("index out of range"),
            ),
            ("len(default(result, 0)) == 0", v(&[]), Is(true)),
            ("isNil(result)", v(&[]), Is(false)),
            ("isNil(nil)", s(1.0), Is(false)),
            ("asFloat(\"0.5\") < result[0]", v(&[0.7]), Is(true)),
            ("asFloat(2) == 2", v(&[]), Is(true)),
            ("asInt(\"3\") == 3", v(&[]), Is(true)),
            ("asInt(result[0]) == 2", v(&[2.7]), Is(true)),
            ("asInt(result[0]) == -2", v(&[-2.7]), Is(true)),
            (
                "asInt(\"x\") == 1",
                v(&[]),
                Runtime("strconv.ParseInt: parsing \"x\": invalid syntax"),
            ),
            (
                "asFloat(\"1e400\") > 1",
                v(&[]),
                Runtime("strconv.ParseFloat: parsing \"1e400\": value out of range"),
            ),
            ("asFloat(\"NaN\") > 1", v(&[]), Is(false)),
            (
                "asInt(true) == 1",
                v(&[]),
                Runtime("asInt() not supported on bool true"),
            ),
            (
                "asInt(result) == 1",
                v(&[1.0, 2.5]),
                Runtime("asInt() not supported on []float64 [1 2.5]"),
            ),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn non_bool_outcomes_name_the_go_type() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("result[0]", v(&[0.5]), NotBool("float64")),
            ("result", v(&[0.5]), NotBool("[]float64")),
            ("result", v(&[NAN]), NotBool("[]float64")),
            ("default(result, 0)", v(&[0.5]), NotBool("[]float64")),
            ("map(result, {# + 1})", v(&[0.5]), NotBool("[]interface {}")),
            ("len(result)", v(&[0.5]), NotBool("int")),
            ("asInt(result[0])", v(&[0.5]), NotBool("int64")),
            ("'yes'", v(&[]), NotBool("string")),
            ("nil", v(&[]), NotBool("<nil>")),
            ("result", s(0.5), NotBool("float64")),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    #[test]
    fn other_language_features() {
        let rows: &[(&str, MetricValue, Want)] = &[
            ("result[0] in [1, 2]", v(&[2.0]), Is(true)),
            ("result[0] not in [1, 2]", v(&[3.0]), Is(true)),
            (
                "(first(filter(result, {# > 5})) ?? 0) == 0",
                v(&[1.0, 2.0]),
                Is(true),
            ),
            (
                "first(result) == 1 && last(result) == 2",
                v(&[1.0, 2.0]),
                Is(true),
            ),
            ("first(result) == nil", v(&[]), Is(true)),
            (
                "mean(result) == 1.5 && median(result) == 1.5",
                v(&[1.0, 2.0]),
                Is(true),
            ),
            ("sum(result) / len(result) > 0.5", v(&[0.4, 0.8]), Is(true)),
            ("abs(result[0]) == 2", v(&[-2.0]), Is(true)),
            ("int(result[0]) == 2", v(&[2.9]), Is(true)),
            ("float(\"1.5\") == 1.5", v(&[]), Is(true)),
            ("string(result[0]) == \"0.5\"", v(&[0.5]), Is(true)),
            ("result[1:] == [2, 3]", v(&[1.0, 2.0, 3.0]), Is(true)),
            ("len(result[:10]) == 3", v(&[1.0, 2.0, 3.0]), Is(true)),
            ("len(result[-2:]) == 2", v(&[1.0, 2.0, 3.0]), Is(true)),
            ("len(1..3) == 3", v(&[]), Is(true)),
            (
                "len(1..100000000) > 0",
                v(&[]),
                Runtime("memory budget exceeded"),
            ),
            ("let x = result[0]; x > 0.5", v(&[0.7]), Is(true)),
            ("let x = 1; let y = 2; x + y == 3", v(&[]), Is(true)),
            (
                "all(result, {let y = # * 2; y > 1})",
                v(&[0.6, 0.9]),
                Is(true),
            ),
            ("{a: 1, 'b': 2}.b == 2", v(&[]), Is(true)),
            ("{a: 1}['missing'] == nil", v(&[]), Is(true)),
            ("\"ab\" + 'c' == \"abc\"", v(&[]), Is(true)),
            (
                "'abc' startsWith 'a' && 'abc' contains 'b'",
                v(&[]),
                Is(true),
            ),
            ("upper('a') == 'A'", v(&[]), Is(true)),
            ("\"\\u00e9\\x41\\n\" == 'éA\\n'", v(&[]), Is(true)),
            ("result[0] > 0.5 // a comment", v(&[0.7]), Is(true)),
            ("/* leading */ result[0] > 0.5", v(&[0.7]), Is(true)),
            (
                "1_000 == 1000 && 0x10 == 16 && 1e3 == 1000 && .5 == 0.5",
                v(&[]),
                Is(true),
            ),
            ("$env.result[0] == 1", v(&[1.0]), Is(true)),
            ("true ?: false", v(&[]), Is(true)),
        ];
        for (src, result, want) in rows {
            check_row(src, result, want);
        }
    }

    fn parse_error(src: &str) -> ConditionError {
        match Condition::parse(src) {
            Ok(c) => panic!("{src:?} should be refused, parsed as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn syntax_errors_are_refused_at_parse_time() {
        let rows: &[(&str, &str)] = &[
            ("", "unexpected token EOF"),
            ("   ", "unexpected token EOF"),
            ("result[0] >=", "unexpected token EOF"),
            ("result[0] >= 0.95)", "unexpected token Bracket(\")\")"),
            ("(result[0]", "unexpected token EOF"),
            ("result[0", "unexpected token EOF"),
            ("'open", "literal not terminated"),
            ("result @ 1", "unrecognized character: U+0040 '@'"),
            ("1abc", "bad number syntax"),
            ("1e", "invalid float literal"),
            ("99999999999999999999", "invalid integer literal"),
            ("0o17 == 15", "invalid integer literal"),
            ("result.", "unexpected end of expression"),
            ("# > 1", "cannot use pointer accessor outside closure"),
            ("all(result)", "unexpected token Bracket(\")\")"),
            ("a ?? b || c", "cannot be mixed"),
            ("/* open", "unclosed comment"),
            ("'\\q'", "invalid char escape"),
            (
                "result[0] > 0.5 result",
                "unexpected token Identifier(\"result\")",
            ),
        ];
        for (src, want) in rows {
            match parse_error(src) {
                ConditionError::Syntax { message, .. } => {
                    assert!(
                        message.contains(want),
                        "{src:?}: {message:?} lacks {want:?}"
                    )
                }
                other => panic!("{src:?}: wanted a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_error("result[0] >=\n  )");
        assert_eq!(
            err,
            ConditionError::Syntax {
                message: "unexpected token Bracket(\")\")".to_string(),
                line: 2,
                column: 3,
            }
        );
        assert_eq!(err.to_string(), "unexpected token Bracket(\")\") (2:3)");
    }

    #[test]
    fn conditions_that_can_never_evaluate_are_refused() {
        let rows: &[(&str, &str)] = &[
            ("foo > 1", "unknown name foo"),
            ("resutl[0] > 1", "unknown name resutl"),
            ("ceiling(result[0]) > 1", "unknown name ceiling"),
            ("uniq(result) == result", "unknown name uniq"),
            ("result == 'x'", "mismatched types []float64 and string"),
            (
                "1 + 'a' > 0",
                "invalid operation: + (mismatched types int and string)",
            ),
            ("result[0] % 2 == 0", "invalid operation: %"),
            ("let result = 1; result > 0", "cannot redeclare result"),
            ("let len = 1; len > 0", "cannot redeclare builtin len"),
            ("all(result, {#foo > 1})", "unknown pointer #foo"),
            ("result(1)", "is not callable"),
            (
                "result.foo > 1",
                "array elements can only be selected using an integer (got string)",
            ),
            ("isNaN()", "not enough arguments to call isNaN"),
            ("default(result)", "not enough arguments to call default"),
            ("isNaN(1, 2)", "too many arguments to call isNaN"),
            (
                "all(result, {#})",
                "predicate should return boolean (got float64)",
            ),
            (
                "result[0.0] > 1",
                "array elements can only be selected using an integer (got float64)",
            ),
            (
                "len(result) == 0 || result >= 0.95",
                "mismatched types []float64 and float64",
            ),
        ];
        for (src, want) in rows {
            match parse_error(src) {
                ConditionError::NeverEvaluates(message) => {
                    assert!(
                        message.contains(want),
                        "{src:?}: {message:?} lacks {want:?}"
                    )
                }
                other => panic!("{src:?}: wanted NeverEvaluates, got {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_constructs_are_refused_with_a_reason() {
        for src in [
            "(let x = 1; x) > 0",
            "let f = isNaN; f(1)",
            "len == nil",
            &format!("{}true", "!".repeat(MAX_DEPTH + 1)),
            &format!(
                "{}1{} == 1",
                "(".repeat(MAX_NESTING),
                ")".repeat(MAX_NESTING)
            ),
            &"1 + ".repeat(MAX_TOKENS),
        ] {
            assert!(
                matches!(parse_error(src), ConditionError::Unsupported(_)),
                "{src:?}"
            );
        }
    }

    #[test]
    fn features_missing_from_this_build_are_refused_not_failed_later() {
        for (src, name) in [
            ("'a' matches 'a'", "matches"),
            ("toJSON(1) == '1'", "toJSON"),
            ("now() == nil", "now"),
        ] {
            match Condition::parse(src) {
                Ok(_) => assert!(
                    !UNAVAILABLE.contains(name),
                    "{src:?} parsed although {name} is unavailable"
                ),
                Err(ConditionError::Unsupported(m)) => {
                    assert!(UNAVAILABLE.contains(name), "{src:?}: {m}")
                }
                Err(other) => panic!("{src:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_deepest_accepted_conditions_run_on_a_small_stack() {
        let d = MAX_DEPTH;
        let shapes = [
            format!("{}true", "!".repeat(d - 1)),
            format!("{}1 == {}", "1 + ".repeat(d - 2), d - 1),
            format!(
                "{}1{} == 1",
                "(true ? 1 : ".repeat(d - 2),
                ")".repeat(d - 2)
            ),
            format!("len({}1{}) == 1", "[".repeat(d - 3), "]".repeat(d - 3)),
            format!(
                "{}true{}",
                "all(result, {".repeat(d / 2 - 1),
                "})".repeat(d / 2 - 1)
            ),
            format!("{}1{} == 1", "abs(".repeat(d - 2), ")".repeat(d - 2)),
            format!(
                "{}1{} == 1",
                "(".repeat(MAX_NESTING - 2),
                ")".repeat(MAX_NESTING - 2)
            ),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                shapes
                    .iter()
                    .map(|src| Condition::parse(src).map(|c| c.evaluate(&v(&[1.0]))))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        let outcomes = handle.join().expect("no stack overflow");
        assert_eq!(outcomes[0], Ok(Ok((d - 1).is_multiple_of(2))));
        for outcome in &outcomes[1..] {
            assert_eq!(*outcome, Ok(Ok(true)));
        }
    }

    #[test]
    fn conditions_are_reusable_and_keep_their_source() {
        let cond: Condition = "result[0] >= 0.95".parse().unwrap();
        assert_eq!(cond.source(), "result[0] >= 0.95");
        assert_eq!(cond.to_string(), "result[0] >= 0.95");
        for _ in 0..3 {
            assert_eq!(cond.evaluate(&v(&[0.99])), Ok(true));
            assert_eq!(cond.evaluate(&v(&[0.9])), Ok(false));
        }
        let copy = cond.clone();
        assert_eq!(copy, cond);
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<Condition>();
    }

    #[test]
    fn error_messages_read_like_argo() {
        let cond = Condition::parse("result[0] >= 0.95").unwrap();
        let err = cond.evaluate(&v(&[])).unwrap_err();
        assert_eq!(err.to_string(), "reflect: slice index out of range");
        let err = Condition::parse("result[0]")
            .unwrap()
            .evaluate(&v(&[1.0]))
            .unwrap_err();
        assert_eq!(err.to_string(), "expected bool, but got float64");
        let err = Condition::parse("result > 1")
            .unwrap()
            .evaluate(&v(&[1.0]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid operation: > (mismatched types []float64 and int)"
        );
    }

    #[test]
    fn go_float_formatting() {
        for (f, want) in [
            (0.5, "0.5"),
            (100000.0, "100000"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
            (NAN, "NaN"),
            (-INF, "-Inf"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    /// A small deterministic generator, so the fuzz below needs no extra dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() % items.len() as u64) as usize]
        }
    }

    fn never_panics(src: &str) {
        let parsed = catch_unwind(|| Condition::parse(src));
        let parsed = parsed.unwrap_or_else(|_| panic!("parse panicked on {src:?}"));
        if let Ok(cond) = parsed {
            for result in [v(&[]), v(&[0.5, NAN, -INF]), s(1.0), s(NAN)] {
                let outcome = catch_unwind(AssertUnwindSafe(|| cond.evaluate(&result)));
                assert!(
                    outcome.is_ok(),
                    "evaluate panicked on {src:?} with {result:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let fixed = [
            "",
            "(",
            ")",
            "[[",
            "]]",
            "{",
            "}",
            "{:}",
            "#",
            ".",
            "?.",
            "??",
            "?",
            ":",
            "'",
            "\"",
            "\"\\",
            "\\",
            "`",
            "\u{0}",
            "é",
            "1e999",
            "0x",
            "0xg",
            "1..",
            "..",
            "...",
            "1...2",
            "not",
            "not in",
            "in",
            "result not",
            "let",
            "let x",
            "let x =",
            "let x = 1",
            "let x = 1;",
            "result |",
            "| x",
            "result | 1",
            "all(",
            "all(result",
            "all(result,",
            "all(result, {",
            "all(result, {#",
            "reduce(result, #acc)",
            "a.b.c",
            "result?.x",
            "result?.[0]",
            "result[",
            "result[:",
            "result[::]",
            "result[1:2:3]",
            "{a:}",
            "{1:2}",
            "{(1): 2}",
            "[1,,2]",
            "[,]",
            "f(,)",
            "-",
            "--1",
            "!!",
            "1 +",
            "* 1",
            "1 ** ** 2",
            "true ? :",
            "true ? 1",
            "//",
            "/*",
            "/**/",
            "#index",
            "map(result, #index)",
            "default(result, 0)[0]",
            "result.x()",
            "result[0].y",
            "nil.x",
            "nil[0]",
            "'a'[0] == 97",
            "[1][0:1][0] == 1",
            "len({}) == 0",
            "{}.x",
            "1 in {}",
            "sort(result)[0] > 0",
            "take(result, 1)",
            "get(result, 5) == nil",
            "keys({a: 1})[0] == 'a'",
            "toPairs({a: 1})",
            "fromPairs([['a', 1]]).a == 1",
            "groupBy(result, # > 1)",
            "trim(1)",
            "split('a,b', ',')[1] == 'b'",
            "repeat('x', 2000000)",
            "'x' * 2",
            "-'x'",
            "!1",
            "1 && true",
            "1 ? 2 : 3",
            "result[9223372036854775807]",
            "result[-9223372036854775807 - 1]",
            "1..9223372036854775807",
            "-9223372036854775807 - 1 .. 9223372036854775807",
            "asInt(1e300) < 0",
            "asInt(result)",
            "asFloat(nil)",
            "isInf('x')",
            "(-9223372036854775807 - 1) % -1 == 0",
            "7 % 0 == 1",
            "$env",
            "$env()",
            "$env.x.y",
            "$env[1]",
        ];
        for src in fixed {
            never_panics(src);
        }
        let vocabulary = [
            "result", "[", "]", "(", ")", "{", "}", "0", "1", "0.95", "-1", "#", "#index", ".",
            "?.", ",", ":", "?", "??", "|", "&&", "||", "and", "or", "not", "!", "in", "==", "!=",
            "<", ">=", "+", "-", "*", "/", "%", "**", "..", "len", "all", "any", "map", "filter",
            "reduce", "#acc", "isNaN", "isInf", "asInt", "asFloat", "default", "isNil", "nil",
            "true", "'s'", "\"t\"", "let", "x", "=", ";", "sum", "first", "max", " ", "$env",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..4000 {
            let len = 1 + rng.next() % 14;
            let src: String = (0..len).map(|_| *rng.pick(&vocabulary)).collect();
            never_panics(&src);
        }
        for _ in 0..1000 {
            let len = rng.next() % 24;
            let bytes: Vec<u8> = (0..len).map(|_| (rng.next() % 128) as u8).collect();
            never_panics(&String::from_utf8_lossy(&bytes));
        }
    }
}
