//! FHIRPath function implementations.

use crate::datetime::{Date, DateTime, Precision, Time};
use crate::eval::{Ev, Frame, R, compare, equals, fail};
use crate::model::Kind;
use crate::parser::{Expr, FuncCall};
use crate::value::{Item, Node, Prim, Quantity, TypeInfo, json_prop};
use crate::EvalError;
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc;

macro_rules! funcs {
    ($($v:ident = $name:literal ($min:expr, $max:expr)),* $(,)?) => {
        /// Function identifiers (resolved at parse time).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($v),* }
        pub(crate) fn lookup_func(name: &str, nargs: usize) -> Result<Func, String> {
            let (f, min, max) = match name {
                $($name => (Func::$v, $min, $max),)*
                _ => return Err(format!("unknown function '{name}'")),
            };
            if nargs < min || nargs > max {
                return Err(format!("wrong number of arguments for {name}(): {nargs}"));
            }
            Ok(f)
        }
    };
}

funcs! {
    Empty = "empty" (0, 0), Exists = "exists" (0, 1), All = "all" (1, 1), AllTrue = "allTrue" (0, 0),
    AnyTrue = "anyTrue" (0, 0), AllFalse = "allFalse" (0, 0), AnyFalse = "anyFalse" (0, 0),
    SubsetOf = "subsetOf" (1, 1), SupersetOf = "supersetOf" (1, 1), Count = "count" (0, 0),
    Distinct = "distinct" (0, 0), IsDistinct = "isDistinct" (0, 0),
    Where = "where" (1, 1), Select = "select" (1, 1), Repeat = "repeat" (1, 1), RepeatAll = "repeatAll" (1, 1),
    OfType = "ofType" (1, 1),
    Single = "single" (0, 0), First = "first" (0, 0), Last = "last" (0, 0), Tail = "tail" (0, 0),
    Skip = "skip" (1, 1), Take = "take" (1, 1), Intersect = "intersect" (1, 1), Exclude = "exclude" (1, 1),
    Union = "union" (1, 1), Combine = "combine" (1, 1),
    Iif = "iif" (2, 3),
    ToBoolean = "toBoolean" (0, 0), ConvertsToBoolean = "convertsToBoolean" (0, 0),
    ToInteger = "toInteger" (0, 0), ConvertsToInteger = "convertsToInteger" (0, 0),
    ToDecimal = "toDecimal" (0, 0), ConvertsToDecimal = "convertsToDecimal" (0, 0),
    ToStringF = "toString" (0, 0), ConvertsToString = "convertsToString" (0, 0),
    ToDate = "toDate" (0, 0), ConvertsToDate = "convertsToDate" (0, 0),
    ToDateTime = "toDateTime" (0, 0), ConvertsToDateTime = "convertsToDateTime" (0, 0),
    ToTime = "toTime" (0, 0), ConvertsToTime = "convertsToTime" (0, 0),
    ToQuantity = "toQuantity" (0, 1), ConvertsToQuantity = "convertsToQuantity" (0, 1),
    IndexOf = "indexOf" (1, 1), LastIndexOf = "lastIndexOf" (1, 1), Substring = "substring" (1, 2),
    StartsWith = "startsWith" (1, 1), EndsWith = "endsWith" (1, 1), ContainsStr = "contains" (1, 1),
    Upper = "upper" (0, 0), Lower = "lower" (0, 0), Replace = "replace" (2, 2), Matches = "matches" (1, 1),
    MatchesFull = "matchesFull" (1, 1), ReplaceMatches = "replaceMatches" (2, 2), Length = "length" (0, 0),
    ToChars = "toChars" (0, 0), Trim = "trim" (0, 0), Split = "split" (1, 1), Join = "join" (0, 1),
    Encode = "encode" (1, 1), Decode = "decode" (1, 1), Escape = "escape" (1, 1), Unescape = "unescape" (1, 1),
    Abs = "abs" (0, 0), Ceiling = "ceiling" (0, 0), Exp = "exp" (0, 0), Floor = "floor" (0, 0), Ln = "ln" (0, 0),
    Log = "log" (1, 1), Power = "power" (1, 1), Round = "round" (0, 1), Sqrt = "sqrt" (0, 0),
    Truncate = "truncate" (0, 0),
    Children = "children" (0, 0), Descendants = "descendants" (0, 0),
    Trace = "trace" (1, 2), Now = "now" (0, 0), Today = "today" (0, 0), TimeOfDay = "timeOfDay" (0, 0),
    Aggregate = "aggregate" (1, 2), Is = "is" (1, 1), As = "as" (1, 1), Not = "not" (0, 0),
    Extension = "extension" (1, 1), HasValue = "hasValue" (0, 0), GetValue = "getValue" (0, 0),
    Resolve = "resolve" (0, 0), HtmlChecks = "htmlChecks" (0, 0), HtmlChecks2 = "htmlchecks" (0, 0),
    ConformsTo = "conformsTo" (1, 1), MemberOf = "memberOf" (1, 1), Subsumes = "subsumes" (1, 1),
    SubsumedBy = "subsumedBy" (1, 1), TypeF = "type" (0, 0), Sort = "sort" (0, 16),
    LowBoundary = "lowBoundary" (0, 1), HighBoundary = "highBoundary" (0, 1), PrecisionF = "precision" (0, 0),
    Comparable = "comparable" (1, 1), Sum = "sum" (0, 0), Min = "min" (0, 0), Max = "max" (0, 0),
    Avg = "avg" (0, 0), CheckModifiers = "checkModifiers" (1, 1), ElementDefinition = "elementDefinition" (0, 0),
    Slice = "slice" (2, 2), DefineVariable = "defineVariable" (1, 2),
}

fn b<'a>(v: bool) -> R<'a> {
    Ok(vec![Item::Boolean(v)])
}
fn s<'a>(v: impl Into<Arc<str>>) -> R<'a> {
    Ok(vec![Item::String(v.into())])
}
fn one<'a>(v: Option<Item<'a>>) -> R<'a> {
    Ok(v.into_iter().collect())
}

/// Identity used by repeat(): nodes by position in the tree, values by equality.
fn same_item(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node(x), Item::Node(y)) => {
            let pv = match (x.value, y.value) {
                (Some(p), Some(q)) => std::ptr::eq(p, q),
                (None, None) => true,
                _ => false,
            };
            let pe = match (x.ext, y.ext) {
                (Some(p), Some(q)) => std::ptr::eq(p, q),
                (None, None) => true,
                _ => false,
            };
            pv && pe && x.tid == y.tid
        }
        (Item::Node(_), _) | (_, Item::Node(_)) => false,
        _ => equals(a, b) == Some(true),
    }
}

fn contains_item(coll: &[Item<'_>], it: &Item<'_>) -> bool {
    coll.iter().any(|c| equals(c, it) == Some(true))
}

fn parse_decimal_str(s: &str) -> Option<Decimal> {
    let t = s.trim();
    let bytes = t.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let mut parts = body.splitn(2, '.');
    let ip = parts.next()?;
    let fp = parts.next();
    if ip.is_empty() || !ip.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = fp
        && (f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit())) {
            return None;
        }
    Decimal::from_str(t).ok()
}

fn parse_int_str(s: &str) -> Option<i64> {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|v| *v >= i32::MIN as i64 && *v <= i32::MAX as i64)
}

fn parse_quantity_str(s: &str) -> Option<Quantity> {
    let t = s.trim();
    let (num, rest) = match t.find(' ') {
        Some(i) => (&t[..i], t[i + 1..].trim()),
        None => (t, ""),
    };
    let v = parse_decimal_str(num)?;
    if rest.is_empty() {
        return Some(Quantity { value: v, unit: Arc::from("1") });
    }
    if rest.len() >= 2 && rest.starts_with('\'') && rest.ends_with('\'') {
        return Some(Quantity { value: v, unit: Arc::from(&rest[1..rest.len() - 1]) });
    }
    let unit = match rest {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" => "week",
        "day" | "days" => "day",
        "hour" | "hours" => "hour",
        "minute" | "minutes" => "minute",
        "second" | "seconds" => "second",
        "millisecond" | "milliseconds" => "millisecond",
        _ => return None,
    };
    Some(Quantity { value: v, unit: Arc::from(unit) })
}

fn dec_to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

fn f64_dec<'a>(v: f64) -> R<'a> {
    if !v.is_finite() {
        return Ok(Vec::new());
    }
    Ok(Decimal::from_f64(v).map(|d| Item::Decimal(d.round_dp(8).normalize())).into_iter().collect())
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&apos;", "'").replace("&amp;", "&")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                let mut c = B64[((v >> (18 - 6 * i)) & 63) as usize] as char;
                if url {
                    c = match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    };
                }
                out.push(c);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' => continue,
            _ => return None,
        } as u32;
        buf = buf << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl<'c, 'a> Ev<'c, 'a> {
    /// Evaluate a non-lambda argument (relative to the call site's input).
    fn arg(&self, fc: &FuncCall, i: usize, input: &[Item<'a>], fr: &Frame<'a>) -> R<'a> {
        match fc.args.get(i) {
            Some(e) => self.eval(e, input, fr),
            None => Ok(Vec::new()),
        }
    }

    fn arg_str<'f>(&self, fc: &'f FuncCall, i: usize, input: &[Item<'a>], fr: &Frame<'a>) -> Result<Option<Cow<'f, str>>, EvalError> {
        // a literal argument is borrowed from the expression
        if let Some(Expr::Literal(Item::String(x))) = fc.args.get(i) {
            return Ok(Some(Cow::Borrowed(x)));
        }
        let v = self.arg(fc, i, input, fr)?;
        match v.len() {
            0 => Ok(None),
            1 => match v[0].prim() {
                Prim::Str(x) => Ok(Some(Cow::Owned(x.to_string()))),
                _ => fail(format!("{}(): expected a String argument", fc.name)),
            },
            _ => fail(format!("{}(): expected a single argument", fc.name)),
        }
    }

    fn arg_int(&self, fc: &FuncCall, i: usize, input: &[Item<'a>], fr: &Frame<'a>) -> Result<Option<i64>, EvalError> {
        let v = self.arg(fc, i, input, fr)?;
        self.single_int(&v, &fc.name)
    }

    /// Evaluate a lambda argument for one item.
    fn lambda(&self, e: &Expr, it: &Item<'a>, idx: usize, fr: &Frame<'a>) -> R<'a> {
        let f = Frame { this: Some(it.clone()), index: Some(idx as i64), total: fr.total.clone() };
        self.eval(e, std::slice::from_ref(it), &f)
    }

    fn lambda_bool(&self, e: &Expr, it: &Item<'a>, idx: usize, fr: &Frame<'a>, what: &str) -> Result<Option<bool>, EvalError> {
        let f = Frame { this: Some(it.clone()), index: Some(idx as i64), total: fr.total.clone() };
        self.eval_bool(e, std::slice::from_ref(it), &f, what)
    }

    /// Single string input (empty -> None), error for non-strings.
    fn focus_str<'f>(&self, fc: &FuncCall, focus: &'f [Item<'a>]) -> Result<Option<&'f str>, EvalError> {
        match focus.len() {
            0 => Ok(None),
            1 => match focus[0].prim() {
                Prim::Str(x) => Ok(Some(x)),
                _ => fail(format!("{}(): input is not a String ({})", fc.name, focus[0].type_name())),
            },
            _ => fail(format!("{}(): input has more than one item", fc.name)),
        }
    }

    fn focus_single(&self, fc: &FuncCall, focus: &[Item<'a>]) -> Result<Option<Item<'a>>, EvalError> {
        match focus.len() {
            0 => Ok(None),
            1 => Ok(Some(focus[0].clone())),
            _ => fail(format!("{}(): input has more than one item", fc.name)),
        }
    }

    fn focus_num(&self, fc: &FuncCall, focus: &[Item<'a>]) -> Result<Option<Prim<'static>>, EvalError> {
        let Some(it) = self.focus_single(fc, focus)? else { return Ok(None) };
        match it.prim() {
            Prim::Int(i) => Ok(Some(Prim::Int(i))),
            Prim::Dec(d) => Ok(Some(Prim::Dec(d))),
            Prim::Qty(..) => Ok(Some(Prim::Other)),
            _ => fail(format!("{}(): input is not a number", fc.name)),
        }
    }

    fn now_dt(&self) -> DateTime {
        self.ctx.now.unwrap_or_else(DateTime::now)
    }

    /// `empty()`, `exists()` and `exists(criteria)` as a plain boolean (see [`Ev::eval_bool`]).
    pub(crate) fn exists_or_empty(&self, fc: &FuncCall, focus: &[Item<'a>], fr: &Frame<'a>) -> Result<bool, EvalError> {
        match (fc.func, fc.args.first()) {
            (Func::Empty, _) => Ok(focus.is_empty()),
            (_, Some(criteria)) => {
                for (i, it) in focus.iter().enumerate() {
                    if self.lambda_bool(criteria, it, i, fr, "exists")? == Some(true) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            (_, None) => Ok(!focus.is_empty()),
        }
    }

    pub(crate) fn call(&self, fc: &FuncCall, focus: Vec<Item<'a>>, input: &[Item<'a>], fr: &Frame<'a>) -> R<'a> {
        use Func::*;
        match fc.func {
            Empty | Exists => b(self.exists_or_empty(fc, &focus, fr)?),
            All => {
                for (i, it) in focus.iter().enumerate() {
                    if self.lambda_bool(&fc.args[0], it, i, fr, "all")? != Some(true) {
                        return b(false);
                    }
                }
                b(true)
            }
            AllTrue | AnyTrue | AllFalse | AnyFalse => {
                let mut vals = Vec::with_capacity(focus.len());
                for it in &focus {
                    match it.prim() {
                        Prim::Bool(x) => vals.push(x),
                        _ => return fail(format!("{}(): items must be Booleans", fc.name)),
                    }
                }
                b(match fc.func {
                    AllTrue => vals.iter().all(|v| *v),
                    AnyTrue => vals.iter().any(|v| *v),
                    AllFalse => vals.iter().all(|v| !*v),
                    _ => vals.iter().any(|v| !*v),
                })
            }
            SubsetOf => {
                let other = self.arg(fc, 0, input, fr)?;
                b(focus.iter().all(|x| contains_item(&other, x)))
            }
            SupersetOf => {
                let other = self.arg(fc, 0, input, fr)?;
                b(other.iter().all(|x| contains_item(&focus, x)))
            }
            Count => Ok(vec![Item::Integer(focus.len() as i64)]),
            Distinct => {
                let mut out: Vec<Item<'a>> = Vec::with_capacity(focus.len());
                for it in focus {
                    if !contains_item(&out, &it) {
                        out.push(it);
                    }
                }
                Ok(out)
            }
            IsDistinct => {
                for i in 0..focus.len() {
                    for j in 0..i {
                        if equals(&focus[i], &focus[j]) == Some(true) {
                            return b(false);
                        }
                    }
                }
                b(true)
            }
            Where => {
                let mut out = Vec::new();
                for (i, it) in focus.iter().enumerate() {
                    if self.lambda_bool(&fc.args[0], it, i, fr, "where")? == Some(true) {
                        out.push(it.clone());
                    }
                }
                Ok(out)
            }
            Select => {
                let mut out = Vec::new();
                for (i, it) in focus.iter().enumerate() {
                    out.extend(self.lambda(&fc.args[0], it, i, fr)?);
                }
                Ok(out)
            }
            Repeat | RepeatAll => {
                let mut out: Vec<Item<'a>> = Vec::new();
                let mut queue = focus;
                let mut guard = 0usize;
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    for (i, it) in queue.iter().enumerate() {
                        for r in self.lambda(&fc.args[0], it, i, fr)? {
                            if fc.func == Repeat && out.iter().any(|o| same_item(o, &r)) {
                                continue;
                            }
                            out.push(r.clone());
                            next.push(r);
                        }
                    }
                    queue = next;
                    guard += 1;
                    if guard > 10_000 || out.len() > 1_000_000 {
                        return fail("repeat(): too many iterations");
                    }
                }
                Ok(out)
            }
            OfType => {
                let ts = fc.type_arg.as_ref().unwrap();
                let mut out = Vec::new();
                for it in focus {
                    if self.is_type_exact(&it, ts)? {
                        out.push(it);
                    }
                }
                Ok(out)
            }
            Is => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                b(self.is_type(&it, fc.type_arg.as_ref().unwrap())?)
            }
            As => {
                if focus.len() > 1 && !self.ctx.strict {
                    // Lenient: behave like ofType() (core invariants such as dom-3 rely on this).
                    let mut out = Vec::new();
                    for it in focus {
                        if self.is_type_exact(&it, fc.type_arg.as_ref().unwrap())? {
                            out.push(it);
                        }
                    }
                    return Ok(out);
                }
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                Ok(if self.is_type_exact(&it, fc.type_arg.as_ref().unwrap())? { vec![it] } else { Vec::new() })
            }
            Single => match focus.len() {
                0 | 1 => Ok(focus),
                _ => fail("single(): input has more than one item"),
            },
            First => Ok(focus.into_iter().next().into_iter().collect()),
            Last => Ok(focus.into_iter().last().into_iter().collect()),
            Tail => Ok(focus.into_iter().skip(1).collect()),
            Skip => {
                let n = self.arg_int(fc, 0, input, fr)?.unwrap_or(0);
                Ok(focus.into_iter().skip(n.max(0) as usize).collect())
            }
            Take => {
                let n = self.arg_int(fc, 0, input, fr)?.unwrap_or(0);
                Ok(focus.into_iter().take(n.max(0) as usize).collect())
            }
            Intersect => {
                let other = self.arg(fc, 0, input, fr)?;
                let mut out: Vec<Item<'a>> = Vec::new();
                for it in focus {
                    if contains_item(&other, &it) && !contains_item(&out, &it) {
                        out.push(it);
                    }
                }
                Ok(out)
            }
            Exclude => {
                let other = self.arg(fc, 0, input, fr)?;
                Ok(focus.into_iter().filter(|it| !contains_item(&other, it)).collect())
            }
            Union => {
                let other = self.arg(fc, 0, input, fr)?;
                let mut out: Vec<Item<'a>> = Vec::new();
                for it in focus.into_iter().chain(other) {
                    if !contains_item(&out, &it) {
                        out.push(it);
                    }
                }
                Ok(out)
            }
            Combine => {
                let mut out = focus;
                out.extend(self.arg(fc, 0, input, fr)?);
                Ok(out)
            }
            Iif => {
                if focus.len() > 1 {
                    return fail("iif(): input has more than one item");
                }
                let f2 = Frame { this: focus.first().cloned().or_else(|| fr.this.clone()), index: fr.index, total: fr.total.clone() };
                let (inp, frm): (&[Item<'a>], &Frame<'a>) = if focus.is_empty() { (input, fr) } else { (&focus, &f2) };
                let c = self.eval(&fc.args[0], inp, frm)?;
                let cond = match c.len() {
                    0 => false,
                    1 => match c[0].prim() {
                        Prim::Bool(x) => x,
                        _ => return fail("iif(): criterion is not a Boolean"),
                    },
                    _ => return fail("iif(): criterion has more than one item"),
                };
                if cond {
                    self.eval(&fc.args[1], inp, frm)
                } else if let Some(e) = fc.args.get(2) {
                    self.eval(e, inp, frm)
                } else {
                    Ok(Vec::new())
                }
            }
            ToBoolean | ConvertsToBoolean => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Bool(x) => Some(x),
                    Prim::Int(1) => Some(true),
                    Prim::Int(0) => Some(false),
                    Prim::Dec(d) if d == Decimal::ONE => Some(true),
                    Prim::Dec(d) if d.is_zero() => Some(false),
                    Prim::Str(x) => match x.to_lowercase().as_str() {
                        "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
                        "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
                        _ => None,
                    },
                    _ => None,
                };
                if fc.func == ToBoolean { one(r.map(Item::Boolean)) } else { b(r.is_some()) }
            }
            ToInteger | ConvertsToInteger => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Int(i) => Some(i),
                    Prim::Bool(x) => Some(x as i64),
                    Prim::Str(x) => parse_int_str(x),
                    _ => None,
                };
                if fc.func == ToInteger { one(r.map(Item::Integer)) } else { b(r.is_some()) }
            }
            ToDecimal | ConvertsToDecimal => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Int(i) => Some(Decimal::from(i)),
                    Prim::Dec(d) => Some(d),
                    Prim::Bool(x) => Some(if x { Decimal::ONE } else { Decimal::ZERO }),
                    Prim::Str(x) => parse_decimal_str(x),
                    _ => None,
                };
                if fc.func == ToDecimal { one(r.map(Item::Decimal)) } else { b(r.is_some()) }
            }
            ToStringF | ConvertsToString => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Other => None,
                    Prim::Qty(v, u) => Some(if crate::ucum::is_calendar(u) { format!("{v} {u}") } else { format!("{v} '{u}'") }),
                    _ => Some(it.to_string()),
                };
                if fc.func == ToStringF { one(r.map(|x| Item::String(Arc::from(x)))) } else { b(r.is_some()) }
            }
            ToDate | ConvertsToDate => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Date(d) => Some(d),
                    Prim::DateTime(d) => Some(d.date),
                    Prim::Str(x) => Date::parse(x).or_else(|| DateTime::parse(x).map(|d| d.date)),
                    _ => None,
                };
                if fc.func == ToDate { one(r.map(Item::Date)) } else { b(r.is_some()) }
            }
            ToDateTime | ConvertsToDateTime => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Date(d) => Some(DateTime::from_date(d)),
                    Prim::DateTime(d) => Some(d),
                    Prim::Str(x) => DateTime::parse(x),
                    _ => None,
                };
                if fc.func == ToDateTime { one(r.map(Item::DateTime)) } else { b(r.is_some()) }
            }
            ToTime | ConvertsToTime => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let r = match it.prim() {
                    Prim::Time(t) => Some(t),
                    Prim::Str(x) => Time::parse(x.strip_prefix('T').unwrap_or(x)),
                    _ => None,
                };
                if fc.func == ToTime { one(r.map(Item::Time)) } else { b(r.is_some()) }
            }
            ToQuantity | ConvertsToQuantity => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let mut r = match it.prim() {
                    Prim::Int(i) => Some(Quantity { value: Decimal::from(i), unit: Arc::from("1") }),
                    Prim::Dec(d) => Some(Quantity { value: d, unit: Arc::from("1") }),
                    Prim::Bool(x) => Some(Quantity { value: if x { Decimal::ONE } else { Decimal::ZERO }, unit: Arc::from("1") }),
                    Prim::Qty(v, u) => Some(Quantity { value: v, unit: Arc::from(u) }),
                    Prim::Str(x) => parse_quantity_str(x),
                    _ => None,
                };
                if let Some(target) = self.arg_str(fc, 0, input, fr)? {
                    r = r.and_then(|q| self.convert_quantity(q, &target));
                }
                if fc.func == ToQuantity { one(r.map(Item::Quantity)) } else { b(r.is_some()) }
            }
            IndexOf | LastIndexOf => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let Some(sub) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                let pos = if fc.func == IndexOf { x.find(&*sub) } else { x.rfind(&*sub) };
                Ok(vec![Item::Integer(match pos {
                    Some(p) => x[..p].chars().count() as i64,
                    None => -1,
                })])
            }
            Substring => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let Some(start) = self.arg_int(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                // positions count characters; an ASCII string is sliced by bytes
                let ascii = x.is_ascii();
                let n = if ascii { x.len() } else { x.chars().count() };
                if start < 0 || start as usize >= n {
                    return Ok(Vec::new());
                }
                let len = if fc.args.len() > 1 {
                    match self.arg_int(fc, 1, input, fr)? {
                        Some(l) => l.max(0) as usize,
                        None => n,
                    }
                } else {
                    n
                };
                let start = start as usize;
                let end = start.saturating_add(len).min(n);
                if ascii {
                    return s(&x[start..end]);
                }
                s(x.chars().skip(start).take(end - start).collect::<String>())
            }
            StartsWith | EndsWith | ContainsStr => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let Some(a) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                b(match fc.func {
                    StartsWith => x.starts_with(&*a),
                    EndsWith => x.ends_with(&*a),
                    _ => x.contains(&*a),
                })
            }
            Upper | Lower | Trim | Length | ToChars => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                match fc.func {
                    Upper => s(x.to_uppercase()),
                    Lower => s(x.to_lowercase()),
                    Trim => s(x.trim()),
                    Length => Ok(vec![Item::Integer(x.chars().count() as i64)]),
                    _ => Ok(x.chars().map(|c| Item::String(Arc::from(c.to_string()))).collect()),
                }
            }
            Replace => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let (Some(p), Some(r)) = (self.arg_str(fc, 0, input, fr)?, self.arg_str(fc, 1, input, fr)?) else {
                    return Ok(Vec::new());
                };
                if p.is_empty() {
                    // insert r between every character
                    let mut o = String::new();
                    o.push_str(&r);
                    for c in x.chars() {
                        o.push(c);
                        o.push_str(&r);
                    }
                    return s(o);
                }
                s(x.replace(&*p, &r))
            }
            Matches | MatchesFull | ReplaceMatches => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let owned;
                let re = match &fc.regex {
                    Some(r) => r,
                    None => {
                        let Some(p) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                        let pat = if fc.func == MatchesFull { format!("^(?:{p})$") } else { format!("(?s){p}") };
                        owned = regex::Regex::new(&pat).map_err(|e| EvalError::new(format!("invalid regex: {e}")))?;
                        &owned
                    }
                };
                if fc.func == ReplaceMatches {
                    let Some(r) = self.arg_str(fc, 1, input, fr)? else { return Ok(Vec::new()) };
                    if re.as_str() == "(?s)" {
                        return s(x);
                    }
                    // FHIRPath uses $1 for groups, as does the regex crate; escape nothing else.
                    s(re.replace_all(x, &*r).into_owned())
                } else {
                    b(re.is_match(&x))
                }
            }
            Split => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let Some(sep) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                Ok(x.split(&*sep).map(|p| Item::String(Arc::from(p))).collect())
            }
            Join => {
                let sep = self.arg_str(fc, 0, input, fr)?.unwrap_or_default();
                let mut parts = Vec::with_capacity(focus.len());
                for it in &focus {
                    match it.prim() {
                        Prim::Str(x) => parts.push(x.to_string()),
                        _ => return fail("join(): items must be Strings"),
                    }
                }
                s(parts.join(&sep))
            }
            Encode | Decode | Escape | Unescape => {
                let Some(x) = self.focus_str(fc, &focus)? else { return Ok(Vec::new()) };
                let Some(fmt) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                let r = match (fc.func, &*fmt) {
                    (Encode, "base64") => Some(b64_encode(x.as_bytes(), false)),
                    (Encode, "urlbase64") => Some(b64_encode(x.as_bytes(), true)),
                    (Encode, "hex") => Some(x.bytes().map(|c| format!("{c:02x}")).collect()),
                    (Decode, "base64") | (Decode, "urlbase64") => b64_decode(&x).and_then(|v| String::from_utf8(v).ok()),
                    (Decode, "hex") => {
                        if x.len() % 2 != 0 {
                            None
                        } else {
                            (0..x.len()).step_by(2).map(|i| u8::from_str_radix(&x[i..i + 2], 16).ok()).collect::<Option<Vec<u8>>>().and_then(|v| String::from_utf8(v).ok())
                        }
                    }
                    (Escape, "html") => Some(html_escape(&x)),
                    (Escape, "json") => Some(x.replace('\\', "\\\\").replace('"', "\\\"")),
                    (Unescape, "html") => Some(html_unescape(&x)),
                    (Unescape, "json") => Some(x.replace("\\\"", "\"").replace("\\\\", "\\")),
                    _ => None,
                };
                one(r.map(|v| Item::String(Arc::from(v))))
            }
            Abs | Ceiling | Floor | Truncate | Exp | Ln | Sqrt => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                match (fc.func, it.prim()) {
                    (Abs, Prim::Int(i)) => Ok(i.checked_abs().map(Item::Integer).into_iter().collect()),
                    (Abs, Prim::Dec(d)) => Ok(vec![Item::Decimal(d.abs())]),
                    (Abs, Prim::Qty(v, u)) => Ok(vec![Item::Quantity(Quantity { value: v.abs(), unit: Arc::from(u) })]),
                    (Ceiling | Floor | Truncate, Prim::Int(i)) => Ok(vec![Item::Integer(i)]),
                    (Ceiling, Prim::Dec(d)) => Ok(d.ceil().to_i64().map(Item::Integer).into_iter().collect()),
                    (Floor, Prim::Dec(d)) => Ok(d.floor().to_i64().map(Item::Integer).into_iter().collect()),
                    (Truncate, Prim::Dec(d)) => Ok(d.trunc().to_i64().map(Item::Integer).into_iter().collect()),
                    (Exp | Ln | Sqrt, Prim::Int(_) | Prim::Dec(_)) => {
                        let x = dec_to_f64(it.as_decimal().unwrap());
                        f64_dec(match fc.func {
                            Exp => x.exp(),
                            Ln => x.ln(),
                            _ => x.sqrt(),
                        })
                    }
                    _ => fail(format!("{}(): input is not a number", fc.name)),
                }
            }
            Log | Power => {
                let Some(_) = self.focus_num(fc, &focus)? else { return Ok(Vec::new()) };
                let a = self.arg(fc, 0, input, fr)?;
                if a.is_empty() {
                    return Ok(Vec::new());
                }
                let (Some(x), Some(y)) = (focus[0].as_decimal(), a[0].as_decimal()) else {
                    return fail(format!("{}(): arguments must be numbers", fc.name));
                };
                if fc.func == Power {
                    if let (Prim::Int(bi), Prim::Int(ei)) = (focus[0].prim(), a[0].prim())
                        && ei >= 0 {
                            return Ok(bi.checked_pow(ei as u32).map(Item::Integer).into_iter().collect());
                        }
                    f64_dec(dec_to_f64(x).powf(dec_to_f64(y)))
                } else {
                    f64_dec(dec_to_f64(x).ln() / dec_to_f64(y).ln())
                }
            }
            Round => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let prec = self.arg_int(fc, 0, input, fr)?.unwrap_or(0);
                if prec < 0 {
                    return fail("round(): precision must be >= 0");
                }
                let Some(d) = it.as_decimal() else { return fail("round(): input is not a number") };
                Ok(vec![Item::Decimal(d.round_dp_with_strategy(prec as u32, RoundingStrategy::MidpointAwayFromZero))])
            }
            Children => {
                let mut out = Vec::new();
                for it in &focus {
                    self.children_of(it, &mut out);
                }
                Ok(out)
            }
            Descendants => {
                let mut out = Vec::new();
                let mut queue = focus;
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    for it in &queue {
                        self.children_of(it, &mut next);
                    }
                    out.extend(next.iter().cloned());
                    queue = next;
                }
                Ok(out)
            }
            Trace => {
                if self.ctx.trace {
                    let name = self.arg_str(fc, 0, input, fr)?.unwrap_or_default();
                    let shown = if let Some(e) = fc.args.get(1) {
                        let mut v = Vec::new();
                        for (i, it) in focus.iter().enumerate() {
                            v.extend(self.lambda(e, it, i, fr)?);
                        }
                        v
                    } else {
                        focus.clone()
                    };
                    eprintln!("trace {name}: {}", shown.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
                }
                Ok(focus)
            }
            Now => Ok(vec![Item::DateTime(self.now_dt())]),
            Today => Ok(vec![Item::Date(self.now_dt().date)]),
            TimeOfDay => {
                let n = self.now_dt();
                Ok(n.time.map(Item::Time).into_iter().collect())
            }
            Aggregate => {
                let mut total = match fc.args.get(1) {
                    Some(e) => self.eval(e, input, fr)?,
                    None => Vec::new(),
                };
                for (i, it) in focus.iter().enumerate() {
                    let f = Frame { this: Some(it.clone()), index: Some(i as i64), total: Some(total) };
                    total = self.eval(&fc.args[0], std::slice::from_ref(it), &f)?;
                }
                Ok(total)
            }
            Not => match self.to_bool(&focus, "not")? {
                Some(x) => b(!x),
                None => Ok(Vec::new()),
            },
            Extension => {
                let Some(url) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                let mut exts = Vec::new();
                for it in &focus {
                    self.navigate(it, "extension", &mut exts)?;
                }
                Ok(exts
                    .into_iter()
                    .filter(|e| e.as_json().and_then(|j| json_prop(j, "url")).and_then(Value::as_str) == Some(&*url))
                    .collect())
            }
            HasValue => {
                if focus.len() != 1 {
                    return b(false);
                }
                b(match &focus[0] {
                    Item::Node(n) => n.is_primitive() && n.value.is_some(),
                    _ => true,
                })
            }
            GetValue => {
                if focus.len() != 1 {
                    return Ok(Vec::new());
                }
                match &focus[0] {
                    Item::Node(n) if n.is_primitive() && n.value.is_some() => Ok(vec![focus[0].to_system()]),
                    Item::Node(_) => Ok(Vec::new()),
                    x => Ok(vec![x.clone()]),
                }
            }
            Resolve => {
                let mut out = Vec::new();
                for it in &focus {
                    if let Some(r) = self.resolve_one(it) {
                        out.push(r);
                    }
                }
                Ok(out)
            }
            HtmlChecks | HtmlChecks2 => b(true),
            ConformsTo => {
                let Some(url) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                let Some(name) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") else {
                    return fail(format!("conformsTo(): unknown profile {url}"));
                };
                if !self.m.is_type(name) {
                    return fail(format!("conformsTo(): unknown profile {url}"));
                }
                let mut out = Vec::new();
                for it in &focus {
                    out.push(Item::Boolean(self.m.is_subtype(it.type_name(), name)));
                }
                Ok(out)
            }
            MemberOf => {
                let Some(url) = self.arg_str(fc, 0, input, fr)? else { return Ok(Vec::new()) };
                let Some(hook) = self.ctx.terminology else { return Ok(Vec::new()) };
                let mut out = Vec::new();
                for it in &focus {
                    if let Some(r) = hook.member_of(it, &url) {
                        out.push(Item::Boolean(r));
                    }
                }
                Ok(out)
            }
            Subsumes | SubsumedBy | ElementDefinition | Slice => Ok(Vec::new()),
            CheckModifiers => Ok(focus),
            DefineVariable => Ok(focus),
            TypeF => Ok(focus
                .iter()
                .map(|it| match it {
                    Item::Node(_) => Item::TypeInfo(TypeInfo { namespace: "FHIR", name: Arc::from(it.type_name()) }),
                    _ => Item::TypeInfo(TypeInfo { namespace: "System", name: Arc::from(it.type_name()) }),
                })
                .collect()),
            Sort => self.sort(fc, focus, fr),
            Sum | Min | Max | Avg => {
                if focus.is_empty() {
                    return if fc.func == Sum { Ok(vec![Item::Integer(0)]) } else { Ok(Vec::new()) };
                }
                let mut acc = focus[0].to_system();
                for it in &focus[1..] {
                    acc = match fc.func {
                        Sum | Avg => {
                            let r = crate::eval::arith_pub(crate::parser::BinOp::Add, &acc, it)?;
                            match r.into_iter().next() {
                                Some(x) => x,
                                None => return Ok(Vec::new()),
                            }
                        }
                        Min => {
                            if compare(it, &acc)? == Some(Ordering::Less) { it.to_system() } else { acc }
                        }
                        _ => {
                            if compare(it, &acc)? == Some(Ordering::Greater) { it.to_system() } else { acc }
                        }
                    };
                }
                if fc.func == Avg {
                    let Some(d) = acc.as_decimal() else { return fail("avg(): not numbers") };
                    return Ok(vec![Item::Decimal(d / Decimal::from(focus.len()))]);
                }
                Ok(vec![acc])
            }
            LowBoundary | HighBoundary => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let p = self.arg_int(fc, 0, input, fr)?;
                Ok(crate::boundary::boundary(&it, p, fc.func == HighBoundary).into_iter().collect())
            }
            PrecisionF => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                Ok(crate::boundary::precision(&it).map(Item::Integer).into_iter().collect())
            }
            Comparable => {
                let Some(it) = self.focus_single(fc, &focus)? else { return Ok(Vec::new()) };
                let a = self.arg(fc, 0, input, fr)?;
                let Some(o) = a.first() else { return Ok(Vec::new()) };
                match (it.prim(), o.prim()) {
                    (Prim::Qty(_, u1), Prim::Qty(_, u2)) => {
                        let k1 = crate::ucum::parse(u1).map(|x| crate::ucum::format_dims(&x.1));
                        let k2 = crate::ucum::parse(u2).map(|x| crate::ucum::format_dims(&x.1));
                        b(k1.is_some() && k1 == k2)
                    }
                    _ => b(compare(&it, o).map(|x| x.is_some()).unwrap_or(false)),
                }
            }
        }
    }

    fn convert_quantity(&self, q: Quantity, target: &str) -> Option<Quantity> {
        if &*q.unit == target {
            return Some(q);
        }
        let cal = |u: &str| crate::ucum::calendar_to_ucum(u).map(str::to_string).unwrap_or_else(|| u.to_string());
        let (f1, d1) = crate::ucum::parse(&cal(&q.unit))?;
        let (f2, d2) = crate::ucum::parse(&cal(target))?;
        if d1 != d2 {
            return None;
        }
        Some(Quantity { value: (q.value * f1 / f2).normalize(), unit: Arc::from(target) })
    }

    fn sort(&self, fc: &FuncCall, focus: Vec<Item<'a>>, fr: &Frame<'a>) -> R<'a> {
        let mut keyed: Vec<(Vec<Vec<Item<'a>>>, Item<'a>)> = Vec::with_capacity(focus.len());
        let mut desc = Vec::new();
        for a in &fc.args {
            desc.push(matches!(a, Expr::Neg(_)));
        }
        for (i, it) in focus.into_iter().enumerate() {
            let mut keys = Vec::new();
            for a in &fc.args {
                let e = match a {
                    Expr::Neg(inner) => inner.as_ref(),
                    e => e,
                };
                keys.push(self.lambda(e, &it, i, fr)?);
            }
            keyed.push((keys, it));
        }
        let mut err = None;
        let cmp_items = |x: &Item<'a>, y: &Item<'a>| -> Ordering {
            match compare(x, y) {
                Ok(Some(o)) => o,
                _ => Ordering::Equal,
            }
        };
        if fc.args.is_empty() {
            keyed.sort_by(|x, y| cmp_items(&x.1, &y.1));
        } else {
            keyed.sort_by(|x, y| {
                for (k, d) in desc.iter().enumerate() {
                    let o = match (x.0[k].first(), y.0[k].first()) {
                        (None, None) => Ordering::Equal,
                        (None, Some(_)) => Ordering::Greater,
                        (Some(_), None) => Ordering::Less,
                        (Some(a), Some(b)) => match compare(a, b) {
                            Ok(Some(o)) => o,
                            Ok(None) => Ordering::Equal,
                            Err(e) => {
                                err = Some(e);
                                Ordering::Equal
                            }
                        },
                    };
                    let o = if *d { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
        }
        if let Some(e) = err {
            return Err(e);
        }
        Ok(keyed.into_iter().map(|x| x.1).collect())
    }

    /// resolve() for one item: contained (`#id`), Resolver, Bundle entries, else a typed stub.
    fn resolve_one(&self, it: &Item<'a>) -> Option<Item<'a>> {
        let reference: &'a str = match it {
            Item::Node(n) => match n.value {
                Some(Value::Object(o)) => o.get("reference").and_then(Value::as_str)?,
                Some(Value::String(s)) => s.as_str(),
                _ => return None,
            },
            Item::String(_) => {
                // System strings are not borrowed from the tree: resolve through resolver/bundle only.
                let r = it.as_str()?.to_string();
                return self.resolve_str_owned(&r);
            }
            _ => return None,
        };
        if let Some(id) = reference.strip_prefix('#') {
            let res = self.ctx.resource?;
            if id.is_empty() {
                return Some(Item::from_json(self.m, res, None, ""));
            }
            let contained = res.get("contained").and_then(Value::as_array)?;
            let c = contained.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id))?;
            return Some(Item::from_json(self.m, c, None, ""));
        }
        if let Some(r) = self.resolve_str_owned(reference) {
            return Some(r);
        }
        // Stub typed by the reference's resource type.
        let path = reference.split("/_history/").next().unwrap_or(reference);
        let mut segs = path.rsplit('/');
        let id = segs.next()?;
        let ty = segs.next()?;
        if id.is_empty() {
            return None;
        }
        let tid = self.m.type_id(ty);
        let known = match tid {
            Some(t) => self.m.def(t).kind == Kind::Resource,
            None => self.m.is_empty() && ty.starts_with(|c: char| c.is_ascii_uppercase()),
        };
        if !known {
            return None;
        }
        Some(Item::Node(Node { value: None, ext: None, ty: tid.map(|t| self.m.def(t)), tid, stub_id: Some(id) }))
    }

    fn resolve_str_owned(&self, reference: &str) -> Option<Item<'a>> {
        if let Some(r) = self.ctx.resolver
            && let Some(v) = r.resolve(reference) {
                return Some(Item::from_json(self.m, v, None, ""));
            }
        let root = self.ctx.root_resource.or(self.ctx.resource)?;
        if root.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return None;
        }
        let entries = root.get("entry").and_then(Value::as_array)?;
        let path = reference.split("/_history/").next().unwrap_or(reference);
        for e in entries {
            let full = e.get("fullUrl").and_then(Value::as_str);
            let res = e.get("resource")?;
            if full == Some(reference) || full == Some(path) {
                return Some(Item::from_json(self.m, res, None, ""));
            }
            // relative reference Type/id
            if let (Some(rt), Some(id)) = (res.get("resourceType").and_then(Value::as_str), res.get("id").and_then(Value::as_str)) {
                let mut segs = path.rsplit('/');
                if segs.next() == Some(id) && segs.next() == Some(rt)
                    && (!path.contains("://") || full.is_some_and(|f| f.ends_with(path))) {
                        return Some(Item::from_json(self.m, res, None, ""));
                    }
            }
        }
        None
    }
}

#[allow(dead_code)]
fn _unused(_: Precision) {}
