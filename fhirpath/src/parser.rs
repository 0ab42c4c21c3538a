//! Lexer and parser: FHIRPath source -> AST.

use crate::ParseError;
use crate::datetime::{Date, DateTime, Time};
use crate::value::{Item, Quantity};
use regex::Regex;
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// Backtick-delimited identifier (never a keyword).
    DIdent(String),
    Str(String),
    Int(i64),
    Dec(Decimal),
    Date(String),
    Time(String),
    Ext(String),
    Special(String),
    Op(&'static str),
    Eof,
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

const OPS: [&str; 22] = [
    "<=", ">=", "!=", "!~", ".", ",", "(", ")", "[", "]", "{", "}", "+", "-", "*", "/", "|", "&", "=", "~", "<", ">",
];

fn err(message: impl Into<String>, position: usize) -> ParseError {
    ParseError { message: message.into(), position }
}

impl<'s> Lexer<'s> {
    fn peek_byte(&self, off: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + off).copied()
    }

    fn skip_ws(&mut self) -> Result<(), ParseError> {
        loop {
            let Some(b) = self.peek_byte(0) else { return Ok(()) };
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if b == b'/' && self.peek_byte(1) == Some(b'/') {
                while let Some(b) = self.peek_byte(0) {
                    if b == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else if b == b'/' && self.peek_byte(1) == Some(b'*') {
                let start = self.pos;
                match self.src[self.pos + 2..].find("*/") {
                    Some(i) => self.pos += 2 + i + 2,
                    None => return Err(err("unterminated comment", start)),
                }
            } else {
                return Ok(());
            }
        }
    }

    fn read_quoted(&mut self, q: u8) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let bytes = self.src.as_bytes();
        loop {
            let Some(&b) = bytes.get(self.pos) else { return Err(err("unterminated string", start)) };
            if b == q {
                self.pos += 1;
                return Ok(out);
            }
            if b == b'\\' {
                let Some(&e) = bytes.get(self.pos + 1) else { return Err(err("bad escape", self.pos)) };
                self.pos += 2;
                match e {
                    b'\'' => out.push('\''),
                    b'"' => out.push('"'),
                    b'`' => out.push('`'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let hex = self.src.get(self.pos..self.pos + 4).ok_or_else(|| err("bad unicode escape", self.pos))?;
                        let v = u32::from_str_radix(hex, 16).map_err(|_| err("bad unicode escape", self.pos))?;
                        self.pos += 4;
                        // surrogate pairs
                        if (0xD800..0xDC00).contains(&v) && self.src[self.pos..].starts_with("\\u")
                            && let Some(lo) = self.src.get(self.pos + 2..self.pos + 6).and_then(|h| u32::from_str_radix(h, 16).ok())
                                && (0xDC00..0xE000).contains(&lo) {
                                    self.pos += 6;
                                    let c = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                                    out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                    continue;
                                }
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    _ => return Err(err("invalid escape sequence", self.pos - 2)),
                }
                continue;
            }
            let ch = self.src[self.pos..].chars().next().unwrap();
            out.push(ch);
            self.pos += ch.len_utf8();
        }
    }

    fn digits(&mut self, n: usize) -> bool {
        let b = self.src.as_bytes();
        if self.pos + n <= b.len() && b[self.pos..self.pos + n].iter().all(u8::is_ascii_digit) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn lit_char(&mut self, c: u8) -> bool {
        if self.peek_byte(0) == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// hh(:mm(:ss(.fff)?)?)?
    fn time_part(&mut self) -> bool {
        if !self.digits(2) {
            return false;
        }
        let save = self.pos;
        if self.lit_char(b':') && self.digits(2) {
            let save2 = self.pos;
            if self.lit_char(b':') && self.digits(2) {
                let save3 = self.pos;
                if self.lit_char(b'.') && self.digits(1) {
                    while self.digits(1) {}
                } else {
                    self.pos = save3;
                }
            } else {
                self.pos = save2;
            }
        } else {
            self.pos = save;
        }
        true
    }

    fn tz_part(&mut self) {
        if self.lit_char(b'Z') {
            return;
        }
        let save = self.pos;
        if (self.lit_char(b'+') || self.lit_char(b'-')) && self.digits(2) && self.lit_char(b':') && self.digits(2) {
            return;
        }
        self.pos = save;
    }

    fn next(&mut self) -> Result<(Tok, usize), ParseError> {
        self.skip_ws()?;
        let start = self.pos;
        let Some(b) = self.peek_byte(0) else { return Ok((Tok::Eof, start)) };
        let tok = match b {
            b'\'' => Tok::Str(self.read_quoted(b'\'')?),
            b'`' => Tok::DIdent(self.read_quoted(b'`')?),
            b'@' => {
                self.pos += 1;
                if self.lit_char(b'T') {
                    if !self.time_part() {
                        return Err(err("invalid time literal", start));
                    }
                    Tok::Time(self.src[start + 2..self.pos].to_string())
                } else {
                    if !self.digits(4) {
                        return Err(err("invalid date literal", start));
                    }
                    let save = self.pos;
                    if self.lit_char(b'-') && self.digits(2) {
                        let save2 = self.pos;
                        if !(self.lit_char(b'-') && self.digits(2)) {
                            self.pos = save2;
                        }
                    } else {
                        self.pos = save;
                    }
                    if self.lit_char(b'T') {
                        if self.time_part() {
                            self.tz_part();
                        }
                        Tok::Date(self.src[start + 1..self.pos].to_string())
                    } else {
                        let s = self.src[start + 1..self.pos].to_string();
                        Tok::Date(s)
                    }
                }
            }
            b'%' => {
                self.pos += 1;
                match self.peek_byte(0) {
                    Some(b'`') => Tok::Ext(self.read_quoted(b'`')?),
                    Some(b'\'') => Tok::Ext(self.read_quoted(b'\'')?),
                    _ => {
                        let s = self.pos;
                        while let Some(c) = self.peek_byte(0) {
                            if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
                                self.pos += 1;
                            } else {
                                break;
                            }
                        }
                        if s == self.pos {
                            return Err(err("expected variable name after %", start));
                        }
                        Tok::Ext(self.src[s..self.pos].to_string())
                    }
                }
            }
            b'$' => {
                self.pos += 1;
                let s = self.pos;
                while let Some(c) = self.peek_byte(0) {
                    if c.is_ascii_alphanumeric() || c == b'_' {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Tok::Special(self.src[s..self.pos].to_string())
            }
            b'0'..=b'9' => {
                while self.digits(1) {}
                let mut is_dec = false;
                if self.peek_byte(0) == Some(b'.') && self.peek_byte(1).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                    while self.digits(1) {}
                    is_dec = true;
                }
                let text = &self.src[start..self.pos];
                if is_dec {
                    Tok::Dec(Decimal::from_str(text).map_err(|_| err("invalid decimal", start))?)
                } else {
                    match text.parse::<i64>() {
                        Ok(v) if v <= i32::MAX as i64 + 1 => Tok::Int(v),
                        _ => Tok::Dec(Decimal::from_str(text).map_err(|_| err("invalid number", start))?),
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while let Some(c) = self.peek_byte(0) {
                    if c.is_ascii_alphanumeric() || c == b'_' {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Tok::Ident(self.src[start..self.pos].to_string())
            }
            _ => {
                let rest = &self.src[self.pos..];
                match OPS.iter().find(|o| rest.starts_with(**o)) {
                    Some(o) => {
                        self.pos += o.len();
                        Tok::Op(o)
                    }
                    None => return Err(err(format!("unexpected character '{}'", rest.chars().next().unwrap()), start)),
                }
            }
        };
        Ok((tok, start))
    }
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// A type specifier (`Patient`, `FHIR.Patient`, `System.String`).
#[derive(Debug, Clone)]
pub(crate) struct TypeSpec {
    pub namespace: Option<Box<str>>,
    pub name: Box<str>,
}

#[derive(Debug)]
pub(crate) struct FuncCall {
    pub name: Box<str>,
    pub func: crate::eval::Func,
    pub args: Vec<Expr>,
    /// Pre-compiled regex for matches()/replaceMatches() with a literal pattern.
    pub regex: Option<Regex>,
    /// Type argument for is()/as()/ofType().
    pub type_arg: Option<TypeSpec>,
}

#[derive(Debug)]
pub(crate) enum Expr {
    Empty,
    Literal(Item<'static>),
    /// Identifier at the start of a path (navigate from the input focus, or a type name).
    Ident(Box<str>),
    /// `expr.name`
    Member(Box<Expr>, Box<str>),
    /// `expr.f(args)` (target None = invoked on the input focus)
    Call(Option<Box<Expr>>, Box<FuncCall>),
    Index(Box<Expr>, Box<Expr>),
    This,
    IndexVar,
    Total,
    Var(Box<str>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, TypeSpec),
    As(Box<Expr>, TypeSpec),
}

/// A parsed FHIRPath expression. Parse once, evaluate many times; `Send + Sync`.
#[derive(Debug)]
pub struct Expression {
    pub(crate) src: String,
    pub(crate) root: Expr,
}

impl Expression {
    /// Parse (and pre-compile) an expression.
    pub fn parse(src: &str) -> Result<Expression, ParseError> {
        let mut lx = Lexer { src, pos: 0 };
        let mut toks = Vec::new();
        loop {
            let (t, p) = lx.next()?;
            let eof = t == Tok::Eof;
            toks.push((t, p));
            if eof {
                break;
            }
        }
        let mut p = Parser { toks, i: 0 };
        let root = p.expr(0)?;
        if p.peek() != &Tok::Eof {
            return Err(err("unexpected token", p.pos()));
        }
        Ok(Expression { src: src.to_string(), root })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
}

fn binop_info(t: &Tok) -> Option<(BinOp, u8)> {
    // precedence: higher binds tighter
    let r = match t {
        Tok::Op("*") => (BinOp::Mul, 10),
        Tok::Op("/") => (BinOp::Div, 10),
        Tok::Ident(s) if s == "div" => (BinOp::IntDiv, 10),
        Tok::Ident(s) if s == "mod" => (BinOp::Mod, 10),
        Tok::Op("+") => (BinOp::Add, 9),
        Tok::Op("-") => (BinOp::Sub, 9),
        Tok::Op("&") => (BinOp::Concat, 9),
        // is/as: 8 (handled specially)
        Tok::Op("|") => (BinOp::Union, 7),
        Tok::Op("<") => (BinOp::Lt, 6),
        Tok::Op(">") => (BinOp::Gt, 6),
        Tok::Op("<=") => (BinOp::Le, 6),
        Tok::Op(">=") => (BinOp::Ge, 6),
        Tok::Op("=") => (BinOp::Eq, 5),
        Tok::Op("!=") => (BinOp::Ne, 5),
        Tok::Op("~") => (BinOp::Equiv, 5),
        Tok::Op("!~") => (BinOp::NEquiv, 5),
        Tok::Ident(s) if s == "in" => (BinOp::In, 4),
        Tok::Ident(s) if s == "contains" => (BinOp::Contains, 4),
        Tok::Ident(s) if s == "and" => (BinOp::And, 3),
        Tok::Ident(s) if s == "or" => (BinOp::Or, 2),
        Tok::Ident(s) if s == "xor" => (BinOp::Xor, 2),
        Tok::Ident(s) if s == "implies" => (BinOp::Implies, 1),
        _ => return None,
    };
    Some(r)
}

const CALENDAR_UNITS: [&str; 16] = [
    "year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours", "minute", "minutes", "second",
    "seconds", "millisecond", "milliseconds",
];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].0
    }
    fn pos(&self) -> usize {
        self.toks[self.i].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].0.clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn expect(&mut self, op: &'static str) -> Result<(), ParseError> {
        if self.peek() == &Tok::Op(op) {
            self.bump();
            Ok(())
        } else {
            Err(err(format!("expected '{op}'"), self.pos()))
        }
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            if let Tok::Ident(s) = &t
                && (s == "is" || s == "as") && min_prec <= 8 {
                    self.bump();
                    let ts = self.type_spec()?;
                    lhs = if s == "is" { Expr::Is(Box::new(lhs), ts) } else { Expr::As(Box::new(lhs), ts) };
                    continue;
                }
            let Some((op, prec)) = binop_info(&t) else { break };
            if prec < min_prec {
                break;
            }
            self.bump();
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let first = self.ident_any()?;
        if self.peek() == &Tok::Op(".")
            && let Tok::Ident(_) | Tok::DIdent(_) = self.peek_at(1) {
                self.bump();
                let second = self.ident_any()?;
                return Ok(TypeSpec { namespace: Some(first.into()), name: second.into() });
            }
        Ok(TypeSpec { namespace: None, name: first.into() })
    }

    fn ident_any(&mut self) -> Result<String, ParseError> {
        match self.bump() {
            Tok::Ident(s) | Tok::DIdent(s) => Ok(s),
            _ => Err(err("expected identifier", self.toks[self.i.saturating_sub(1)].1)),
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Op("-") => {
                self.bump();
                let e = self.unary()?;
                Ok(match e {
                    Expr::Literal(Item::Integer(v)) => Expr::Literal(Item::Integer(-v)),
                    Expr::Literal(Item::Decimal(v)) => Expr::Literal(Item::Decimal(-v)),
                    Expr::Literal(Item::Quantity(q)) => {
                        Expr::Literal(Item::Quantity(Quantity { value: -q.value, unit: q.unit }))
                    }
                    e => Expr::Neg(Box::new(e)),
                })
            }
            Tok::Op("+") => {
                self.bump();
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Tok::Op(".") => {
                    self.bump();
                    let name = self.ident_any()?;
                    if self.peek() == &Tok::Op("(") {
                        let call = self.call(name)?;
                        e = Expr::Call(Some(Box::new(e)), Box::new(call));
                    } else {
                        e = Expr::Member(Box::new(e), name.into());
                    }
                }
                Tok::Op("[") => {
                    self.bump();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn call(&mut self, name: String) -> Result<FuncCall, ParseError> {
        let pos = self.pos();
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() != &Tok::Op(")") {
            loop {
                args.push(self.expr(0)?);
                if self.peek() == &Tok::Op(",") {
                    self.bump();
                    continue;
                }
                break;
            }
        }
        self.expect(")")?;
        let func = crate::eval::lookup_func(&name, args.len()).map_err(|m| err(m, pos))?;
        let mut type_arg = None;
        if matches!(name.as_str(), "is" | "as" | "ofType") {
            type_arg = Some(expr_to_typespec(&args[0]).ok_or_else(|| err("expected a type name", pos))?);
        }
        let mut regex = None;
        if matches!(name.as_str(), "matches" | "replaceMatches" | "matchesFull")
            && let Some(Expr::Literal(Item::String(p))) = args.first() {
                let pat = if name == "matchesFull" { format!("^(?:{p})$") } else { format!("(?s){p}") };
                regex = Some(Regex::new(&pat).map_err(|e| err(format!("invalid regex: {e}"), pos))?);
            }
        Ok(FuncCall { name: name.into(), func, args, regex, type_arg })
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        let t = self.bump();
        Ok(match t {
            Tok::Int(v) => self.maybe_quantity(Decimal::from(v), Item::Integer(v))?,
            Tok::Dec(d) => self.maybe_quantity(d, Item::Decimal(d))?,
            Tok::Str(s) => Expr::Literal(Item::String(Arc::from(s))),
            Tok::Date(s) => {
                if let Some(d) = s.strip_suffix('T') {
                    let dt = DateTime::parse(d).ok_or_else(|| err("invalid dateTime literal", pos))?;
                    Expr::Literal(Item::DateTime(dt))
                } else if s.contains('T') {
                    let dt = DateTime::parse(&s).ok_or_else(|| err("invalid dateTime literal", pos))?;
                    Expr::Literal(Item::DateTime(dt))
                } else {
                    Expr::Literal(Item::Date(Date::parse(&s).ok_or_else(|| err("invalid date literal", pos))?))
                }
            }
            Tok::Time(s) => Expr::Literal(Item::Time(Time::parse(&s).ok_or_else(|| err("invalid time literal", pos))?)),
            Tok::Ext(name) => Expr::Var(name.into()),
            Tok::Special(s) => match s.as_str() {
                "this" => Expr::This,
                "index" => Expr::IndexVar,
                "total" => Expr::Total,
                _ => return Err(err(format!("unknown special variable ${s}"), pos)),
            },
            Tok::Op("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                e
            }
            Tok::Op("{") => {
                self.expect("}")?;
                Expr::Empty
            }
            Tok::Ident(s) => {
                if self.peek() == &Tok::Op("(") {
                    let call = self.call(s)?;
                    Expr::Call(None, Box::new(call))
                } else {
                    match s.as_str() {
                        "true" => Expr::Literal(Item::Boolean(true)),
                        "false" => Expr::Literal(Item::Boolean(false)),
                        _ => Expr::Ident(s.into()),
                    }
                }
            }
            Tok::DIdent(s) => Expr::Ident(s.into()),
            Tok::Eof => return Err(err("unexpected end of expression", pos)),
            Tok::Op(o) => return Err(err(format!("unexpected '{o}'"), pos)),
        })
    }

    fn maybe_quantity(&mut self, value: Decimal, lit: Item<'static>) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Tok::Str(u) => {
                self.bump();
                Ok(Expr::Literal(Item::Quantity(Quantity { value, unit: Arc::from(u) })))
            }
            Tok::Ident(u) if CALENDAR_UNITS.contains(&u.as_str()) => {
                self.bump();
                let u = u.strip_suffix('s').unwrap_or(&u).to_string();
                Ok(Expr::Literal(Item::Quantity(Quantity { value, unit: Arc::from(u) })))
            }
            _ => Ok(Expr::Literal(lit)),
        }
    }
}

fn expr_to_typespec(e: &Expr) -> Option<TypeSpec> {
    match e {
        Expr::Ident(n) => Some(TypeSpec { namespace: None, name: n.clone() }),
        Expr::Member(b, n) => match b.as_ref() {
            Expr::Ident(ns) => Some(TypeSpec { namespace: Some(ns.clone()), name: n.clone() }),
            _ => None,
        },
        _ => None,
    }
}
