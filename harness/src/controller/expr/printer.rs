//! Printer: the checked tree as crate source, with Go's behaviour through the runtime's helpers.

use super::*;

/// Builtins this build of the crate registers only as stubs that name a missing feature.
pub(super) static UNAVAILABLE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
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
pub(super) struct Printer {
    pub(super) out: String,
    pub(super) consts: Vec<Value>,
    /// Let-bound names in scope, innermost last, with their crate names.
    pub(super) vars: Vec<(String, String)>,
    /// One frame per closure being printed: its id and which pointers its body used.
    pub(super) closures: Vec<ClosureFrame>,
    pub(super) counter: usize,
}

pub(super) struct ClosureFrame {
    pub(super) id: usize,
    pub(super) used: HashSet<&'static str>,
}

pub(super) type Printed = Result<(), String>;

impl Printer {
    pub(super) fn root(&mut self, node: &Node) -> Printed {
        self.program(node)
    }

    pub(super) fn fresh(&mut self) -> usize {
        self.counter += 1;
        self.counter
    }

    pub(super) fn constant(&mut self, value: Value) {
        let _ = write!(self.out, "{CONST_PREFIX}{}", self.consts.len());
        self.consts.push(value);
    }

    /// A position where the crate accepts `let` statements: the whole condition, a closure body,
    /// or the body of another `let` there.
    pub(super) fn program(&mut self, node: &Node) -> Printed {
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
    pub(super) fn expr(&mut self, node: &Node, floats: bool) -> Printed {
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

    pub(super) fn binary(&mut self, op: &str, l: &Node, r: &Node, floats: bool) -> Printed {
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

    pub(super) fn call_helper(&mut self, name: &str, args: &[Option<&Node>]) -> Printed {
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
