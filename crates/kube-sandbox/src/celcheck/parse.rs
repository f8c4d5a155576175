//! A CEL parser that keeps what the API server's error messages need: every node's
//! position (in characters, as cel-go counts them) and macros expanded into the same
//! comprehensions cel-go builds, so that type checking and cost estimation see the
//! expression the API server sees.
//!
//! Grammar and macro shapes follow the CEL specification and cel-go's parser
//! (`parser/parser.go`, `parser/macro.go`); `||`/`&&` chains are left-associative
//! (cel-go balances them, which changes no type and no maximum cost).

use std::fmt;

/// One parsed expression, with the position of each node.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub expr: Expr,
    /// Character offset of each node, by id.
    offsets: Vec<usize>,
    source: Vec<char>,
}

impl Parsed {
    /// (line, column) of a node, 1-based line and 0-based column, as cel-go's `Location`.
    pub fn location(&self, id: u32) -> (usize, usize) {
        let offset = self.offsets.get(id as usize).copied().unwrap_or(0);
        let mut line = 1;
        let mut column = 0;
        for c in self.source.iter().take(offset) {
            if *c == '\n' {
                line += 1;
                column = 0;
            } else {
                column += 1;
            }
        }
        (line, column)
    }

    /// Character offset of a node.
    pub fn offset(&self, id: u32) -> usize {
        self.offsets.get(id as usize).copied().unwrap_or(0)
    }

    /// The source line `line` (1-based).
    pub fn line(&self, line: usize) -> String {
        let text: String = self.source.iter().collect();
        text.split('\n').nth(line - 1).unwrap_or("").to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub id: u32,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Literal(Literal),
    Ident(String),
    Select {
        operand: Box<Expr>,
        field: String,
        test_only: bool,
    },
    Call {
        function: String,
        target: Option<Box<Expr>>,
        args: Vec<Expr>,
    },
    List {
        elements: Vec<Expr>,
        optional: Vec<usize>,
    },
    Map {
        entries: Vec<MapEntry>,
    },
    Struct {
        type_name: String,
        /// Character offset where the type name starts.
        type_offset: usize,
        fields: Vec<StructField>,
    },
    Comprehension(Box<Comprehension>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    pub id: u32,
    pub key: Expr,
    pub value: Expr,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StructField {
    pub id: u32,
    pub name: String,
    /// Character offset of the field name.
    pub name_offset: usize,
    pub value: Expr,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comprehension {
    pub iter_range: Expr,
    pub iter_var: String,
    pub iter_var2: Option<String>,
    pub accu_var: String,
    pub accu_init: Expr,
    pub loop_condition: Expr,
    pub loop_step: Expr,
    pub result: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    String(String),
    Bytes(Vec<u8>),
    Null,
}

/// The accumulator variable of macro comprehensions (cel-go's `parser.AccumulatorName`).
pub const ACCUMULATOR: &str = "@result";

/// A syntax error, located like cel-go's.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset)
    }
}

const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Expressions nested deeper than this are refused (cel-go's default recursion limit).
const MAX_DEPTH: usize = 250;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(String),
    Uint(String),
    Double(String),
    Str(String),
    Bytes(Vec<u8>),
    Ident(String),
    Punct(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    offset: usize,
}

const PUNCTS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", ".?", "[?", "<", ">", "!", "+", "-", "*", "/", "%", "?",
    ":", ".", ",", "(", ")", "[", "]", "{", "}",
];

fn lex(src: &[char]) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut i = 0;
    let err = |offset: usize, message: String| SyntaxError { offset, message };
    while i < src.len() {
        let c = src[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && src.get(i + 1) == Some(&'/') {
            while i < src.len() && src[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // String and bytes literals, with r/R (raw) and b/B (bytes) prefixes.
        let mut raw = false;
        let mut bytes = false;
        let mut j = i;
        while j < src.len() && j - i < 2 {
            match src[j] {
                'r' | 'R' if !raw => raw = true,
                'b' | 'B' if !bytes => bytes = true,
                _ => break,
            }
            j += 1;
        }
        if j < src.len() && (src[j] == '"' || src[j] == '\'') {
            let (text, next) = lex_string(src, j, raw).map_err(|m| err(start, m))?;
            i = next;
            out.push(Token {
                tok: if bytes {
                    Tok::Bytes(text)
                } else {
                    Tok::Str(
                        String::from_utf8(text).map_err(|_| {
                            err(start, "invalid UTF-8 in string literal".to_string())
                        })?,
                    )
                },
                offset: start,
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < src.len() && (src[i].is_ascii_alphanumeric() || src[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[start..i].iter().collect()),
                offset: start,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && src.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let (tok, next) = lex_number(src, i).map_err(|m| err(start, m))?;
            i = next;
            out.push(Token { tok, offset: start });
            continue;
        }
        let rest: String = src[i..(i + 2).min(src.len())].iter().collect();
        let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
            return Err(err(start, format!("token recognition error at: '{c}'")));
        };
        i += p.chars().count();
        out.push(Token {
            tok: Tok::Punct(p),
            offset: start,
        });
    }
    out.push(Token {
        tok: Tok::End,
        offset: src.len(),
    });
    Ok(out)
}

fn lex_number(src: &[char], mut i: usize) -> Result<(Tok, usize), String> {
    let start = i;
    if src[i] == '0' && matches!(src.get(i + 1), Some('x') | Some('X')) {
        i += 2;
        while i < src.len() && src[i].is_ascii_hexdigit() {
            i += 1;
        }
        let text: String = src[start..i].iter().collect();
        if matches!(src.get(i), Some('u') | Some('U')) {
            return Ok((Tok::Uint(text), i + 1));
        }
        return Ok((Tok::Int(text), i));
    }
    while i < src.len() && src[i].is_ascii_digit() {
        i += 1;
    }
    let mut double = false;
    if src.get(i) == Some(&'.') && src.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
        double = true;
        i += 1;
        while i < src.len() && src[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(src.get(i), Some('e') | Some('E')) {
        let mut j = i + 1;
        if matches!(src.get(j), Some('+') | Some('-')) {
            j += 1;
        }
        if src.get(j).is_some_and(|d| d.is_ascii_digit()) {
            double = true;
            i = j;
            while i < src.len() && src[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text: String = src[start..i].iter().collect();
    if double {
        return Ok((Tok::Double(text), i));
    }
    if matches!(src.get(i), Some('u') | Some('U')) {
        return Ok((Tok::Uint(text), i + 1));
    }
    Ok((Tok::Int(text), i))
}

/// A quoted literal starting at `i` (the quote); returns its bytes and the offset after it.
fn lex_string(src: &[char], i: usize, raw: bool) -> Result<(Vec<u8>, usize), String> {
    let quote = src[i];
    let triple = src.get(i + 1) == Some(&quote) && src.get(i + 2) == Some(&quote);
    let mut j = if triple { i + 3 } else { i + 1 };
    let mut out = Vec::new();
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    loop {
        let Some(&c) = src.get(j) else {
            return Err("unterminated string literal".to_string());
        };
        if triple {
            if c == quote && src.get(j + 1) == Some(&quote) && src.get(j + 2) == Some(&quote) {
                return Ok((out, j + 3));
            }
        } else if c == quote {
            return Ok((out, j + 1));
        } else if c == '\n' || c == '\r' {
            return Err("newline in string literal".to_string());
        }
        if c == '\\' && !raw {
            let Some(&e) = src.get(j + 1) else {
                return Err("unterminated escape sequence".to_string());
            };
            j += 2;
            match e {
                '\\' => out.push(b'\\'),
                '\'' => out.push(b'\''),
                '"' => out.push(b'"'),
                '`' => out.push(b'`'),
                '?' => out.push(b'?'),
                'a' => out.push(7),
                'b' => out.push(8),
                'f' => out.push(12),
                'n' => out.push(b'\n'),
                'r' => out.push(b'\r'),
                't' => out.push(b'\t'),
                'v' => out.push(11),
                'x' | 'X' | 'u' | 'U' => {
                    let n = match e {
                        'x' | 'X' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let digits: String = src.get(j..j + n).unwrap_or(&[]).iter().collect();
                    let v = u32::from_str_radix(&digits, 16)
                        .map_err(|_| format!("invalid escape sequence \\{e}{digits}"))?;
                    j += n;
                    if n == 2 {
                        out.push(v as u8);
                    } else {
                        push(
                            &mut out,
                            char::from_u32(v).ok_or("invalid unicode code point")?,
                        );
                    }
                }
                '0'..='3' => {
                    let digits: String = src.get(j - 1..j + 2).unwrap_or(&[]).iter().collect();
                    let v = u8::from_str_radix(&digits, 8)
                        .map_err(|_| format!("invalid octal escape \\{digits}"))?;
                    j += 2;
                    out.push(v);
                }
                other => return Err(format!("invalid escape sequence \\{other}")),
            }
            continue;
        }
        push(&mut out, c);
        j += 1;
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    offsets: Vec<usize>,
    depth: usize,
}

type PResult<T> = Result<T, SyntaxError>;

/// Parses `source`; macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`) are expanded.
pub fn parse(source: &str) -> Result<Parsed, SyntaxError> {
    let chars: Vec<char> = source.chars().collect();
    let tokens = lex(&chars)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        offsets: Vec::new(),
        depth: 0,
    };
    let expr = p.expr()?;
    if p.peek() != &Tok::End {
        let t = p.tokens[p.pos].clone();
        return Err(p.unexpected(&t));
    }
    Ok(Parsed {
        expr,
        offsets: p.offsets,
        source: chars,
    })
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].offset
    }

    fn advance(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> PResult<Token> {
        if self.is(p) {
            Ok(self.advance())
        } else {
            let t = self.tokens[self.pos].clone();
            Err(self.unexpected(&t))
        }
    }

    fn unexpected(&self, t: &Token) -> SyntaxError {
        let found = match &t.tok {
            Tok::End => "<EOF>".to_string(),
            Tok::Punct(p) => format!("'{p}'"),
            Tok::Ident(s) | Tok::Int(s) | Tok::Uint(s) | Tok::Double(s) => format!("'{s}'"),
            Tok::Str(s) => format!("'{s:?}'"),
            Tok::Bytes(_) => "bytes literal".to_string(),
        };
        SyntaxError {
            offset: t.offset,
            message: format!("Syntax error: mismatched input {found}"),
        }
    }

    fn node(&mut self, offset: usize, kind: Kind) -> Expr {
        let id = self.offsets.len() as u32;
        self.offsets.push(offset);
        Expr { id, kind }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                offset: self.offset(),
                message: format!("expression recursion limit exceeded: {MAX_DEPTH}"),
            });
        }
        Ok(())
    }

    fn call(&mut self, offset: usize, function: &str, args: Vec<Expr>) -> Expr {
        self.node(
            offset,
            Kind::Call {
                function: function.to_string(),
                target: None,
                args,
            },
        )
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let cond = self.or()?;
        let result = if self.is("?") {
            let at = self.advance().offset;
            let then = self.or()?;
            self.expect(":")?;
            let otherwise = self.expr()?;
            self.call(at, "_?_:_", vec![cond, then, otherwise])
        } else {
            cond
        };
        self.depth -= 1;
        Ok(result)
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut lhs = self.and()?;
        while self.is("||") {
            let at = self.advance().offset;
            let rhs = self.and()?;
            lhs = self.call(at, "_||_", vec![lhs, rhs]);
        }
        Ok(lhs)
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut lhs = self.relation()?;
        while self.is("&&") {
            let at = self.advance().offset;
            let rhs = self.relation()?;
            lhs = self.call(at, "_&&_", vec![lhs, rhs]);
        }
        Ok(lhs)
    }

    fn relation(&mut self) -> PResult<Expr> {
        let mut lhs = self.additive()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("<") => "_<_",
                Tok::Punct("<=") => "_<=_",
                Tok::Punct(">") => "_>_",
                Tok::Punct(">=") => "_>=_",
                Tok::Punct("==") => "_==_",
                Tok::Punct("!=") => "_!=_",
                Tok::Ident(s) if s == "in" => "@in",
                _ => return Ok(lhs),
            };
            let at = self.advance().offset;
            let rhs = self.additive()?;
            lhs = self.call(at, op, vec![lhs, rhs]);
        }
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("+") => "_+_",
                Tok::Punct("-") => "_-_",
                _ => return Ok(lhs),
            };
            let at = self.advance().offset;
            let rhs = self.multiplicative()?;
            lhs = self.call(at, op, vec![lhs, rhs]);
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("*") => "_*_",
                Tok::Punct("/") => "_/_",
                Tok::Punct("%") => "_%_",
                _ => return Ok(lhs),
            };
            let at = self.advance().offset;
            let rhs = self.unary()?;
            lhs = self.call(at, op, vec![lhs, rhs]);
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.is("!") || self.is("-") {
            let op = if self.is("!") { "!" } else { "-" };
            let at = self.offset();
            let mut count = 0;
            while self.is(op) {
                self.advance();
                count += 1;
            }
            // A negative number is a literal, as in cel-go (`-1`, `-9223372036854775808`).
            if op == "-" && count % 2 == 1 && matches!(self.peek(), Tok::Int(_) | Tok::Double(_)) {
                let t = self.advance();
                let lit = match &t.tok {
                    Tok::Int(s) => Literal::Int(parse_int(&format!("-{s}"), at)?),
                    Tok::Double(s) => Literal::Double(-parse_double(s, at)?),
                    _ => unreachable_literal(at)?,
                };
                let lit = self.node(at, Kind::Literal(lit));
                let operand = self.member_suffixes(lit)?;
                return Ok(self.wrap_unary(at, "-_", count - 1, operand));
            }
            let operand = self.member()?;
            let function = if op == "!" { "!_" } else { "-_" };
            // Pairs cancel out, as cel-go does.
            return Ok(self.wrap_unary(at, function, count % 2, operand));
        }
        self.member()
    }

    fn wrap_unary(&mut self, at: usize, function: &str, times: usize, operand: Expr) -> Expr {
        let mut e = operand;
        for _ in 0..times {
            e = self.call(at, function, vec![e]);
        }
        e
    }

    fn member(&mut self) -> PResult<Expr> {
        let primary = self.primary()?;
        self.member_suffixes(primary)
    }

    fn member_suffixes(&mut self, mut e: Expr) -> PResult<Expr> {
        loop {
            if self.is(".") || self.is(".?") {
                let optional = self.is(".?");
                let at = self.advance().offset;
                let Tok::Ident(name) = self.peek().clone() else {
                    let t = self.tokens[self.pos].clone();
                    return Err(self.unexpected(&t));
                };
                self.advance();
                if !optional && self.is("(") {
                    let open = self.advance().offset;
                    let args = self.args(")")?;
                    e = self.receiver_call(open, &name, e, args)?;
                } else if optional {
                    let field = self.node(at, Kind::Literal(Literal::String(name)));
                    e = self.call(at, "_?._", vec![e, field]);
                } else {
                    e = self.node(
                        at,
                        Kind::Select {
                            operand: Box::new(e),
                            field: name,
                            test_only: false,
                        },
                    );
                }
            } else if self.is("[") || self.is("[?") {
                let optional = self.is("[?");
                let at = self.advance().offset;
                let index = self.expr()?;
                self.expect("]")?;
                e = self.call(at, if optional { "_[?_]" } else { "_[_]" }, vec![e, index]);
            } else if self.is("{") && is_qualified_name(&e) {
                let at = self.advance().offset;
                let type_name = qualified_name(&e).unwrap_or_default();
                let type_offset = self.root_offset(&e);
                e = self.struct_body(at, type_name, type_offset)?;
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self, close: &str) -> PResult<Vec<Expr>> {
        let mut args = Vec::new();
        if self.eat(close) {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(close) {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.advance();
        match t.tok.clone() {
            Tok::Int(s) => Ok(self.node(
                t.offset,
                Kind::Literal(Literal::Int(parse_int(&s, t.offset)?)),
            )),
            Tok::Uint(s) => {
                let v = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    u64::from_str_radix(hex, 16)
                } else {
                    s.parse::<u64>()
                }
                .map_err(|_| SyntaxError {
                    offset: t.offset,
                    message: format!("invalid uint literal {s}"),
                })?;
                Ok(self.node(t.offset, Kind::Literal(Literal::Uint(v))))
            }
            Tok::Double(s) => Ok(self.node(
                t.offset,
                Kind::Literal(Literal::Double(parse_double(&s, t.offset)?)),
            )),
            Tok::Str(s) => Ok(self.node(t.offset, Kind::Literal(Literal::String(s)))),
            Tok::Bytes(b) => Ok(self.node(t.offset, Kind::Literal(Literal::Bytes(b)))),
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(self.node(t.offset, Kind::Literal(Literal::Bool(true)))),
                "false" => Ok(self.node(t.offset, Kind::Literal(Literal::Bool(false)))),
                "null" => Ok(self.node(t.offset, Kind::Literal(Literal::Null))),
                "in" => Err(self.unexpected(&t)),
                n if RESERVED.contains(&n) => Err(SyntaxError {
                    offset: t.offset,
                    message: format!("reserved identifier: {n}"),
                }),
                _ => {
                    if self.is("(") {
                        let open = self.advance().offset;
                        let args = self.args(")")?;
                        self.global_call(open, &name, args)
                    } else {
                        Ok(self.node(t.offset, Kind::Ident(name)))
                    }
                }
            },
            Tok::Punct(".") => {
                // A leading dot names the root scope: `.name`.
                let Tok::Ident(name) = self.peek().clone() else {
                    let t = self.tokens[self.pos].clone();
                    return Err(self.unexpected(&t));
                };
                self.advance();
                let name = format!(".{name}");
                if self.is("(") {
                    let open = self.advance().offset;
                    let args = self.args(")")?;
                    self.global_call(open, &name, args)
                } else {
                    Ok(self.node(t.offset, Kind::Ident(name)))
                }
            }
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => {
                let mut elements = Vec::new();
                let mut optional = Vec::new();
                if !self.eat("]") {
                    loop {
                        if self.eat("?") {
                            optional.push(elements.len());
                        }
                        elements.push(self.expr()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                        if self.eat("]") {
                            break;
                        }
                    }
                }
                Ok(self.node(t.offset, Kind::List { elements, optional }))
            }
            Tok::Punct("{") => {
                let mut entries = Vec::new();
                if !self.eat("}") {
                    loop {
                        let optional = self.eat("?");
                        let key = self.expr()?;
                        let colon = self.expect(":")?.offset;
                        let value = self.expr()?;
                        let id = self.node(colon, Kind::Literal(Literal::Null)).id;
                        entries.push(MapEntry {
                            id,
                            key,
                            value,
                            optional,
                        });
                        if self.eat("}") {
                            break;
                        }
                        self.expect(",")?;
                        if self.eat("}") {
                            break;
                        }
                    }
                }
                Ok(self.node(t.offset, Kind::Map { entries }))
            }
            _ => Err(self.unexpected(&t)),
        }
    }

    /// Where a qualified name starts: the offset of its leftmost identifier.
    fn root_offset(&self, e: &Expr) -> usize {
        match &e.kind {
            Kind::Select { operand, .. } => self.root_offset(operand),
            _ => self.offsets.get(e.id as usize).copied().unwrap_or(0),
        }
    }

    fn struct_body(&mut self, at: usize, type_name: String, type_offset: usize) -> PResult<Expr> {
        let mut fields = Vec::new();
        if !self.eat("}") {
            loop {
                let optional = self.eat("?");
                let Tok::Ident(name) = self.peek().clone() else {
                    let t = self.tokens[self.pos].clone();
                    return Err(self.unexpected(&t));
                };
                let name_offset = self.advance().offset;
                let colon = self.expect(":")?.offset;
                let value = self.expr()?;
                let id = self.node(colon, Kind::Literal(Literal::Null)).id;
                fields.push(StructField {
                    id,
                    name,
                    name_offset,
                    value,
                    optional,
                });
                if self.eat("}") {
                    break;
                }
                self.expect(",")?;
                if self.eat("}") {
                    break;
                }
            }
        }
        Ok(self.node(
            at,
            Kind::Struct {
                type_name,
                type_offset,
                fields,
            },
        ))
    }

    fn global_call(&mut self, at: usize, name: &str, args: Vec<Expr>) -> PResult<Expr> {
        if name == "has" && args.len() == 1 {
            let mut args = args;
            let arg = args.remove(0);
            return match arg.kind {
                Kind::Select { operand, field, .. } => Ok(self.node(
                    at,
                    Kind::Select {
                        operand,
                        field,
                        test_only: true,
                    },
                )),
                _ => Err(SyntaxError {
                    offset: at,
                    message: "invalid argument to has() macro".to_string(),
                }),
            };
        }
        Ok(self.call(at, name, args))
    }

    fn receiver_call(
        &mut self,
        at: usize,
        name: &str,
        target: Expr,
        mut args: Vec<Expr>,
    ) -> PResult<Expr> {
        let macro_arity = match name {
            "all" | "exists" | "exists_one" | "existsOne" | "filter" => args.len() == 2,
            "map" => args.len() == 2 || args.len() == 3,
            _ => false,
        };
        if !macro_arity {
            return Ok(self.node(
                at,
                Kind::Call {
                    function: name.to_string(),
                    target: Some(Box::new(target)),
                    args,
                },
            ));
        }
        let var = match &args[0].kind {
            Kind::Ident(v) if !v.starts_with('.') => v.clone(),
            _ => {
                return Err(SyntaxError {
                    offset: at,
                    message: "argument must be a simple name".to_string(),
                })
            }
        };
        let predicate = args.pop().unwrap_or_else(|| args[0].clone());
        let accu = |p: &mut Parser| p.node(at, Kind::Ident(ACCUMULATOR.to_string()));
        let lit = |p: &mut Parser, l: Literal| p.node(at, Kind::Literal(l));
        let (init, condition, step, result) = match name {
            "all" => {
                let init = lit(self, Literal::Bool(true));
                let a = accu(self);
                let condition = self.call(at, "@not_strictly_false", vec![a]);
                let a = accu(self);
                let step = self.call(at, "_&&_", vec![a, predicate]);
                let result = accu(self);
                (init, condition, step, result)
            }
            "exists" => {
                let init = lit(self, Literal::Bool(false));
                let a = accu(self);
                let not = self.call(at, "!_", vec![a]);
                let condition = self.call(at, "@not_strictly_false", vec![not]);
                let a = accu(self);
                let step = self.call(at, "_||_", vec![a, predicate]);
                let result = accu(self);
                (init, condition, step, result)
            }
            "exists_one" | "existsOne" => {
                let init = lit(self, Literal::Int(0));
                let condition = lit(self, Literal::Bool(true));
                let a = accu(self);
                let one = lit(self, Literal::Int(1));
                let plus = self.call(at, "_+_", vec![a, one]);
                let a = accu(self);
                let step = self.call(at, "_?_:_", vec![predicate, plus, a]);
                let a = accu(self);
                let one = lit(self, Literal::Int(1));
                let result = self.call(at, "_==_", vec![a, one]);
                (init, condition, step, result)
            }
            "map" => {
                let filter = if args.len() == 2 { args.pop() } else { None };
                let init = self.node(
                    at,
                    Kind::List {
                        elements: vec![],
                        optional: vec![],
                    },
                );
                let condition = lit(self, Literal::Bool(true));
                let a = accu(self);
                let one = self.node(
                    at,
                    Kind::List {
                        elements: vec![predicate],
                        optional: vec![],
                    },
                );
                let mut step = self.call(at, "_+_", vec![a, one]);
                if let Some(filter) = filter {
                    let a = accu(self);
                    step = self.call(at, "_?_:_", vec![filter, step, a]);
                }
                let result = accu(self);
                (init, condition, step, result)
            }
            _ => {
                // filter
                let init = self.node(
                    at,
                    Kind::List {
                        elements: vec![],
                        optional: vec![],
                    },
                );
                let condition = lit(self, Literal::Bool(true));
                let a = accu(self);
                let v = self.node(at, Kind::Ident(var.clone()));
                let one = self.node(
                    at,
                    Kind::List {
                        elements: vec![v],
                        optional: vec![],
                    },
                );
                let add = self.call(at, "_+_", vec![a, one]);
                let a = accu(self);
                let step = self.call(at, "_?_:_", vec![predicate, add, a]);
                let result = accu(self);
                (init, condition, step, result)
            }
        };
        Ok(self.node(
            at,
            Kind::Comprehension(Box::new(Comprehension {
                iter_range: target,
                iter_var: var,
                iter_var2: None,
                accu_var: ACCUMULATOR.to_string(),
                accu_init: init,
                loop_condition: condition,
                loop_step: step,
                result,
            })),
        ))
    }
}

fn unreachable_literal<T>(offset: usize) -> PResult<T> {
    Err(SyntaxError {
        offset,
        message: "internal parser error".to_string(),
    })
}

fn parse_int(s: &str, offset: usize) -> PResult<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let parsed = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16)
    } else {
        digits.parse::<i128>()
    };
    let v = parsed.map(|v| if neg { -v } else { v });
    v.ok()
        .and_then(|v| i64::try_from(v).ok())
        .ok_or(SyntaxError {
            offset,
            message: format!("invalid int literal {s}"),
        })
}

fn parse_double(s: &str, offset: usize) -> PResult<f64> {
    s.parse::<f64>().map_err(|_| SyntaxError {
        offset,
        message: format!("invalid double literal {s}"),
    })
}

fn is_qualified_name(e: &Expr) -> bool {
    qualified_name(e).is_some()
}

/// `a.b.c` as a dotted name, when `e` is only identifiers and selections.
pub fn qualified_name(e: &Expr) -> Option<String> {
    match &e.kind {
        Kind::Ident(n) => Some(n.clone()),
        Kind::Select {
            operand,
            field,
            test_only: false,
        } => qualified_name(operand).map(|p| format!("{p}.{field}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(e: &Expr) -> String {
        match &e.kind {
            Kind::Literal(l) => format!("{l:?}"),
            Kind::Ident(n) => n.clone(),
            Kind::Select {
                operand,
                field,
                test_only,
            } => {
                if *test_only {
                    format!("has({}.{field})", shape(operand))
                } else {
                    format!("{}.{field}", shape(operand))
                }
            }
            Kind::Call {
                function,
                target,
                args,
            } => {
                let args: Vec<String> = args.iter().map(shape).collect();
                match target {
                    Some(t) => format!("{}.{function}({})", shape(t), args.join(", ")),
                    None => format!("{function}({})", args.join(", ")),
                }
            }
            Kind::List { elements, .. } => {
                format!(
                    "[{}]",
                    elements.iter().map(shape).collect::<Vec<_>>().join(", ")
                )
            }
            Kind::Map { entries } => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|e| format!("{}: {}", shape(&e.key), shape(&e.value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Struct {
                type_name, fields, ..
            } => format!(
                "{type_name}{{{}}}",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name, shape(&f.value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Comprehension(c) => format!(
                "comprehension({} in {}; init {}; cond {}; step {}; result {})",
                c.iter_var,
                shape(&c.iter_range),
                shape(&c.accu_init),
                shape(&c.loop_condition),
                shape(&c.loop_step),
                shape(&c.result)
            ),
        }
    }

    #[test]
    fn precedence_and_macros_match_cel_go() {
        let cases = [
            ("a || b && c", "_||_(a, _&&_(b, c))"),
            ("1 + 2 * 3 < 4", "_<_(_+_(Int(1), _*_(Int(2), Int(3))), Int(4))"),
            ("x ? y : z ? w : v", "_?_:_(x, y, _?_:_(z, w, v))"),
            ("-1", "Int(-1)"),
            ("!!a", "a"),
            ("!a", "!_(a)"),
            ("a in [1, 2]", "@in(a, [Int(1), Int(2)])"),
            ("has(self.x)", "has(self.x)"),
            ("self.x[0].y", "_[_](self.x, Int(0)).y"),
            ("quantity(self).sign()", "quantity(self).sign()"),
            (
                "l.all(e, e > 0)",
                "comprehension(e in l; init Bool(true); cond @not_strictly_false(@result); step _&&_(@result, _>_(e, Int(0))); result @result)",
            ),
            (
                "l.exists_one(e, e)",
                "comprehension(e in l; init Int(0); cond Bool(true); step _?_:_(e, _+_(@result, Int(1)), @result); result _==_(@result, Int(1)))",
            ),
            ("JSONPatch{op: 'add'}", "JSONPatch{op: String(\"add\")}"),
            ("Object.spec{a: 1}", "Object.spec{a: Int(1)}"),
            ("{'a': 1}", "{String(\"a\"): Int(1)}"),
            ("'a\\u0041' + r'\\n'", "_+_(String(\"aA\"), String(\"\\\\n\"))"),
        ];
        for (src, want) in cases {
            let p = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(shape(&p.expr), want, "{src}");
        }
    }

    #[test]
    fn call_positions_are_the_open_parenthesis_as_in_cel_go() {
        let src = "self != 0 && (isQuantity(self) && quantity(self).sign() > 0)";
        let p = parse(src).unwrap();
        fn find(e: &Expr, f: &str) -> Option<u32> {
            match &e.kind {
                Kind::Call {
                    function,
                    target,
                    args,
                } => {
                    if function == f {
                        return Some(e.id);
                    }
                    target
                        .iter()
                        .map(|t| t.as_ref())
                        .chain(args.iter())
                        .find_map(|a| find(a, f))
                }
                _ => None,
            }
        }
        let id = find(&p.expr, "sign").unwrap();
        let (line, col) = p.location(id);
        assert_eq!((line, col + 1), (1, src.find("sign(").unwrap() + 5));
    }

    #[test]
    fn syntax_errors_are_reported_not_panicked() {
        for bad in [
            "a +",
            "(a",
            "'abc",
            "a.",
            "1 2",
            "has(a)",
            "a.all(1, b)",
            "\\",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
