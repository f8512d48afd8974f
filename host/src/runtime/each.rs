//! Answering a collection group's metrics in one call (world `metric-module-each` in
//! `wit/metric.wit`): the `collect.answer` import, and the answers of the
//! `handle-each` call in progress.
//!
//! Entering and leaving a component costs about a microsecond (lowering the metric's
//! name through the guest's `realloc`, the call, `post-return`), several times what a
//! cheap handler itself costs. One `handle-each` call per collection pays it once.
//!
//! Every metric keeps the budget of one `handler` call: each answer hands the host
//! the value and starts the next metric's fuel and deadline, so a module that loops
//! in one metric is stopped 1x to 2x its handler deadline after its last answer,
//! exactly as a `handler` call would be. An answer is checked against its
//! descriptor as it arrives, so the host holds at most one unchecked value at a time.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Linker, Lower};

use super::bindings::WitMetricValue;
use super::error::{InvalidOutput, truncate_to};
use super::instance::{Budget, set_budget};
use super::limits::MAX_ERROR_MESSAGE_BYTES;
use super::state::HostState;
use super::validate;
use crate::metric::{MetricDescriptor, MetricValue};

/// The export that answers many metrics (world `metric-module-each`).
pub(crate) const HANDLE_EACH: &str = "handle-each";

/// The instance of the `collect` interface in the linker.
const COLLECT: &str = "wasmond:metric/collect@0.1.0";

/// `collect.span`: the positions `first` up to `first + count - 1`, asked together.
#[derive(ComponentType, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(record)]
pub(crate) struct Span {
    first: u32,
    count: u32,
}

/// The positions `asked`, in order, as spans of consecutive positions.
pub(crate) fn spans(asked: &[u32]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for &position in asked {
        match spans.last_mut() {
            Some(last) if last.first.checked_add(last.count) == Some(position) => last.count += 1,
            _ => spans.push(Span {
                first: position,
                count: 1,
            }),
        }
    }
    spans
}

/// Links `collect.answer`, `answer-number` and `answer-text`, which only a
/// `handle-each` call may use.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut collect = linker.instance(COLLECT)?;
    collect.func_wrap(
        "answer",
        |store: StoreContextMut<'_, HostState>,
         (metric, value): (u32, Result<WitMetricValue, String>)| {
            answer(store, metric, Incoming::Value(value))
        },
    )?;
    collect.func_wrap(
        "answer-number",
        |store: StoreContextMut<'_, HostState>, (metric, number): (u32, f64)| {
            answer(store, metric, Incoming::Number(number))
        },
    )?;
    collect.func_wrap(
        "answer-text",
        |store: StoreContextMut<'_, HostState>, (metric, text): (u32, String)| {
            answer(store, metric, Incoming::Text(text))
        },
    )
}

/// An answer as the module gave it.
enum Incoming {
    Value(Result<WitMetricValue, String>),
    /// A numeric metric's value, to be stored as its declared type.
    Number(f64),
    /// A string metric's value.
    Text(String),
}

/// What one metric's answer came to.
pub(crate) enum Answer {
    Value(MetricValue),
    /// The module's `err(message)`, cut to the cap of error messages.
    Reported(String),
    /// A value that breaks its descriptor or a host cap.
    Invalid(InvalidOutput),
}

/// The `handle-each` call in progress, in its store's data.
pub(crate) struct Answers {
    /// The positions asked, in order.
    asked: Vec<u32>,
    /// What `init` declared, to check each value as it comes.
    descriptors: Arc<[MetricDescriptor]>,
    budget: Budget,
    /// One per answered metric, in the order asked.
    pub(crate) got: Vec<Answer>,
    /// Fuel the answered metrics burnt.
    pub(crate) fuel_used: u64,
}

impl Answers {
    pub(crate) fn new(
        asked: Vec<u32>,
        descriptors: Arc<[MetricDescriptor]>,
        budget: Budget,
    ) -> Answers {
        Answers {
            got: Vec::with_capacity(asked.len()),
            asked,
            descriptors,
            budget,
            fuel_used: 0,
        }
    }

    /// Records the answer for `metric`, which must be the next one asked.
    fn take(&mut self, metric: u32, value: Incoming, fuel_left: u64) -> wasmtime::Result<()> {
        let Some(&due) = self.asked.get(self.got.len()) else {
            wasmtime::bail!(
                "collect.answer: metric {metric} answered after every metric asked was answered"
            );
        };
        if metric != due {
            wasmtime::bail!("collect.answer: metric {metric} answered where metric {due} was due");
        }
        self.fuel_used += self.budget.fuel.saturating_sub(fuel_left);
        let descriptor = &self.descriptors[due as usize];
        let value = match value {
            Incoming::Value(Ok(value)) => Ok(MetricValue::from(value)),
            Incoming::Value(Err(message)) => {
                let message = truncate_to(&message, MAX_ERROR_MESSAGE_BYTES).to_string();
                self.got.push(Answer::Reported(message));
                return Ok(());
            }
            Incoming::Number(number) => validate::number_as(descriptor.value_type, number),
            Incoming::Text(text) => Ok(MetricValue::String(text)),
        };
        let answer = match value.and_then(|value| {
            validate::check_value(descriptor, &value)?;
            Ok(value)
        }) {
            Ok(value) => Answer::Value(value),
            Err(invalid) => Answer::Invalid(invalid),
        };
        self.got.push(answer);
        Ok(())
    }
}

/// `collect.answer` and `answer-number`: keeps the value and gives the next metric a
/// fresh budget. Outside a `handle-each` call, or out of order, it traps: the module
/// broke the contract.
fn answer(
    mut store: StoreContextMut<'_, HostState>,
    metric: u32,
    value: Incoming,
) -> wasmtime::Result<()> {
    let now = Instant::now();
    let fuel_left = store.get_fuel()?;
    let Some(answers) = store.data_mut().answers.as_mut() else {
        wasmtime::bail!("collect.answer called outside handle-each");
    };
    answers.take(metric, value, fuel_left)?;
    let budget = answers.budget;
    set_budget(store, budget, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_positions_make_one_span_and_any_other_order_starts_a_new_one() {
        let span = |first, count| Span { first, count };
        assert_eq!(spans(&[]), []);
        assert_eq!(spans(&[0, 1, 2, 3]), [span(0, 4)]);
        assert_eq!(
            spans(&[5, 6, 2, 3, 3, 9]),
            [span(5, 2), span(2, 2), span(3, 1), span(9, 1)]
        );
        assert_eq!(spans(&[u32::MAX, 0]), [span(u32::MAX, 1), span(0, 1)]);
    }
}
