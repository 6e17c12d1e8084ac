//! Parser: Go expr's `parser/parser.go` (its precedences, `not in`, pipes, `??`, `let`,
//! closures), tokens to a tree.

use super::*;
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
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
    pub(super) fn children(&self) -> Vec<&Node> {
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

pub(super) fn too_deep(limit: usize) -> ConditionError {
    ConditionError::Unsupported(format!("condition is nested more than {limit} levels deep"))
}

/// Iterative, so that measuring a deep tree cannot itself overflow the stack.
pub(super) fn depth_exceeds(root: &Node, limit: usize) -> bool {
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
pub(super) fn binary_op(op: &str) -> Option<(u16, bool, &'static str)> {
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

pub(super) fn unary_op(op: &str) -> Option<(u16, &'static str)> {
    Some(match op {
        "not" => (50, "not"),
        "!" => (50, "!"),
        "-" => (90, "-"),
        "+" => (90, "+"),
        _ => return None,
    })
}

/// Builtins that take a closure, and how many arguments Go's parser reads for them.
pub(super) fn predicate_arity(name: &str) -> Option<usize> {
    match name {
        "all" | "none" | "any" | "one" | "filter" | "map" | "count" | "find" | "findIndex"
        | "findLast" | "findLastIndex" | "groupBy" => Some(2),
        "reduce" => Some(3),
        _ => None,
    }
}

/// The rest of expr v1.15's builtins (see the module documentation about `ceil`/`floor`/`round`).
pub(super) const BUILTINS: &[&str] = &[
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

pub(super) fn is_builtin(name: &str) -> bool {
    predicate_arity(name).is_some() || BUILTINS.contains(&name)
}

pub(super) struct Parser {
    pub(super) tokens: Vec<Token>,
    pub(super) pos: usize,
    pub(super) closure_depth: usize,
    pub(super) nesting: usize,
}

pub(super) type PResult<T> = Result<T, ConditionError>;

impl Parser {
    pub(super) fn parse(src: &str) -> PResult<Node> {
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

    pub(super) fn current(&self) -> &Token {
        &self.tokens[self.pos]
    }

    pub(super) fn error_at(&self, token: &Token, message: impl Into<String>) -> ConditionError {
        ConditionError::Syntax {
            message: message.into(),
            line: token.line,
            column: token.column,
        }
    }

    pub(super) fn unexpected(&self) -> ConditionError {
        let token = self.current();
        self.error_at(token, format!("unexpected token {token}"))
    }

    pub(super) fn next(&mut self) -> PResult<()> {
        if self.pos + 1 >= self.tokens.len() {
            return Err(self.error_at(self.current(), "unexpected end of expression"));
        }
        self.pos += 1;
        Ok(())
    }

    pub(super) fn is(&self, kind: Kind, value: &str) -> bool {
        self.current().is(kind, value)
    }

    pub(super) fn expect(&mut self, kind: Kind, value: &str) -> PResult<()> {
        if self.is(kind, value) {
            self.next()
        } else {
            Err(self.unexpected())
        }
    }

    pub(super) fn expect_kind(&mut self, kind: Kind) -> PResult<Token> {
        let token = self.current().clone();
        if token.kind == kind {
            self.next()?;
            Ok(token)
        } else {
            Err(self.unexpected())
        }
    }

    pub(super) fn expression(&mut self, precedence: u16) -> PResult<Node> {
        if self.nesting >= MAX_NESTING {
            return Err(too_deep(MAX_NESTING));
        }
        self.nesting += 1;
        let node = self.expression_at(precedence);
        self.nesting -= 1;
        node
    }

    pub(super) fn expression_at(&mut self, precedence: u16) -> PResult<Node> {
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

    pub(super) fn let_declaration(&mut self) -> PResult<Node> {
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

    pub(super) fn conditional(&mut self, mut node: Node) -> PResult<Node> {
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

    pub(super) fn primary(&mut self) -> PResult<Node> {
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

    pub(super) fn secondary(&mut self) -> PResult<Node> {
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

    pub(super) fn call(&mut self, name: String) -> PResult<Node> {
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

    pub(super) fn closure(&mut self) -> PResult<Node> {
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

    pub(super) fn arguments(&mut self) -> PResult<Vec<Node>> {
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

    pub(super) fn array(&mut self) -> PResult<Node> {
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

    pub(super) fn map(&mut self) -> PResult<Node> {
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

    pub(super) fn postfix(&mut self, mut node: Node) -> PResult<Node> {
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

    pub(super) fn pipe(&mut self, left: Node) -> PResult<Node> {
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
pub(super) fn number_literal(raw: &str) -> Result<Node, String> {
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
