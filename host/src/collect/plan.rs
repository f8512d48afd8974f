//! The planner: which collection group collects which metric. Pure: from the metrics
//! the modules publish (a [`Catalog`]) and the groups (their specs, and whose they are),
//! it resolves every group's selection. The engine plans again whenever what runs
//! changes; `wasmond check` plans once to explain a configuration, so both agree.
//!
//! The daemon adds one group of its own, last: the accounting group, which collects the
//! host module's `wasmond_*` metrics that no configured group selects.

use std::collections::HashSet;
use std::time::Duration;

use super::host_module::accounting_selectors;
use super::select::{Catalog, Collect, EntrySpec, GroupSelection, GroupSpec, select_group};

/// How often the accounting group collects, and the longest its values go unsent.
pub(crate) const ACCOUNTING_EVERY: Duration = Duration::from_secs(20);
pub(crate) const ACCOUNTING_THRESHOLD: Duration = Duration::from_secs(60);

/// One group to plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlannedGroup<'a> {
    pub spec: &'a GroupSpec,
    /// The tenant that declared it: it selects only that tenant's metrics.
    pub tenant: Option<usize>,
    /// The accounting group, which takes only what the configured groups leave.
    pub builtin: bool,
}

/// Every group's selection, in the order of `groups`.
pub(crate) fn plan(catalog: &Catalog, groups: &[PlannedGroup<'_>]) -> Vec<GroupSelection> {
    let mut selections: Vec<GroupSelection> = groups
        .iter()
        .map(|group| select_group(group.spec, catalog.scope(group.tenant)))
        .collect();
    leave_builtin_only_the_unselected(groups, &mut selections);
    selections
}

/// The accounting metrics' group: the `wasmond_` metrics with their titles, collected
/// every [`ACCOUNTING_EVERY`], sent at least every [`ACCOUNTING_THRESHOLD`].
pub(crate) fn accounting_group() -> GroupSpec {
    let entries = accounting_selectors()
        .into_iter()
        .map(|selector| EntrySpec {
            selector,
            value_threshold: None,
        })
        .collect();
    GroupSpec {
        collect: Collect::Every(ACCOUNTING_EVERY),
        time_threshold: ACCOUNTING_THRESHOLD,
        entries,
    }
}

fn leave_builtin_only_the_unselected(
    groups: &[PlannedGroup<'_>],
    selections: &mut [GroupSelection],
) {
    let taken: HashSet<_> = groups
        .iter()
        .zip(selections.iter())
        .filter(|(group, _)| !group.builtin)
        .flat_map(|(_, selection)| selection.metrics.iter().map(|m| m.key.clone()))
        .collect();
    for (group, selection) in groups.iter().zip(selections.iter_mut()) {
        if group.builtin {
            selection.metrics.retain(|m| !taken.contains(&m.key));
            selection.unmatched_entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::host_module::HOST_MODULE;
    use crate::collect::select::{MetricKey, Selector};

    #[test]
    fn the_accounting_group_takes_only_what_configured_groups_leave() {
        let catalog = Catalog::new([
            (MetricKey::new(HOST_MODULE, "wasmond_a_calls"), None),
            (MetricKey::new(HOST_MODULE, "wasmond_b_calls"), None),
        ]);
        let mine = GroupSpec {
            collect: Collect::Every(Duration::from_secs(5)),
            time_threshold: Duration::from_secs(10),
            entries: vec![EntrySpec {
                selector: Selector::name("wasmond_a_calls", None),
                value_threshold: None,
            }],
        };
        let accounting = accounting_group();
        let selections = plan(
            &catalog,
            &[
                PlannedGroup {
                    spec: &accounting,
                    tenant: None,
                    builtin: true,
                },
                PlannedGroup {
                    spec: &mine,
                    tenant: None,
                    builtin: false,
                },
            ],
        );
        let names = |s: &GroupSelection| -> Vec<String> {
            s.metrics.iter().map(|m| m.key.metric.to_string()).collect()
        };
        assert_eq!(names(&selections[0]), ["wasmond_b_calls"]);
        assert_eq!(names(&selections[1]), ["wasmond_a_calls"]);
    }
}
