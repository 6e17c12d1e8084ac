//! Tests of every stage, through the public API and the stages' own entry points.

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
    let cond = Condition::parse(src).unwrap_or_else(|e| panic!("{src:?} should parse, got {e:?}"));
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
        "result", "[", "]", "(", ")", "{", "}", "0", "1", "0.95", "-1", "#", "#index", ".", "?.",
        ",", ":", "?", "??", "|", "&&", "||", "and", "or", "not", "!", "in", "==", "!=", "<", ">=",
        "+", "-", "*", "/", "%", "**", "..", "len", "all", "any", "map", "filter", "reduce",
        "#acc", "isNaN", "isInf", "asInt", "asFloat", "default", "isNil", "nil", "true", "'s'",
        "\"t\"", "let", "x", "=", ";", "sum", "first", "max", " ", "$env",
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
