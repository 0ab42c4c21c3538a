//! The evaluator: AST walking over borrowed JSON.

use crate::datetime::{DateTime, Precision, Time, compare_components, prec_len, time_prec_len};
use crate::model::{Kind, Model, TypeDef, TypeId};
use crate::parser::{BinOp, Expr, Expression, TypeSpec};
use crate::ucum;
use crate::value::{Item, Node, Prim, Quantity, json_get, json_get_with_ext, json_prop};
use crate::{Context, EvalError};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

pub(crate) use crate::functions::{Func, lookup_func};

pub(crate) type R<'a> = Result<Vec<Item<'a>>, EvalError>;

pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::new(msg))
}

/// Iteration variables.
#[derive(Clone, Default)]
pub(crate) struct Frame<'a> {
    pub this: Option<Item<'a>>,
    pub index: Option<i64>,
    pub total: Option<Vec<Item<'a>>>,
}

pub(crate) struct Ev<'c, 'a> {
    pub ctx: &'c Context<'a>,
    pub m: &'a Model,
    pub context_item: &'c [Item<'a>],
}

/// Run `f` with the evaluator and the top frame for `input` (`$this` is its single item).
fn with_evaluator<'a, T>(ctx: &Context<'a>, input: &[Item<'a>], f: impl FnOnce(&Ev<'_, 'a>, &Frame<'a>) -> T) -> T {
    let context_item = match &ctx.context {
        Some(c) => std::slice::from_ref(c),
        None => input,
    };
    let ev = Ev { ctx, m: ctx.model, context_item };
    let frame = Frame { this: if input.len() == 1 { Some(input[0].clone()) } else { None }, index: None, total: None };
    f(&ev, &frame)
}

pub(crate) fn evaluate<'a>(expr: &Expression, ctx: &Context<'a>, input: &[Item<'a>]) -> R<'a> {
    with_evaluator(ctx, input, |ev, frame| ev.eval(&expr.root, input, frame))
}

/// An expression in a boolean context (an invariant): those whose result is at most one Boolean
/// (logic, comparisons, `exists()`, `empty()`) are evaluated without building it as a collection.
pub(crate) fn evaluate_bool<'a>(expr: &Expression, ctx: &Context<'a>, input: &[Item<'a>]) -> Result<Option<bool>, EvalError> {
    use BinOp::*;
    let single_boolean = match &expr.root {
        Expr::Binary(op, ..) => matches!(op, And | Or | Xor | Implies | Eq | Ne | Lt | Gt | Le | Ge),
        Expr::Call(_, fc) => matches!(fc.func, Func::Empty | Func::Exists),
        _ => false,
    };
    if !single_boolean {
        return to_bool_result(evaluate(expr, ctx, input)?);
    }
    with_evaluator(ctx, input, |ev, frame| ev.eval_bool(&expr.root, input, frame, "boolean expression"))
}

/// A collection as one boolean: empty is none, a single item is its value (a non-Boolean is true).
pub(crate) fn to_bool_result(r: Vec<Item<'_>>) -> Result<Option<bool>, EvalError> {
    match r.len() {
        0 => Ok(None),
        1 => Ok(Some(r[0].as_bool().unwrap_or(true))),
        n => Err(EvalError::new(format!("expected a single boolean, got a collection of {n} items"))),
    }
}

const SYSTEM_TYPES: [&str; 9] = ["Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity", "Long"];

impl<'c, 'a> Ev<'c, 'a> {
    pub(crate) fn eval(&self, e: &Expr, input: &[Item<'a>], fr: &Frame<'a>) -> R<'a> {
        match e {
            Expr::Empty => Ok(Vec::new()),
            Expr::Literal(it) => Ok(vec![it.clone()]),
            Expr::Ident(name) => {
                let mut out = Vec::new();
                for it in input {
                    if self.type_name_matches(it, name) {
                        out.push(it.clone());
                    } else if self.looks_like_type_name(it, name) {
                        if self.ctx.strict {
                            return fail(format!("'{name}' does not match the type of the context ({})", it.type_name()));
                        }
                    } else if !self.navigate(it, name, &mut out)? && input.len() == 1 {
                        return fail(format!("'{name}' is not an element of {}", it.type_name()));
                    }
                }
                Ok(out)
            }
            Expr::Member(base, name) => {
                let b = self.eval(base, input, fr)?;
                if b.is_empty() {
                    self.check_cast_member(base, name)?;
                }
                let mut out = Vec::with_capacity(b.len());
                let mut known = b.is_empty();
                for it in &b {
                    known |= self.navigate(it, name, &mut out)?;
                }
                if !known {
                    return fail(format!("'{name}' is not an element of {}", b[0].type_name()));
                }
                Ok(out)
            }
            Expr::Call(target, fc) => match target {
                Some(t) => {
                    if self.ctx.strict
                        && matches!(fc.func, Func::Skip | Func::Take | Func::First | Func::Last | Func::Tail)
                        && matches!(t.as_ref(), Expr::Call(_, inner) if matches!(inner.func, Func::Children | Func::Descendants))
                    {
                        return fail(format!("{}() applied to an unordered collection", fc.name));
                    }
                    let focus = self.eval(t, input, fr)?;
                    self.call(fc, focus, input, fr)
                }
                None => self.call(fc, input.to_vec(), input, fr),
            },
            Expr::Index(base, idx) => {
                let b = self.eval(base, input, fr)?;
                let i = self.eval(idx, input, fr)?;
                let Some(i) = self.single_int(&i, "indexer")? else { return Ok(Vec::new()) };
                if i < 0 {
                    return Ok(Vec::new());
                }
                Ok(b.into_iter().nth(i as usize).into_iter().collect())
            }
            Expr::This => Ok(match &fr.this {
                Some(t) => vec![t.clone()],
                None => input.to_vec(),
            }),
            Expr::IndexVar => Ok(fr.index.map(Item::Integer).into_iter().collect()),
            Expr::Total => Ok(fr.total.clone().unwrap_or_default()),
            Expr::Var(name) => self.variable(name),
            Expr::Neg(inner) => {
                let v = self.eval(inner, input, fr)?;
                if v.is_empty() {
                    return Ok(v);
                }
                if v.len() > 1 {
                    return fail("unary minus on a collection");
                }
                Ok(vec![match v[0].prim() {
                    Prim::Int(i) => match i.checked_neg() {
                        Some(n) => Item::Integer(n),
                        None => return Ok(Vec::new()),
                    },
                    Prim::Dec(d) => Item::Decimal(if d.is_zero() { d.abs() } else { -d }),
                    Prim::Qty(q, u) => Item::Quantity(Quantity { value: -q, unit: Arc::from(u) }),
                    _ => return fail(format!("cannot negate {}", v[0].type_name())),
                }])
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, input, fr),
            Expr::Is(inner, ts) => {
                let v = self.eval(inner, input, fr)?;
                if v.is_empty() {
                    return Ok(v);
                }
                if v.len() > 1 {
                    return fail("'is' on a collection of more than one item");
                }
                Ok(vec![Item::Boolean(self.is_type(&v[0], ts)?)])
            }
            Expr::As(inner, ts) => {
                let v = self.eval(inner, input, fr)?;
                if v.len() > 1 && self.ctx.strict {
                    return fail("'as' on a collection of more than one item");
                }
                let mut out = Vec::new();
                for it in v {
                    if self.is_type_exact(&it, ts)? {
                        out.push(it);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Semantic check for `(x as T).name` / `x.ofType(T).name`: `name` must be an element of `T`.
    fn check_cast_member(&self, base: &Expr, name: &str) -> Result<(), EvalError> {
        let ts = match base {
            Expr::As(_, ts) => ts,
            Expr::Call(_, fc) if matches!(fc.func, Func::As | Func::OfType) => match &fc.type_arg {
                Some(ts) => ts,
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        if ts.namespace.as_deref() == Some("System") {
            return Ok(());
        }
        if let Some(t) = self.m.type_id(&ts.name) {
            let d = self.m.def(t);
            if !d.elements.is_empty() && !d.elements.contains_key(name) && d.kind != Kind::Primitive {
                return fail(format!("'{name}' is not an element of {}", ts.name));
            }
        }
        Ok(())
    }

    fn variable(&self, name: &str) -> R<'a> {
        if let Some(v) = self.ctx.variables.get(name) {
            return Ok(v.clone());
        }
        let s = |v: &str| Ok(vec![Item::String(Arc::from(v))]);
        match name {
            "context" => Ok(self.context_item.to_vec()),
            "resource" => Ok(match self.ctx.resource {
                Some(r) => vec![Item::from_json(self.m, r, None, "")],
                None => self.context_item.to_vec(),
            }),
            "rootResource" => Ok(match self.ctx.root_resource.or(self.ctx.resource) {
                Some(r) => vec![Item::from_json(self.m, r, None, "")],
                None => self.context_item.to_vec(),
            }),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(rest) = name.strip_prefix("vs-") {
                    s(&format!("http://hl7.org/fhir/ValueSet/{rest}"))
                } else if let Some(rest) = name.strip_prefix("ext-") {
                    s(&format!("http://hl7.org/fhir/StructureDefinition/{rest}"))
                } else {
                    fail(format!("unknown variable %{name}"))
                }
            }
        }
    }

    // ---------- types ----------

    /// The model type of a node, resolving abstract resource types via `resourceType`.
    fn node_type(&self, n: &Node<'a>) -> Option<(TypeId, &'a TypeDef)> {
        let t = n.ty?;
        let tid = n.tid?;
        if t.kind == Kind::Resource && t.is_abstract
            && let Some(rt) = n.value.and_then(|v| json_prop(v, "resourceType")).and_then(Value::as_str)
                && rt != &*t.name
                    && let Some(id) = self.m.type_id(rt) {
                        return Some((id, self.m.def(id)));
                    }
        Some((tid, t))
    }

    fn type_name_matches(&self, it: &Item<'a>, name: &str) -> bool {
        let Item::Node(n) = it else { return false };
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return false;
        }
        match (self.node_type(n), self.m.type_id(name)) {
            (Some((t, _)), Some(target)) => self.m.def(target).kind != Kind::Backbone && self.m.is_subtype_id(t, target),
            (None, _) => n.type_name() == name,
            _ => false,
        }
    }

    fn looks_like_type_name(&self, it: &Item<'a>, name: &str) -> bool {
        let Item::Node(n) = it else { return false };
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) || !self.m.is_resource_type(name) {
            return false;
        }
        // Only when the focus has no such child element.
        match self.node_type(n) {
            Some((_, t)) => !t.elements.contains_key(name),
            None => false,
        }
    }

    /// Type test for as()/ofType(): like is(), but FHIR primitive types must match exactly
    /// (`code` is not cast to `string`).
    pub(crate) fn is_type_exact(&self, it: &Item<'a>, ts: &TypeSpec) -> Result<bool, EvalError> {
        if let Item::Node(n) = it
            && n.is_primitive() && ts.namespace.as_deref() != Some("System")
                && let (Some(t), Some(target)) = (n.tid, self.m.type_id(&ts.name))
                    && self.m.def(target).kind == Kind::Primitive {
                        return Ok(t == target);
                    }
        self.is_type(it, ts)
    }

    pub(crate) fn is_type(&self, it: &Item<'a>, ts: &TypeSpec) -> Result<bool, EvalError> {
        let ns = ts.namespace.as_deref();
        let name = &*ts.name;
        match it {
            Item::Node(n) => {
                if ns == Some("System") {
                    return Ok(false);
                }
                if ns.is_none() && SYSTEM_TYPES.contains(&name) && self.m.type_id(name).is_none() {
                    return Ok(false);
                }
                match (self.node_type(n), self.m.type_id(name)) {
                    (Some((t, _)), Some(target)) => Ok(self.m.is_subtype_id(t, target)),
                    (_, None) if !self.m.is_empty() => fail(format!("unknown type '{name}'")),
                    _ => Ok(n.type_name() == name),
                }
            }
            _ => {
                if ns == Some("FHIR") {
                    return Ok(false);
                }
                let tn = it.type_name();
                if tn == name {
                    return Ok(true);
                }
                if !SYSTEM_TYPES.contains(&name) && self.m.type_id(name).is_none() && !self.m.is_empty() && ns.is_none() {
                    return fail(format!("unknown type '{name}'"));
                }
                Ok(false)
            }
        }
    }

    // ---------- navigation ----------

    fn push_node(&self, out: &mut Vec<Item<'a>>, value: Option<&'a Value>, ext: Option<&'a Value>, tid: Option<TypeId>) {
        let mut tid = tid;
        if let (Some(t), Some(Value::Object(o))) = (tid, value) {
            let d = self.m.def(t);
            if d.kind == Kind::Resource && d.is_abstract
                && let Some(rt) = json_get(o, "resourceType").and_then(Value::as_str)
                    && let Some(id) = self.m.type_id(rt) {
                        tid = Some(id);
                    }
        } else if tid.is_none()
            && let Some(rt) = value.and_then(|v| json_prop(v, "resourceType")).and_then(Value::as_str) {
                tid = self.m.type_id(rt);
            }
        out.push(Item::node(self.m, value, ext, tid));
    }

    /// Push the children stored under JSON key `key` of `obj` (with `_key` merged).
    fn push_children(&self, obj: &'a serde_json::Map<String, Value>, key: &str, tid: Option<TypeId>, out: &mut Vec<Item<'a>>) {
        let prim = match tid {
            Some(t) => self.m.def(t).kind == Kind::Primitive,
            None => true,
        };
        let (v, e) = if prim { json_get_with_ext(obj, key) } else { (json_get(obj, key), None) };
        match v {
            Some(Value::Array(arr)) => {
                out.reserve(arr.len());
                let earr = e.and_then(Value::as_array);
                for (i, x) in arr.iter().enumerate() {
                    let ex = earr.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    let xv = if x.is_null() { None } else { Some(x) };
                    if xv.is_none() && ex.is_none() {
                        continue;
                    }
                    self.push_node(out, xv, ex, tid);
                }
            }
            Some(Value::Null) | None => match e {
                Some(Value::Array(earr)) => {
                    for ex in earr {
                        if !ex.is_null() {
                            self.push_node(out, None, Some(ex), tid);
                        }
                    }
                }
                Some(ex @ Value::Object(_)) => self.push_node(out, None, Some(ex), tid),
                _ => {}
            },
            Some(x) => self.push_node(out, Some(x), e.filter(|v| !v.is_null()), tid),
        }
    }

    /// Navigate to child `name`; returns whether the element is defined for the item's type.
    pub(crate) fn navigate(&self, it: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) -> Result<bool, EvalError> {
        let n = match it {
            Item::Node(n) => n,
            Item::TypeInfo(t) => {
                match name {
                    "name" => out.push(Item::String(t.name.clone())),
                    "namespace" => out.push(Item::String(Arc::from(t.namespace))),
                    _ => {}
                }
                return Ok(true);
            }
            _ => return Ok(true),
        };
        if n.is_primitive() {
            // Primitive: only id / extension, found in the `_x` sibling.
            if let Some(Value::Object(eo)) = n.ext {
                match name {
                    "extension" => self.push_children(eo, "extension", self.m.type_id("Extension"), out),
                    "id" => self.push_children(eo, "id", self.m.type_id("string"), out),
                    _ => {}
                }
            }
            return Ok(true);
        }
        let Some(Value::Object(obj)) = n.value else { return Ok(true) };
        match self.node_type(n) {
            Some((_, t)) => match t.elements.get(name) {
                Some(el) if !el.choice => {
                    if el.variant_of.is_some() && self.ctx.strict {
                        return fail(format!("'{name}' is not a valid FHIRPath name (use '{}')", el.variant_of.as_deref().unwrap_or("")));
                    }
                    self.push_children(obj, name, el.types.first().copied(), out);
                }
                Some(_) => {
                    for (k, _) in obj.iter() {
                        if k.len() > name.len() && k.starts_with(name) && k.as_bytes()[name.len()].is_ascii_uppercase()
                            && let Some(vel) = t.elements.get(k.as_str())
                                && vel.variant_of.as_deref() == Some(name) {
                                    self.push_children(obj, k, vel.types.first().copied(), out);
                                }
                    }
                    // Only `_valueX` present (no value): look for `_name...` keys.
                    if out.is_empty() {
                        for (k, _) in obj.iter() {
                            if let Some(k2) = k.strip_prefix('_')
                                && k2.len() > name.len() && k2.starts_with(name) && k2.as_bytes()[name.len()].is_ascii_uppercase() && !obj.contains_key(k2)
                                    && let Some(vel) = t.elements.get(k2) {
                                        self.push_children(obj, k2, vel.types.first().copied(), out);
                                    }
                        }
                    }
                }
                None => {
                    if t.elements.is_empty() {
                        self.push_children(obj, name, None, out);
                    } else {
                        return Ok(false);
                    }
                }
            },
            None => {
                if obj.contains_key(name) || obj.contains_key(&format!("_{name}")) {
                    self.push_children(obj, name, None, out);
                } else {
                    for (k, _) in obj.iter() {
                        if k.len() > name.len() && k.starts_with(name) && k.as_bytes()[name.len()].is_ascii_uppercase() {
                            let suffix = &k[name.len()..];
                            let tid = self.m.type_id(suffix).or_else(|| {
                                let mut lc = suffix.to_string();
                                lc[..1].make_ascii_lowercase();
                                self.m.type_id(&lc)
                            });
                            self.push_children(obj, k, tid, out);
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    /// All direct children of a node (for children()/descendants()).
    pub(crate) fn children_of(&self, it: &Item<'a>, out: &mut Vec<Item<'a>>) {
        let Item::Node(n) = it else { return };
        if n.is_primitive() {
            if let Some(Value::Object(eo)) = n.ext {
                if eo.contains_key("id") {
                    self.push_children(eo, "id", self.m.type_id("string"), out);
                }
                if eo.contains_key("extension") {
                    self.push_children(eo, "extension", self.m.type_id("Extension"), out);
                }
            }
            return;
        }
        let Some(Value::Object(obj)) = n.value else { return };
        let t = self.node_type(n).map(|x| x.1);
        for (k, _) in obj.iter() {
            if k == "resourceType" || k == "fhir_comments" {
                continue;
            }
            let key: &str = match k.strip_prefix('_') {
                Some(k2) => {
                    if obj.contains_key(k2) {
                        continue;
                    }
                    k2
                }
                None => k,
            };
            let tid = match t {
                Some(t) => match t.elements.get(key) {
                    Some(el) => el.types.first().copied(),
                    None => None,
                },
                None => None,
            };
            self.push_children(obj, key, tid, out);
        }
    }

    // ---------- helpers ----------

    pub(crate) fn single_int(&self, v: &[Item<'a>], what: &str) -> Result<Option<i64>, EvalError> {
        match v.len() {
            0 => Ok(None),
            1 => match v[0].prim() {
                Prim::Int(i) => Ok(Some(i)),
                _ => fail(format!("{what}: expected an Integer")),
            },
            _ => fail(format!("{what}: expected a single Integer")),
        }
    }

    /// Singleton evaluation of collections as boolean.
    pub(crate) fn to_bool(&self, v: &[Item<'a>], what: &str) -> Result<Option<bool>, EvalError> {
        match v.len() {
            0 => Ok(None),
            1 => match v[0].prim() {
                Prim::Bool(b) => Ok(Some(b)),
                _ => Ok(Some(true)),
            },
            _ => fail(format!("{what}: expected a single boolean, got {} items", v.len())),
        }
    }

    // ---------- operators ----------

    /// Evaluate an operand, borrowing literals from the AST (no allocation).
    fn operand<'x>(&self, e: &'x Expr, input: &[Item<'a>], fr: &Frame<'a>) -> Result<Cow<'x, [Item<'a>]>, EvalError> {
        match e {
            Expr::Literal(it) => Ok(Cow::Borrowed(std::slice::from_ref(it))),
            _ => Ok(Cow::Owned(self.eval(e, input, fr)?)),
        }
    }

    /// Evaluate an expression in a boolean context (singleton evaluation), avoiding allocations
    /// for logical operators and comparisons.
    pub(crate) fn eval_bool(&self, e: &Expr, input: &[Item<'a>], fr: &Frame<'a>, what: &str) -> Result<Option<bool>, EvalError> {
        use BinOp::*;
        match e {
            Expr::Literal(Item::Boolean(b)) => Ok(Some(*b)),
            Expr::Binary(op @ (And | Or | Xor | Implies), l, r) => self.logic(*op, l, r, input, fr),
            Expr::Binary(op @ (Eq | Ne | Lt | Gt | Le | Ge), l, r) => self.comparison(*op, l, r, input, fr),
            // most invariants are made of these: answered without a collection for the result
            Expr::Call(target, fc) if matches!(fc.func, Func::Empty | Func::Exists) => {
                let evaluated;
                let focus = match target {
                    Some(t) => {
                        evaluated = self.eval(t, input, fr)?;
                        &evaluated[..]
                    }
                    None => input,
                };
                self.exists_or_empty(fc, focus, fr).map(Some)
            }
            _ => {
                let v = self.eval(e, input, fr)?;
                self.to_bool(&v, what)
            }
        }
    }

    fn logic(&self, op: BinOp, l: &Expr, r: &Expr, input: &[Item<'a>], fr: &Frame<'a>) -> Result<Option<bool>, EvalError> {
        use BinOp::*;
        let a = self.eval_bool(l, input, fr, "boolean operator")?;
        // short-circuit
        match (op, a) {
            (And, Some(false)) => return Ok(Some(false)),
            (Or, Some(true)) => return Ok(Some(true)),
            (Implies, Some(false)) => return Ok(Some(true)),
            _ => {}
        }
        let b = self.eval_bool(r, input, fr, "boolean operator")?;
        Ok(match op {
            And => match (a, b) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Or => match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Xor => match (a, b) {
                (Some(x), Some(y)) => Some(x != y),
                _ => None,
            },
            _ => match (a, b) {
                (Some(true), b) => b,
                (None, Some(true)) => Some(true),
                _ => None,
            },
        })
    }

    fn comparison(&self, op: BinOp, l: &Expr, r: &Expr, input: &[Item<'a>], fr: &Frame<'a>) -> Result<Option<bool>, EvalError> {
        use BinOp::*;
        let a = self.operand(l, input, fr)?;
        let b = self.operand(r, input, fr)?;
        if a.is_empty() || b.is_empty() {
            return Ok(None);
        }
        match op {
            Eq | Ne => {
                let r = if a.len() != b.len() {
                    Some(false)
                } else {
                    let mut res = Some(true);
                    for (x, y) in a.iter().zip(b.iter()) {
                        match equals(x, y) {
                            Some(true) => {}
                            Some(false) => {
                                res = Some(false);
                                break;
                            }
                            None => res = None,
                        }
                    }
                    res
                };
                Ok(r.map(|v| if op == Eq { v } else { !v }))
            }
            _ => {
                if a.len() > 1 || b.len() > 1 {
                    return fail("comparison of collections with more than one item");
                }
                let Some(o) = compare(&a[0], &b[0])? else { return Ok(None) };
                Ok(Some(match op {
                    Lt => o == Ordering::Less,
                    Gt => o == Ordering::Greater,
                    Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
        }
    }

    fn binary(&self, op: BinOp, l: &Expr, r: &Expr, input: &[Item<'a>], fr: &Frame<'a>) -> R<'a> {
        use BinOp::*;
        match op {
            And | Or | Xor | Implies => {
                return Ok(self.logic(op, l, r, input, fr)?.map(Item::Boolean).into_iter().collect());
            }
            Eq | Ne | Lt | Gt | Le | Ge => {
                return Ok(self.comparison(op, l, r, input, fr)?.map(Item::Boolean).into_iter().collect());
            }
            _ => {}
        }
        let a = self.operand(l, input, fr)?;
        let b = self.operand(r, input, fr)?;
        match op {
            Union => {
                let mut out: Vec<Item<'a>> = Vec::with_capacity(a.len() + b.len());
                for it in a.iter().chain(b.iter()) {
                    if !out.iter().any(|o| equals(o, it) == Some(true)) {
                        out.push(it.clone());
                    }
                }
                Ok(out)
            }
            Equiv | NEquiv => {
                let r = if a.is_empty() && b.is_empty() {
                    true
                } else if a.len() != b.len() {
                    false
                } else {
                    let mut used = vec![false; b.len()];
                    a.iter().all(|x| {
                        for (j, y) in b.iter().enumerate() {
                            if !used[j] && equivalent(x, y) {
                                used[j] = true;
                                return true;
                            }
                        }
                        false
                    })
                };
                Ok(vec![Item::Boolean(if op == Equiv { r } else { !r })])
            }
            In | Contains => {
                let (item, coll) = if op == In { (&a, &b) } else { (&b, &a) };
                if item.is_empty() {
                    return Ok(Vec::new());
                }
                if item.len() > 1 {
                    return fail("membership test on a collection of more than one item");
                }
                Ok(vec![Item::Boolean(coll.iter().any(|c| equals(c, &item[0]) == Some(true)))])
            }
            Concat => {
                if a.len() > 1 || b.len() > 1 {
                    return fail("& on a collection of more than one item");
                }
                let sa = a.first().map(|x| self.string_of(x)).transpose()?.unwrap_or_default();
                let sb = b.first().map(|x| self.string_of(x)).transpose()?.unwrap_or_default();
                Ok(vec![Item::String(Arc::from(format!("{sa}{sb}")))])
            }
            _ => {
                if a.is_empty() || b.is_empty() {
                    return Ok(Vec::new());
                }
                if a.len() > 1 || b.len() > 1 {
                    return fail("arithmetic on a collection of more than one item");
                }
                arith(op, &a[0], &b[0])
            }
        }
    }

    fn string_of(&self, it: &Item<'a>) -> Result<String, EvalError> {
        match it.prim() {
            Prim::Str(s) => Ok(s.to_string()),
            _ => fail(format!("expected a String, got {}", it.type_name())),
        }
    }
}

// ---------- equality / comparison ----------

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w)),
        (Value::Number(x), Value::Number(y)) => {
            match (crate::value::json_decimal(x), crate::value::json_decimal(y)) {
                (Some(p), Some(q)) => p == q,
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

fn datetime_cmp(a: &DateTime, b: &DateTime) -> Option<Ordering> {
    if a.time.is_some() && b.time.is_some() && a.tz_minutes.is_some() != b.tz_minutes.is_some() {
        return None;
    }
    let normalize = a.tz_minutes.is_some() || b.tz_minutes.is_some();
    let ca = a.components(normalize);
    let cb = b.components(normalize);
    compare_components(&ca, prec_len(a.precision), &cb, prec_len(b.precision))
}

fn time_cmp(a: &Time, b: &Time) -> Option<Ordering> {
    compare_components(&a.components(), time_prec_len(a.precision), &b.components(), time_prec_len(b.precision))
}

/// Quantity values in comparable form: (value in canonical units, canonical key).
fn qty_canonical(v: Decimal, unit: &str) -> Option<(Decimal, String)> {
    if ucum::is_calendar(unit) {
        match ucum::calendar_to_ucum(unit) {
            Some(u) => return qty_canonical(v, u),
            None => return Some((v, format!("cal:{unit}"))),
        }
    }
    let (f, dims) = ucum::parse(unit)?;
    Some((v.checked_mul(f)?, ucum::format_dims(&dims)))
}

fn qty_cmp(av: Decimal, au: &str, bv: Decimal, bu: &str) -> Option<Ordering> {
    if au == bu {
        return Some(av.cmp(&bv));
    }
    let (x, ku) = qty_canonical(av, au)?;
    let (y, kv) = qty_canonical(bv, bu)?;
    if ku != kv {
        return None;
    }
    Some(x.normalize().cmp(&y.normalize()))
}

/// FHIRPath `=` on two single items: Some(bool), or None when undecidable (date precision).
pub(crate) fn equals(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    let (pa, pb) = (a.prim(), b.prim());
    Some(match (&pa, &pb) {
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Str(x), Prim::Str(y)) => x == y,
        (Prim::Int(x), Prim::Int(y)) => x == y,
        (Prim::Int(x), Prim::Dec(y)) | (Prim::Dec(y), Prim::Int(x)) => Decimal::from(*x) == *y,
        (Prim::Dec(x), Prim::Dec(y)) => x == y,
        (Prim::Date(x), Prim::Date(y)) => return datetime_cmp(&DateTime::from_date(*x), &DateTime::from_date(*y)).map(|o| o.is_eq()),
        (Prim::Date(x), Prim::DateTime(y)) => return datetime_cmp(&DateTime::from_date(*x), y).map(|o| o.is_eq()),
        (Prim::DateTime(x), Prim::Date(y)) => return datetime_cmp(x, &DateTime::from_date(*y)).map(|o| o.is_eq()),
        (Prim::DateTime(x), Prim::DateTime(y)) => return datetime_cmp(x, y).map(|o| o.is_eq()),
        (Prim::Time(x), Prim::Time(y)) => return time_cmp(x, y).map(|o| o.is_eq()),
        (Prim::Qty(av, au), Prim::Qty(bv, bu)) => {
            if au == bu {
                av == bv
            } else {
                return qty_cmp(*av, au, *bv, bu).map(|o| o.is_eq());
            }
        }
        (Prim::Other, Prim::Other) => match (a, b) {
            (Item::Node(x), Item::Node(y)) => match (x.value, y.value) {
                (Some(v), Some(w)) => std::ptr::eq(v, w) || json_equal(v, w),
                _ => false,
            },
            _ => false,
        },
        _ => false,
    })
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn dec_scale_round(d: Decimal, scale: u32) -> Decimal {
    d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
}

/// FHIRPath `~` on two single items.
pub(crate) fn equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    let (pa, pb) = (a.prim(), b.prim());
    match (&pa, &pb) {
        (Prim::Str(x), Prim::Str(y)) => normalize_ws(x) == normalize_ws(y),
        (Prim::Dec(x), Prim::Dec(y)) => {
            let s = x.scale().min(y.scale());
            dec_scale_round(*x, s) == dec_scale_round(*y, s)
        }
        (Prim::Int(x), Prim::Dec(y)) | (Prim::Dec(y), Prim::Int(x)) => {
            dec_scale_round(*y, 0) == Decimal::from(*x)
        }
        (Prim::Qty(av, au), Prim::Qty(bv, bu)) => {
            if au == bu {
                let s = av.scale().min(bv.scale());
                return dec_scale_round(*av, s) == dec_scale_round(*bv, s);
            }
            match (qty_canonical(*av, au), qty_canonical(*bv, bu)) {
                (Some((x, k1)), Some((y, k2))) if k1 == k2 => {
                    let s = x.scale().min(y.scale());
                    dec_scale_round(x, s) == dec_scale_round(y, s)
                }
                _ => false,
            }
        }
        (Prim::Date(_) | Prim::DateTime(_), Prim::Date(_) | Prim::DateTime(_)) | (Prim::Time(_), Prim::Time(_)) => {
            equals(a, b) == Some(true)
        }
        (Prim::Other, Prim::Other) => match (a, b) {
            (Item::Node(x), Item::Node(y)) => match (x.value, y.value) {
                (Some(v), Some(w)) => json_equiv(v, w),
                _ => false,
            },
            _ => false,
        },
        _ => equals(a, b) == Some(true),
    }
}

fn json_equiv(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let xs: Vec<_> = x.iter().filter(|(k, _)| k.as_str() != "id" && k.as_str() != "extension").collect();
            let ys: Vec<_> = y.iter().filter(|(k, _)| k.as_str() != "id" && k.as_str() != "extension").collect();
            xs.len() == ys.len() && xs.iter().all(|(k, v)| y.get(*k).is_some_and(|w| json_equiv(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equiv(v, w)),
        (Value::String(x), Value::String(y)) => normalize_ws(x) == normalize_ws(y),
        _ => json_equal(a, b),
    }
}

/// Ordering comparison; Ok(None) = undecidable (empty), Err = incomparable types.
pub(crate) fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<Ordering>, EvalError> {
    let (pa, pb) = (a.prim(), b.prim());
    Ok(match (&pa, &pb) {
        (Prim::Str(x), Prim::Str(y)) => Some(x.cmp(y)),
        (Prim::Int(x), Prim::Int(y)) => Some(x.cmp(y)),
        (Prim::Int(x), Prim::Dec(y)) => Some(Decimal::from(*x).cmp(y)),
        (Prim::Dec(x), Prim::Int(y)) => Some(x.cmp(&Decimal::from(*y))),
        (Prim::Dec(x), Prim::Dec(y)) => Some(x.cmp(y)),
        (Prim::Date(x), Prim::Date(y)) => datetime_cmp(&DateTime::from_date(*x), &DateTime::from_date(*y)),
        (Prim::Date(x), Prim::DateTime(y)) => datetime_cmp(&DateTime::from_date(*x), y),
        (Prim::DateTime(x), Prim::Date(y)) => datetime_cmp(x, &DateTime::from_date(*y)),
        (Prim::DateTime(x), Prim::DateTime(y)) => datetime_cmp(x, y),
        (Prim::Time(x), Prim::Time(y)) => time_cmp(x, y),
        (Prim::Qty(av, au), Prim::Qty(bv, bu)) => qty_cmp(*av, au, *bv, bu),
        _ => return fail(format!("cannot compare {} with {}", a.type_name(), b.type_name())),
    })
}

// ---------- arithmetic ----------

fn int_result<'a>(v: Option<i64>) -> R<'a> {
    Ok(v.filter(|x| *x >= i32::MIN as i64 && *x <= i32::MAX as i64).map(Item::Integer).into_iter().collect())
}

fn calendar_unit(unit: &str, for_date: bool) -> Result<Option<(Precision, i128)>, EvalError> {
    // (unit, nanos per unit) ; years/months have no fixed nanos
    const NS: i128 = 1_000_000_000;
    Ok(Some(match unit {
        "year" => (Precision::Year, 0),
        "month" => (Precision::Month, 0),
        "week" | "wk" => (Precision::Day, 7 * 86_400 * NS),
        "day" | "d" => (Precision::Day, 86_400 * NS),
        "hour" | "h" => (Precision::Hour, 3600 * NS),
        "minute" | "min" => (Precision::Minute, 60 * NS),
        "second" | "s" => (Precision::Second, NS),
        "millisecond" | "ms" => (Precision::Millisecond, 1_000_000),
        "a" | "mo" => {
            let _ = for_date;
            return fail(format!("UCUM unit '{unit}' cannot be used in date arithmetic"));
        }
        _ => return Ok(None),
    }))
}

fn add_duration<'a>(base: &Item<'a>, q: (Decimal, &str), sign: i64) -> R<'a> {
    let (v, unit) = q;
    let Some((prec, per)) = calendar_unit(unit, true)? else {
        return fail(format!("cannot add a quantity with unit '{unit}' to a date/time"));
    };
    let v = v.trunc() * Decimal::from(sign);
    match base.prim() {
        Prim::Date(_) | Prim::DateTime(_) => {
            let (dt, is_date) = match base.prim() {
                Prim::Date(d) => (DateTime::from_date(d), true),
                Prim::DateTime(d) => (d, false),
                _ => unreachable!(),
            };
            let r = if per == 0 {
                let n = v.trunc().to_i64().unwrap_or(0);
                dt.add(prec, n, 0)
            } else {
                // truncate to the value's precision unit
                let total = v.checked_mul(Decimal::from(per)).unwrap_or(Decimal::MAX).trunc().to_i128().unwrap_or(0);
                let unit_ns: i128 = match dt.precision {
                    Precision::Year | Precision::Month | Precision::Day => 86_400 * 1_000_000_000,
                    Precision::Hour => 3600 * 1_000_000_000,
                    Precision::Minute => 60 * 1_000_000_000,
                    Precision::Second => 1_000_000_000,
                    Precision::Millisecond => 1_000_000,
                };
                let total = (total / unit_ns) * unit_ns;
                if dt.precision < Precision::Day {
                    // year/month precision: convert days to months? keep as is
                    let days = (total / (86_400 * 1_000_000_000)) as i64;
                    match dt.precision {
                        Precision::Year => dt.add(Precision::Year, days / 365, 0),
                        _ => dt.add(Precision::Month, days / 30, 0),
                    }
                } else {
                    dt.add(prec, 0, total)
                }
            };
            let Some(r) = r else { return Ok(Vec::new()) };
            Ok(vec![if is_date { Item::Date(r.date) } else { Item::DateTime(r) }])
        }
        Prim::Time(t) => {
            if per == 0 {
                return fail("cannot add years/months to a Time");
            }
            let total = v.checked_mul(Decimal::from(per)).unwrap_or(Decimal::MAX).trunc().to_i128().unwrap_or(0);
            let unit_ns: i128 = match t.precision {
                Precision::Hour => 3600 * 1_000_000_000,
                Precision::Minute => 60 * 1_000_000_000,
                Precision::Second => 1_000_000_000,
                _ => 1_000_000,
            };
            Ok(vec![Item::Time(t.add_nanos((total / unit_ns) * unit_ns))])
        }
        _ => fail("date arithmetic on a non-date"),
    }
}

fn arith<'a>(op: BinOp, a: &Item<'a>, b: &Item<'a>) -> R<'a> {
    use BinOp::*;
    let (pa, pb) = (a.prim(), b.prim());
    let dec = |d: Option<Decimal>| -> R<'a> { Ok(d.map(Item::Decimal).into_iter().collect()) };
    match (op, &pa, &pb) {
        (Add, Prim::Str(x), Prim::Str(y)) => Ok(vec![Item::String(Arc::from(format!("{x}{y}")))]),
        (Add, Prim::Int(x), Prim::Int(y)) => int_result(x.checked_add(*y)),
        (Sub, Prim::Int(x), Prim::Int(y)) => int_result(x.checked_sub(*y)),
        (Mul, Prim::Int(x), Prim::Int(y)) => int_result(x.checked_mul(*y)),
        (IntDiv, Prim::Int(x), Prim::Int(y)) => {
            if *y == 0 { Ok(Vec::new()) } else { int_result(x.checked_div(*y)) }
        }
        (Mod, Prim::Int(x), Prim::Int(y)) => {
            if *y == 0 {
                Ok(Vec::new())
            } else {
                int_result(Some(x % y))
            }
        }
        (Add | Sub | Mul | Div | IntDiv | Mod, Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            let x = a.as_decimal().unwrap();
            let y = b.as_decimal().unwrap();
            match op {
                Add => dec(x.checked_add(y)),
                Sub => dec(x.checked_sub(y)),
                Mul => dec(x.checked_mul(y)),
                Div => {
                    if y.is_zero() {
                        Ok(Vec::new())
                    } else {
                        dec(x.checked_div(y).map(|d| d.normalize()))
                    }
                }
                IntDiv => {
                    if y.is_zero() {
                        Ok(Vec::new())
                    } else {
                        int_result(x.checked_div(y).and_then(|d| d.trunc().to_i64()))
                    }
                }
                _ => {
                    if y.is_zero() {
                        Ok(Vec::new())
                    } else {
                        dec(x.checked_rem(y))
                    }
                }
            }
        }
        (Add | Sub, Prim::Date(_) | Prim::DateTime(_) | Prim::Time(_), Prim::Qty(v, u)) => {
            add_duration(a, (*v, u), if op == Add { 1 } else { -1 })
        }
        (Add | Sub, Prim::Qty(x, ux), Prim::Qty(y, uy)) => {
            if ux == uy {
                let r = if op == Add { x.checked_add(*y) } else { x.checked_sub(*y) };
                return Ok(r.map(|r| Item::Quantity(Quantity { value: r, unit: Arc::from(*ux) })).into_iter().collect());
            }
            // convert y to ux
            match (qty_canonical(Decimal::ONE, ux), qty_canonical(*y, uy)) {
                (Some((fx, kx)), Some((cy, ky))) if kx == ky && !fx.is_zero() => {
                    let r = cy.checked_div(fx).and_then(|yy| if op == Add { x.checked_add(yy) } else { x.checked_sub(yy) });
                    Ok(r.map(|r| Item::Quantity(Quantity { value: r, unit: Arc::from(*ux) })).into_iter().collect())
                }
                _ => Ok(Vec::new()),
            }
        }
        (Mul | Div, Prim::Qty(x, ux), Prim::Qty(y, uy)) => {
            let (Some((fx, dx)), Some((fy, dy))) = (ucum::parse(ux), ucum::parse(uy)) else { return Ok(Vec::new()) };
            let mut dims = dx.clone();
            for (k, v) in dy {
                *dims.entry(k).or_insert(0) += if op == Mul { v } else { -v };
            }
            dims.retain(|_, v| *v != 0);
            let value = if op == Mul {
                x.checked_mul(fx).and_then(|a| a.checked_mul(*y)).and_then(|a| a.checked_mul(fy))
            } else {
                let den = y.checked_mul(fy);
                match den {
                    Some(d) if !d.is_zero() => x.checked_mul(fx).and_then(|n| n.checked_div(d)).map(|r| r.normalize()),
                    _ => None,
                }
            };
            let Some(value) = value else { return Ok(Vec::new()) };
            Ok(vec![Item::Quantity(Quantity { value, unit: Arc::from(ucum::format_dims(&dims)) })])
        }
        (Mul, Prim::Qty(x, u), Prim::Int(_) | Prim::Dec(_)) => {
            Ok(x.checked_mul(b.as_decimal().unwrap()).map(|v| Item::Quantity(Quantity { value: v, unit: Arc::from(*u) })).into_iter().collect())
        }
        (Mul, Prim::Int(_) | Prim::Dec(_), Prim::Qty(x, u)) => {
            Ok(x.checked_mul(a.as_decimal().unwrap()).map(|v| Item::Quantity(Quantity { value: v, unit: Arc::from(*u) })).into_iter().collect())
        }
        (Div, Prim::Qty(x, u), Prim::Int(_) | Prim::Dec(_)) => {
            let y = b.as_decimal().unwrap();
            if y.is_zero() {
                return Ok(Vec::new());
            }
            Ok(x.checked_div(y).map(|v| Item::Quantity(Quantity { value: v.normalize(), unit: Arc::from(*u) })).into_iter().collect())
        }
        _ => fail(format!("operator {:?} cannot be applied to {} and {}", op, a.type_name(), b.type_name())),
    }
}

pub(crate) fn arith_pub<'a>(op: BinOp, a: &Item<'a>, b: &Item<'a>) -> R<'a> {
    arith(op, a, b)
}
