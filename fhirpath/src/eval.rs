use crate::parser::Expression;
use crate::value::Item;
use crate::{Context, EvalError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Todo,
}

pub(crate) fn lookup_func(_name: &str, _n: usize) -> Result<Func, String> {
    Ok(Func::Todo)
}

pub(crate) fn evaluate<'a>(_expr: &Expression, _ctx: &Context<'a>, _input: Vec<Item<'a>>) -> Result<Vec<Item<'a>>, EvalError> {
    todo!()
}
