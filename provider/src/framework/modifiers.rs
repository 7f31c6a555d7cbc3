//! Plan modifiers: per-attribute rules the generic planner applies after it has marked
//! computed values unknown (keep the prior value, force a replacement).

use std::fmt;
use std::sync::Arc;

use crate::cty::Value;

/// `(prior, planned) -> whether a change needs a replacement`; called only for updates
/// where the two differ.
pub type ReplaceCheck = Arc<dyn Fn(&Value, &Value) -> bool + Send + Sync>;

#[derive(Clone)]
pub enum PlanModifier {
    /// Any change of this attribute replaces the resource.
    RequiresReplace,
    /// A change replaces the resource when `check(prior, planned)` says so.
    RequiresReplaceIf {
        description: String,
        check: ReplaceCheck,
    },
    /// A computed value that does not change once created: on update, plan the prior value
    /// instead of unknown.
    UseStateForUnknown,
}

impl PlanModifier {
    pub fn description(&self) -> String {
        match self {
            PlanModifier::RequiresReplace => "changing this value replaces the resource".into(),
            PlanModifier::RequiresReplaceIf { description, .. } => description.clone(),
            PlanModifier::UseStateForUnknown => "the value does not change after creation".into(),
        }
    }
}

impl fmt::Debug for PlanModifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanModifier::RequiresReplace => f.write_str("RequiresReplace"),
            PlanModifier::RequiresReplaceIf { description, .. } => {
                write!(f, "RequiresReplaceIf({description:?})")
            }
            PlanModifier::UseStateForUnknown => f.write_str("UseStateForUnknown"),
        }
    }
}
