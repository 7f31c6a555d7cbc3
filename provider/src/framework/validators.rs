//! Attribute validators. Each sees only known, non-null values (unknowns are checked again
//! at plan time, when Terraform knows them) and answers with a message; the framework turns
//! it into an error diagnostic at the attribute's path.

use std::fmt;
use std::sync::Arc;

use crate::cty::{AttributePath, Value};

use super::diag::Diagnostic;

type Check = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub struct Validator {
    description: String,
    check: Check,
}

impl Validator {
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Checks `value` (found at `path`); `None` when it passes or is null/unknown.
    pub fn check(&self, value: &Value, path: &AttributePath) -> Option<Diagnostic> {
        if value.is_null() || !value.is_known() {
            return None;
        }
        (self.check)(value).err().map(|detail| {
            Diagnostic::error(format!("Invalid value for \"{path}\""), detail).at(path.clone())
        })
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Validator({:?})", self.description)
    }
}

/// A validator from a closure returning the problem, if any.
pub fn custom(
    description: impl Into<String>,
    check: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
) -> Validator {
    Validator {
        description: description.into(),
        check: Arc::new(check),
    }
}

/// A string that must be one of `allowed`.
pub fn one_of(allowed: &[&str]) -> Validator {
    let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    let list = allowed
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let description = format!("one of {list}");
    custom(description, move |v| match v.as_str() {
        Some(s) if allowed.iter().any(|a| a == s) => Ok(()),
        Some(s) => Err(format!("{s:?} is not allowed: expected one of {list}")),
        None => Err(format!("expected a string, got a {}", v.kind_name())),
    })
}

/// A string of `min..=max` characters, or a collection of `min..=max` elements.
pub fn length(min: usize, max: usize) -> Validator {
    custom(format!("between {min} and {max} long"), move |v| {
        let (len, unit) = if let Some(s) = v.as_str() {
            (s.chars().count(), "characters")
        } else if let Some(e) = v.as_elements() {
            (e.len(), "elements")
        } else if let Some(m) = v.as_map() {
            (m.len(), "elements")
        } else {
            return Err(format!("a {} has no length", v.kind_name()));
        };
        if (min..=max).contains(&len) {
            Ok(())
        } else {
            Err(format!(
                "must have between {min} and {max} {unit}, has {len}"
            ))
        }
    })
}

/// A string accepted by `predicate`; `description` says what is expected ("a DNS label").
pub fn matches(
    description: impl Into<String>,
    predicate: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> Validator {
    let description = description.into();
    let expected = description.clone();
    custom(description, move |v| match v.as_str() {
        Some(s) if predicate(s) => Ok(()),
        Some(s) => Err(format!("{s:?} is not {expected}")),
        None => Err(format!("expected a string, got a {}", v.kind_name())),
    })
}

/// A whole number within `min..=max`.
pub fn int_range(min: i64, max: i64) -> Validator {
    custom(format!("a whole number from {min} to {max}"), move |v| {
        let Some(n) = v.as_number() else {
            return Err(format!("expected a number, got a {}", v.kind_name()));
        };
        match n.to_i64() {
            Some(i) if n.is_integer() && (min..=max).contains(&i) => Ok(()),
            _ if !n.is_integer() => Err(format!("{n} is not a whole number")),
            _ => Err(format!("{n} is out of range: must be from {min} to {max}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> AttributePath {
        AttributePath::attr("x")
    }

    #[test]
    fn one_of_accepts_listed_and_names_the_choices() {
        let v = one_of(&["async", "semi_sync"]);
        assert!(v.check(&Value::string("async"), &path()).is_none());
        let d = v.check(&Value::string("sync"), &path()).unwrap();
        assert!(d.detail.contains("\"semi_sync\""), "{d}");
        assert_eq!(d.attribute, Some(path()));
        assert!(d.is_error());
    }

    #[test]
    fn length_counts_chars_and_elements() {
        let v = length(1, 3);
        assert!(v.check(&Value::string("ééé"), &path()).is_none());
        assert!(v.check(&Value::string(""), &path()).is_some());
        assert!(v.check(&Value::string("abcd"), &path()).is_some());
        assert!(
            v.check(&Value::set([Value::string("a")]), &path())
                .is_none()
        );
        assert!(v.check(&Value::list([]), &path()).is_some());
    }

    #[test]
    fn skips_null_and_unknown() {
        let v = length(1, 3);
        assert!(v.check(&Value::Null, &path()).is_none());
        assert!(v.check(&Value::unknown(), &path()).is_none());
    }

    #[test]
    fn int_range_rejects_fractions_and_out_of_range() {
        let v = int_range(1, 10);
        assert!(v.check(&Value::number_i64(10), &path()).is_none());
        assert!(v.check(&Value::number_i64(11), &path()).is_some());
        assert!(v.check(&Value::number_i64(0), &path()).is_some());
        let half = Value::Number(crate::cty::Number::parse("1.5").unwrap());
        assert!(v.check(&half, &path()).unwrap().detail.contains("whole"));
    }

    #[test]
    fn matches_and_custom() {
        let v = matches("a lowercase word", |s| {
            s.chars().all(|c| c.is_ascii_lowercase())
        });
        assert!(v.check(&Value::string("abc"), &path()).is_none());
        let d = v.check(&Value::string("aBc"), &path()).unwrap();
        assert!(d.detail.contains("a lowercase word"));
        let c = custom("even", |v| {
            if v.as_i64().is_some_and(|i| i % 2 == 0) {
                Ok(())
            } else {
                Err("odd".into())
            }
        });
        assert!(c.check(&Value::number_i64(2), &path()).is_none());
        assert_eq!(
            c.check(&Value::number_i64(3), &path()).unwrap().detail,
            "odd"
        );
    }
}
