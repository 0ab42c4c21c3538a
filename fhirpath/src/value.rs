//! FHIRPath values: JSON tree nodes and System values.

use crate::datetime::{Date, DateTime, Time};
use crate::model::{Conv, Kind, Model, TypeDef, TypeId};
use rust_decimal::Decimal;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A System.Quantity: a decimal value with a UCUM unit or calendar duration keyword
/// (`year`, `month`, `week`, `day`, `hour`, `minute`, `second`, `millisecond`).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub value: Decimal,
    pub unit: Arc<str>,
}

/// A node of the FHIR JSON tree with its FHIR type. For primitives, `value` is the JSON
/// primitive (may be absent when only `_x` extensions exist) and `ext` the `_x` sibling object.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub(crate) value: Option<&'a Value>,
    pub(crate) ext: Option<&'a Value>,
    pub(crate) ty: Option<&'a TypeDef>,
    pub(crate) tid: Option<TypeId>,
    /// For resolve() stubs: the resource type name when no JSON exists.
    pub(crate) stub_id: Option<&'a str>,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node<{}>({})", self.type_name(), self.value.map(|v| v.to_string()).unwrap_or_default())
    }
}

impl<'a> Node<'a> {
    /// The FHIR type name (`Patient`, `CodeableConcept`, `dateTime`, `BackboneElement`).
    pub fn type_name(&self) -> &'a str {
        if let Some(t) = self.ty {
            if t.kind == Kind::Resource && t.is_abstract
                && let Some(rt) = self.value.and_then(|v| json_prop(v, "resourceType")).and_then(Value::as_str) {
                    return rt;
                }
            return &t.code;
        }
        match self.value {
            Some(Value::Object(o)) => json_get(o, "resourceType").and_then(Value::as_str).unwrap_or("Element"),
            Some(Value::String(_)) => "string",
            Some(Value::Bool(_)) => "boolean",
            Some(Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    "integer"
                } else {
                    "decimal"
                }
            }
            _ => "Element",
        }
    }
    /// The JSON value (object for complex types, primitive JSON value for primitives).
    pub fn json(&self) -> Option<&'a Value> {
        self.value
    }
    /// The `_x` sibling of a primitive (holding `id` / `extension`).
    pub fn primitive_extension(&self) -> Option<&'a Value> {
        self.ext
    }
    /// For a `resolve()` stub (a literal reference resolved without a resource): the referenced id.
    pub fn reference_id(&self) -> Option<&'a str> {
        self.stub_id
    }
    /// true for a `resolve()` stub (type known from the reference, no JSON content).
    pub fn is_stub(&self) -> bool {
        self.stub_id.is_some() && self.value.is_none()
    }
    /// The model type id, if typed.
    pub fn type_id(&self) -> Option<TypeId> {
        self.tid
    }
    /// The model key of the type (element path for backbone elements, e.g. `Patient.contact`).
    pub fn type_key(&self) -> Option<&'a str> {
        self.ty.map(|t| &*t.name)
    }
    pub(crate) fn is_primitive(&self) -> bool {
        match self.ty {
            Some(t) => t.kind == Kind::Primitive,
            None => !matches!(self.value, Some(Value::Object(_)) | Some(Value::Array(_))),
        }
    }
}

/// Reflection type information, the result of `type()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// `System` or `FHIR`.
    pub namespace: &'static str,
    /// The type name (`Integer`, `Patient`, `dateTime`).
    pub name: Arc<str>,
}

/// A FHIRPath value. (Non-exhaustive: match with a `_` arm.)
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Item<'a> {
    /// A node in the FHIR JSON tree.
    Node(Node<'a>),
    Boolean(bool),
    String(Arc<str>),
    Integer(i64),
    Decimal(Decimal),
    Date(Date),
    DateTime(DateTime),
    Time(Time),
    Quantity(Quantity),
    /// Result of `type()`.
    TypeInfo(TypeInfo),
}

/// Parse a JSON number's textual form to Decimal (keeps precision).
pub(crate) fn json_decimal(n: &serde_json::Number) -> Option<Decimal> {
    let s = n.as_str();
    Decimal::from_str(s).ok().or_else(|| Decimal::from_scientific(s).ok())
}

/// Objects up to this many properties are searched by scanning instead of hashing (serde_json's
/// map hashes every lookup with SipHash; FHIR objects are small).
const SCAN_LIMIT: usize = 32;

/// Property `k` of a JSON object (same result as `Map::get`, faster for small objects).
#[inline]
pub fn json_get<'v>(o: &'v serde_json::Map<String, Value>, k: &str) -> Option<&'v Value> {
    if o.len() <= SCAN_LIMIT { o.iter().find(|(n, _)| n.as_str() == k).map(|(_, v)| v) } else { o.get(k) }
}

/// Property `k` of a JSON value (None unless it is an object).
#[inline]
pub fn json_prop<'v>(v: &'v Value, k: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => json_get(o, k),
        _ => None,
    }
}

/// Properties `k` and `_k` of a JSON object (the value of a primitive and its extension sibling),
/// in one pass.
#[inline]
pub(crate) fn json_get_with_ext<'v>(o: &'v serde_json::Map<String, Value>, k: &str) -> (Option<&'v Value>, Option<&'v Value>) {
    if o.len() > SCAN_LIMIT {
        let mut buf = [0u8; 128];
        let e = if k.len() < buf.len() {
            buf[0] = b'_';
            buf[1..=k.len()].copy_from_slice(k.as_bytes());
            std::str::from_utf8(&buf[..=k.len()]).ok().and_then(|u| o.get(u))
        } else {
            o.get(format!("_{k}").as_str())
        };
        return (o.get(k), e);
    }
    let kb = k.as_bytes();
    let (mut v, mut e) = (None, None);
    for (n, x) in o {
        let nb = n.as_bytes();
        if nb.len() == kb.len() {
            if nb == kb {
                v = Some(x);
            }
        } else if nb.len() == kb.len() + 1 && nb[0] == b'_' && &nb[1..] == kb {
            e = Some(x);
        }
    }
    (v, e)
}

/// Primitive view of an item used by operators.
#[derive(Debug, Clone)]
pub(crate) enum Prim<'x> {
    Bool(bool),
    Str(&'x str),
    Int(i64),
    Dec(Decimal),
    Date(Date),
    DateTime(DateTime),
    Time(Time),
    Qty(Decimal, &'x str),
    /// Complex node or value-less primitive.
    Other,
}

impl<'a> Item<'a> {
    /// A System.String item.
    pub fn string(s: &str) -> Item<'static> {
        Item::String(Arc::from(s))
    }

    /// A node item for a JSON value of FHIR type `type_name` (a type name or backbone path; empty
    /// = from `resourceType`). `ext` is the `_x` sibling for primitives.
    pub fn from_json(model: &'a Model, value: &'a Value, ext: Option<&'a Value>, type_name: &str) -> Item<'a> {
        let tid = if type_name.is_empty() {
            json_prop(value, "resourceType").and_then(Value::as_str).and_then(|n| model.type_id(n))
        } else {
            model.type_id(type_name)
        };
        Item::Node(Node { value: Some(value), ext, ty: tid.map(|t| model.def(t)), tid, stub_id: None })
    }

    pub(crate) fn node(model: &'a Model, value: Option<&'a Value>, ext: Option<&'a Value>, tid: Option<TypeId>) -> Item<'a> {
        Item::Node(Node { value, ext, ty: tid.map(|t| model.def(t)), tid, stub_id: None })
    }

    /// The type name: the FHIR type for nodes (`Coding`, `dateTime`, `Patient`), the System type
    /// (`Boolean`, `String`, `Integer`, `Decimal`, `Date`, `DateTime`, `Time`, `Quantity`) otherwise.
    pub fn type_name(&self) -> &str {
        match self {
            Item::Node(n) => n.type_name(),
            Item::Boolean(_) => "Boolean",
            Item::String(_) => "String",
            Item::Integer(_) => "Integer",
            Item::Decimal(_) => "Decimal",
            Item::Date(_) => "Date",
            Item::DateTime(_) => "DateTime",
            Item::Time(_) => "Time",
            Item::Quantity(_) => "Quantity",
            Item::TypeInfo(_) => "TypeInfo",
        }
    }

    /// Is this a System value (not a node of the FHIR tree)?
    pub fn is_system(&self) -> bool {
        !matches!(self, Item::Node(_))
    }

    /// The JSON node (None for System values and resolve() stubs).
    pub fn as_json(&self) -> Option<&'a Value> {
        match self {
            Item::Node(n) => n.value,
            _ => None,
        }
    }

    /// The node (None for System values).
    pub fn as_node(&self) -> Option<&Node<'a>> {
        match self {
            Item::Node(n) => Some(n),
            _ => None,
        }
    }

    /// String value of a String item or string-like primitive node (`string`, `code`, `uri`, `id`...,
    /// also date/time primitives in their JSON text form).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::String(s) => Some(s),
            Item::Node(n) => n.value.and_then(Value::as_str),
            _ => None,
        }
    }

    /// Boolean value of a Boolean item or `boolean` node.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Boolean(b) => Some(*b),
            Item::Node(n) if n.is_primitive() => n.value.and_then(Value::as_bool),
            _ => None,
        }
    }

    /// Integer value (Integer item or integer-typed node).
    pub fn as_integer(&self) -> Option<i64> {
        match self.prim() {
            Prim::Int(i) => Some(i),
            _ => None,
        }
    }

    /// Decimal value (Decimal or Integer item, or numeric node).
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self.prim() {
            Prim::Int(i) => Some(Decimal::from(i)),
            Prim::Dec(d) => Some(d),
            _ => None,
        }
    }

    /// Date/DateTime value as a DateTime (dates keep their precision).
    pub fn as_datetime(&self) -> Option<DateTime> {
        match self.prim() {
            Prim::Date(d) => Some(DateTime::from_date(d)),
            Prim::DateTime(d) => Some(d),
            _ => None,
        }
    }

    /// Quantity value (System Quantity, or a FHIR Quantity node using `code`, else `unit`).
    pub fn as_quantity(&self) -> Option<Quantity> {
        match self.prim() {
            Prim::Qty(v, u) => Some(Quantity { value: v, unit: Arc::from(u) }),
            _ => None,
        }
    }

    /// A primitive view of the value (for operators).
    pub(crate) fn prim(&self) -> Prim<'_> {
        match self {
            Item::Boolean(b) => Prim::Bool(*b),
            Item::String(s) => Prim::Str(s),
            Item::Integer(i) => Prim::Int(*i),
            Item::Decimal(d) => Prim::Dec(*d),
            Item::Date(d) => Prim::Date(*d),
            Item::DateTime(d) => Prim::DateTime(*d),
            Item::Time(t) => Prim::Time(*t),
            Item::Quantity(q) => Prim::Qty(q.value, &q.unit),
            Item::Node(n) => node_prim(n),
            Item::TypeInfo(_) => Prim::Other,
        }
    }

    /// Convert a node to the equivalent System value (nodes of complex types stay as they are).
    pub fn to_system(&self) -> Item<'a> {
        match self {
            Item::Node(n) => match node_prim(n) {
                Prim::Bool(b) => Item::Boolean(b),
                Prim::Str(s) => Item::String(Arc::from(s)),
                Prim::Int(i) => Item::Integer(i),
                Prim::Dec(d) => Item::Decimal(d),
                Prim::Date(d) => Item::Date(d),
                Prim::DateTime(d) => Item::DateTime(d),
                Prim::Time(t) => Item::Time(t),
                Prim::Qty(v, u) => Item::Quantity(Quantity { value: v, unit: Arc::from(u) }),
                Prim::Other => self.clone(),
            },
            _ => self.clone(),
        }
    }
}

fn node_prim<'x>(n: &Node<'x>) -> Prim<'x> {
    let Some(v) = n.value else { return Prim::Other };
    let conv = n.ty.map(|t| t.conv);
    match v {
        Value::Bool(b) => Prim::Bool(*b),
        Value::Number(num) => {
            let is_dec = conv == Some(Conv::Decimal) || (n.ty.is_none() && !(num.is_i64() || num.is_u64()));
            if !is_dec
                && let Some(i) = num.as_i64() {
                    return Prim::Int(i);
                }
            match json_decimal(num) {
                Some(d) => Prim::Dec(d),
                None => Prim::Other,
            }
        }
        Value::String(s) => match conv {
            Some(Conv::Date) => Date::parse(s).map(Prim::Date).unwrap_or(Prim::Str(s)),
            Some(Conv::DateTime) => DateTime::parse(s).map(Prim::DateTime).unwrap_or(Prim::Str(s)),
            Some(Conv::Time) => Time::parse(s).map(Prim::Time).unwrap_or(Prim::Str(s)),
            Some(Conv::Integer64) => s.parse().map(Prim::Int).unwrap_or(Prim::Str(s)),
            _ => Prim::Str(s),
        },
        Value::Object(o) => {
            if conv == Some(Conv::Quantity) {
                let Some(val) = json_get(o, "value").and_then(|v| match v {
                    Value::Number(n) => json_decimal(n),
                    _ => None,
                }) else {
                    return Prim::Other;
                };
                let unit = json_get(o, "code")
                    .and_then(Value::as_str)
                    .or_else(|| json_get(o, "unit").and_then(Value::as_str))
                    .unwrap_or("1");
                Prim::Qty(val, unit)
            } else {
                Prim::Other
            }
        }
        _ => Prim::Other,
    }
}

impl fmt::Display for Item<'_> {
    /// FHIRPath string form (as `toString()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prim() {
            Prim::Bool(b) => write!(f, "{b}"),
            Prim::Str(s) => write!(f, "{s}"),
            Prim::Int(i) => write!(f, "{i}"),
            Prim::Dec(d) => write!(f, "{d}"),
            Prim::Date(d) => write!(f, "{d}"),
            Prim::DateTime(d) => write!(f, "{d}"),
            Prim::Time(t) => write!(f, "{t}"),
            Prim::Qty(v, u) => write!(f, "{v} '{u}'"),
            Prim::Other => match self.as_json() {
                Some(v) => write!(f, "{v}"),
                None => write!(f, "{}", self.type_name()),
            },
        }
    }
}
