//! FHIRPath (R4 / N1, plus the 2.0 additions used by the R4 test suite) engine over FHIR JSON
//! (`serde_json::Value`), typed by FHIR StructureDefinitions.
//!
//! ```ignore
//! let model = Model::from_structure_definitions(sds.iter());      // once, at start-up
//! let expr = Expression::parse("identifier.where(system='x').value")?; // once per expression
//! let ctx = Context::new(&model).with_resource(&patient);
//! let items = evaluate(&expr, &ctx, &patient, "Patient")?;         // many times
//! ```
//!
//! Semantics worth knowing:
//! - Items borrow from the JSON (`Item::Node`); primitives are merged with their `_x` sibling so
//!   `.extension` / `.id` work on them; decimals keep their written precision.
//! - Choice elements are navigated by their FHIRPath name (`Observation.value`); the JSON name
//!   (`valueQuantity`) is accepted unless [`Context::with_strict`] is on.
//! - Navigating to a name that is not an element of the (known) type of every item is an
//!   evaluation error (semantic error), e.g. `Patient.name.given1`.
//! - `is` follows type inheritance (`code is string` is true); `as` / `ofType` require the exact
//!   FHIR primitive type (`code.as(string)` is empty), but follow inheritance for complex types
//!   and resources (`ofType(DomainResource)`).
//! - `resolve()`: `#id` (contained in `%resource`), then the [`Resolver`], then Bundle entries of
//!   `%rootResource`, else a stub node typed from the reference (`Patient/1`, absolute URLs,
//!   `/_history/n`), so `resolve() is Patient` works without a database.
//! - `memberOf()` uses the [`TerminologyHook`] (empty without one); `conformsTo()` only knows base
//!   types; `htmlChecks()` is always true.

mod boundary;
mod datetime;
mod eval;
mod functions;
mod model;
mod parser;
mod ucum;
mod value;

pub use datetime::{Date, DateTime, Precision, Time};
pub use model::{ElementInfo, Model, TypeId};
pub use parser::Expression;
pub use value::{Item, Node, Quantity, TypeInfo, json_get, json_prop};

use std::collections::HashMap;

/// A syntax error found while parsing an expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath parse error at {position}: {message}")]
pub struct ParseError {
    /// Human readable message.
    pub message: String,
    /// Byte offset in the source where the error was detected.
    pub position: usize,
}

/// An error raised while evaluating an expression (e.g. `single()` on several items, unknown function,
/// wrong argument count, invalid path for the focus type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath evaluation error: {message}")]
pub struct EvalError {
    /// Human readable message.
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        EvalError { message: message.into() }
    }
}

/// Resolves references for `resolve()`.
pub trait Resolver {
    /// Resolve a reference string (as found in `Reference.reference`, or a canonical/uri value)
    /// to a resource. The resource's type is taken from its `resourceType`.
    fn resolve(&self, reference: &str) -> Option<&serde_json::Value>;
}

/// Terminology hook used by `memberOf()`.
pub trait TerminologyHook {
    /// Is `item` (a `code`/`string`/`uri` item, a `Coding` or a `CodeableConcept`; inspect it with
    /// [`Item::type_name`], [`Item::as_json`], [`Item::as_str`]) a member of the value set `valueset_url`?
    /// `None` = unknown (the result of `memberOf()` is then empty).
    fn member_of(&self, item: &Item<'_>, valueset_url: &str) -> Option<bool>;
}

/// Evaluation environment: the model, environment variables (`%resource`, `%rootResource`, `%context`,
/// `%ucum`, `%sct`, `%loinc`, user variables), an optional [`Resolver`] and [`TerminologyHook`].
#[derive(Clone)]
pub struct Context<'a> {
    pub(crate) model: &'a Model,
    pub(crate) resource: Option<&'a serde_json::Value>,
    pub(crate) root_resource: Option<&'a serde_json::Value>,
    pub(crate) context: Option<Item<'a>>,
    pub(crate) variables: HashMap<String, Vec<Item<'a>>>,
    pub(crate) resolver: Option<&'a dyn Resolver>,
    pub(crate) terminology: Option<&'a dyn TerminologyHook>,
    pub(crate) now: Option<DateTime>,
    pub(crate) trace: bool,
    pub(crate) strict: bool,
}

impl<'a> Context<'a> {
    /// A new context over `model` with no resource and no variables.
    pub fn new(model: &'a Model) -> Self {
        Context {
            model,
            resource: None,
            root_resource: None,
            context: None,
            variables: HashMap::new(),
            resolver: None,
            terminology: None,
            now: None,
            trace: false,
            strict: false,
        }
    }
    /// Set `%resource` (and `%rootResource`, unless set separately). Also used to find contained
    /// resources for `#id` references.
    pub fn with_resource(mut self, resource: &'a serde_json::Value) -> Self {
        self.resource = Some(resource);
        self
    }
    /// Set `%rootResource` (e.g. the Bundle containing `%resource`). Used for Bundle-internal references.
    pub fn with_root_resource(mut self, root: &'a serde_json::Value) -> Self {
        self.root_resource = Some(root);
        self
    }
    /// Set `%context` explicitly (defaults to the focus passed to [`evaluate`]).
    pub fn with_context_item(mut self, item: Item<'a>) -> Self {
        self.context = Some(item);
        self
    }
    /// Define a variable `%name` (name without the `%`; e.g. `"vs-observation-codes"`).
    pub fn with_variable(mut self, name: impl Into<String>, value: Vec<Item<'a>>) -> Self {
        self.variables.insert(name.into(), value);
        self
    }
    /// Define a string variable `%name` (e.g. `%vs-xxx` / `%ext-xxx` URLs).
    pub fn with_string_variable(self, name: impl Into<String>, value: &str) -> Self {
        self.with_variable(name, vec![Item::string(value)])
    }
    /// Resolver used by `resolve()`. Without one, literal references resolve to type stubs.
    pub fn with_resolver(mut self, resolver: &'a dyn Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }
    /// Terminology hook for `memberOf()`. Without one, `memberOf()` returns empty.
    pub fn with_terminology(mut self, hook: &'a dyn TerminologyHook) -> Self {
        self.terminology = Some(hook);
        self
    }
    /// Fix the value of `now()` / `today()` / `timeOfDay()` (default: the system clock).
    pub fn with_now(mut self, now: DateTime) -> Self {
        self.now = Some(now);
        self
    }
    /// Print `trace()` output to stderr (default off).
    pub fn with_trace_output(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
    /// Strict mode: navigating to choice variants by JSON name (`valueQuantity`) or a wrong leading
    /// type name (`Encounter.id` on a Patient) is an error (default: lenient).
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
    /// The model.
    pub fn model(&self) -> &'a Model {
        self.model
    }
}

/// Evaluate `expr` against `focus`, a JSON node of FHIR type `focus_type` (a type name such as
/// `"Patient"`/`"HumanName"`, or an element path such as `"Patient.contact"`; empty = take the
/// `resourceType` of the focus).
pub fn evaluate<'a>(
    expr: &Expression,
    ctx: &Context<'a>,
    focus: &'a serde_json::Value,
    focus_type: &str,
) -> Result<Vec<Item<'a>>, EvalError> {
    let item = Item::from_json(ctx.model, focus, None, focus_type);
    evaluate_items(expr, ctx, vec![item])
}

/// Evaluate `expr` with an arbitrary input collection (e.g. a primitive node built with
/// [`Item::from_json`] carrying its `_x` sibling).
pub fn evaluate_items<'a>(
    expr: &Expression,
    ctx: &Context<'a>,
    input: Vec<Item<'a>>,
) -> Result<Vec<Item<'a>>, EvalError> {
    eval::evaluate(expr, ctx, &input)
}

/// Evaluate an invariant (ElementDefinition.constraint.expression): `Some(b)` for a single boolean
/// (a single non-boolean item counts as `true`), `None` for empty; an error for several items.
pub fn evaluate_bool<'a>(
    expr: &Expression,
    ctx: &Context<'a>,
    focus: &'a serde_json::Value,
    focus_type: &str,
) -> Result<Option<bool>, EvalError> {
    let item = Item::from_json(ctx.model, focus, None, focus_type);
    evaluate_slice_bool(expr, ctx, std::slice::from_ref(&item))
}

/// [`evaluate_bool`] over an arbitrary input collection.
pub fn evaluate_items_bool<'a>(
    expr: &Expression,
    ctx: &Context<'a>,
    input: Vec<Item<'a>>,
) -> Result<Option<bool>, EvalError> {
    evaluate_slice_bool(expr, ctx, &input)
}

/// [`evaluate_bool`] over a borrowed input collection (e.g. `std::slice::from_ref(&item)`, to
/// evaluate several invariants on one item without building a collection for each).
pub fn evaluate_slice_bool<'a>(
    expr: &Expression,
    ctx: &Context<'a>,
    input: &[Item<'a>],
) -> Result<Option<bool>, EvalError> {
    eval::evaluate_bool(expr, ctx, input)
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Expression>();
    f::<Model>();
}
