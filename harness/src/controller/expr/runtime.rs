//! Runtime: the bindings and the functions the printed program calls (Argo's functions, Go's
//! indexing, slicing, ranges and formatting).

use super::*;
pub(super) struct Bindings<'a> {
    pub(super) result: &'a Value,
    pub(super) consts: &'a [Value],
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

pub(super) type Fallible = expr::Result<Value>;

pub(super) fn fail(message: impl Into<String>) -> Fallible {
    Err(expr::Error::ExprError(message.into()))
}

pub(super) fn exactly<const N: usize>(args: Vec<Value>, name: &str) -> expr::Result<[Value; N]> {
    let n = args.len();
    args.try_into().map_err(|_| {
        expr::Error::ExprError(format!(
            "invalid number of arguments for {name} (expected {N}, got {n})"
        ))
    })
}

pub(super) static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
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
pub(super) fn fetch(base: &Value, key: &Value) -> Fallible {
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

pub(super) fn go_index(key: &Value, len: usize, what: &str) -> expr::Result<usize> {
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
pub(super) fn go_int(v: &Value) -> expr::Result<i64> {
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
pub(super) fn go_trunc(f: f64) -> i64 {
    let bound = -(i64::MIN as f64);
    if f.is_nan() || !(-bound..bound).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Go's `runtime.Slice`, which clamps rather than failing.
pub(super) fn slice(base: &Value, from: &Value, to: &Value) -> Fallible {
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

pub(super) fn range(from: &Value, to: &Value) -> Fallible {
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
pub(super) fn float_arg(v: &Value, result: Option<&Value>) -> expr::Result<f64> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Nil => fail("interface conversion: interface {} is nil, not float64").map(|_| 0.0),
        other => Err(expr::Error::ExprError(format!(
            "interface conversion: interface {{}} is {}, not float64",
            dynamic_type(other, result)
        ))),
    }
}

pub(super) fn parse_go_int(s: &str) -> expr::Result<i64> {
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

pub(super) fn parse_go_float(s: &str) -> expr::Result<f64> {
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
pub(super) fn go_type(v: &Value) -> &'static str {
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
pub(super) fn asserted_type(v: &Value) -> &'static str {
    if v.is_nil() { "nil" } else { go_type(v) }
}

/// Go's `%v`.
pub(super) fn go_format(v: &Value) -> String {
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
pub(super) fn go_float(f: f64) -> String {
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
