//! The language of `successCondition` / `failureCondition`: expr-lang as Argo Rollouts v1.9.1 runs
//! it (antonmedv/expr v1.15.5 behind `utils/evaluate/evaluate.go`).
//!
//! A verdict hangs on details where the `expr-lang` crate and Go expr disagree. The one that
//! matters most: the crate answers `nil` for an index past the end of an array, while Go fails
//! with `reflect: slice index out of range`. Argo turns that failure into an Error measurement
//! (retried every 10 s, five in a row to fail the metric), so `result[0] == 0` on an empty vector
//! must be an error here too, not `false`. The crate is therefore never handed the user's text:
//!
//! 1. A lexer ([`lexer`]) and a parser ([`parser`]) that follow Go expr's lexer and Pratt parser
//!    (its precedences, `not in`, pipes, `??`, `let`, closures with or without braces) build a
//!    tree. Syntax errors surface here, once, so a policy can be refused before a rollout starts.
//! 2. A checker ([`checker`]) follows Go expr's compile-time type check against the Go type
//!    Argo binds `result` to: `float64` for a scalar, `[]float64` for a vector. Go rejects
//!    `result >= 0.95` on a vector at compile time, even in a branch that `||` would skip, and so
//!    does this. Both shapes are checked at parse time; a condition that fails for both (an
//!    unknown name, `1 + "a"`) could only ever produce Error measurements and is refused.
//! 3. The tree is printed back ([`printer`]) as crate source in which indexing, slicing, ranges,
//!    map literals and closure pointers go through helpers with Go's behaviour ([`runtime`]),
//!    and literals are passed as bindings instead of being re-quoted (the crate's string
//!    unescaping is not Go's).
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

use ::expr::{Context, ContextProvider, Environment, Program, Value};

mod checker;
mod lexer;
mod parser;
mod printer;
mod runtime;
#[cfg(test)]
mod tests;

use self::checker::*;
use self::lexer::*;
use self::parser::*;
use self::printer::*;
use self::runtime::*;

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
