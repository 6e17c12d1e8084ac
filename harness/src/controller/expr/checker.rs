//! Checker: Go expr's `checker/checker.go`, for the types a Prometheus result can have.

use super::*;

/// Static types as Go expr's checker sees them; `Any` is Go's `interface {}`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ty {
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
    pub(super) fn is_any(&self) -> bool {
        *self == Ty::Any
    }
    pub(super) fn is_nil(&self) -> bool {
        *self == Ty::Nil
    }
    pub(super) fn is_bool(&self) -> bool {
        *self == Ty::Bool
    }
    pub(super) fn is_int(&self) -> bool {
        matches!(self, Ty::Int | Ty::Int64)
    }
    pub(super) fn is_float(&self) -> bool {
        *self == Ty::Float
    }
    pub(super) fn is_number(&self) -> bool {
        self.is_int() || self.is_float()
    }
    pub(super) fn is_str(&self) -> bool {
        *self == Ty::Str
    }
    pub(super) fn is_array(&self) -> bool {
        matches!(self, Ty::Array(_))
    }
    pub(super) fn is_map(&self) -> bool {
        *self == Ty::Map
    }

    /// Go's `reflect.Kind`, enough to tell "same kind" apart.
    pub(super) fn kind(&self) -> u8 {
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

    pub(super) fn elem(&self) -> Ty {
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
pub(super) fn either_any(l: &Ty, r: &Ty, accepts: &[fn(&Ty) -> bool]) -> bool {
    (l.is_any() && r.is_any())
        || (l.is_any() && accepts.iter().any(|f| f(r)))
        || (r.is_any() && accepts.iter().any(|f| f(l)))
}

pub(super) fn comparable(l: &Ty, r: &Ty) -> bool {
    l.is_nil()
        || r.is_nil()
        || l.kind() == r.kind()
        || (l.is_number() && r.is_number())
        || l.is_any()
        || r.is_any()
}

pub(super) fn combined(a: &Ty, b: &Ty) -> Ty {
    if a.kind() == b.kind() {
        a.clone()
    } else if a.is_float() || b.is_float() {
        Ty::Float
    } else {
        Ty::Int
    }
}

pub(super) fn assignable(t: &Ty, to: &Ty) -> bool {
    t == to || to.is_any()
}

/// Parameter types of typed functions, as Go's `checkArguments` compares them.
#[derive(Clone, Copy)]
pub(super) enum Param {
    Any,
    Float,
    Int,
    Str,
    ArrStr,
    ArrAny,
}

impl Param {
    pub(super) fn name(self) -> &'static str {
        match self {
            Param::Any => "interface {}",
            Param::Float => "float64",
            Param::Int => "int",
            Param::Str => "string",
            Param::ArrStr => "[]string",
            Param::ArrAny => "[]interface {}",
        }
    }

    pub(super) fn accepts(self, t: &Ty) -> bool {
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
pub(super) fn argo_signature(name: &str) -> Option<(&'static [Param], Ty, &'static str)> {
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
pub(super) fn builtin_signatures(name: &str) -> Option<(&'static [&'static [Param]], Ty)> {
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

pub(super) type CResult = Result<Ty, String>;

pub(super) struct Checker {
    pub(super) result: Ty,
    pub(super) vars: Vec<(String, Ty)>,
    /// Innermost last: the collection a closure iterates and its extra pointers.
    pub(super) scopes: Vec<(Ty, Vec<(&'static str, Ty)>)>,
}

impl Checker {
    pub(super) fn new(result: Ty) -> Self {
        Checker {
            result,
            vars: Vec::new(),
            scopes: Vec::new(),
        }
    }

    pub(super) fn env_type(&self, name: &str) -> Option<Ty> {
        if name == "result" {
            return Some(self.result.clone());
        }
        argo_signature(name).map(|(_, _, go)| Ty::Func(go))
    }

    pub(super) fn var(&self, name: &str) -> Option<Ty> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    pub(super) fn ident(&self, name: &str) -> CResult {
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

    pub(super) fn check(&mut self, node: &Node) -> CResult {
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

    pub(super) fn pointer(&self, name: &str) -> CResult {
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

    pub(super) fn binary(&mut self, op: &'static str, l: &Node, r: &Node) -> CResult {
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

    pub(super) fn member(&mut self, base: &Node, prop: &Node) -> CResult {
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

    pub(super) fn call(&mut self, name: &str, args: &[Node]) -> CResult {
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

    pub(super) fn typed_call(
        &mut self,
        name: &str,
        params: &[Param],
        ret: Ty,
        args: &[Node],
    ) -> CResult {
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

    pub(super) fn predicate(&mut self, name: &str, args: &[Node]) -> CResult {
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
    pub(super) fn builtin(&mut self, name: &str, args: &[Node]) -> Option<CResult> {
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
pub(super) fn validate_builtin(
    name: &str,
    types: &[Ty],
    count: impl Fn(usize) -> Option<String>,
) -> CResult {
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
