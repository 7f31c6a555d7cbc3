//! Attribute paths: where in a value something is, in the three step kinds tfplugin6's
//! `AttributePath` carries, printed the way Terraform users write references.

use std::fmt;

use super::value::Value;

/// One step into a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathStep {
    /// An object attribute (or block) by name.
    Attribute(String),
    /// A map element by key.
    ElementKeyString(String),
    /// A list or tuple element by index (for set elements in errors: the position received).
    ElementKeyInt(i64),
}

/// A path from the root of a value; empty means the value itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributePath {
    pub steps: Vec<PathStep>,
}

impl AttributePath {
    /// The empty path (the value itself).
    pub fn root() -> Self {
        AttributePath::default()
    }

    /// A path of one attribute step.
    pub fn attr(name: impl Into<String>) -> Self {
        AttributePath::root().attribute(name)
    }

    /// This path, then an attribute step.
    #[must_use]
    pub fn attribute(mut self, name: impl Into<String>) -> Self {
        self.steps.push(PathStep::Attribute(name.into()));
        self
    }

    /// This path, then a map key step.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.steps.push(PathStep::ElementKeyString(key.into()));
        self
    }

    /// This path, then an index step.
    #[must_use]
    pub fn index(mut self, index: i64) -> Self {
        self.steps.push(PathStep::ElementKeyInt(index));
        self
    }

    pub fn push(&mut self, step: PathStep) {
        self.steps.push(step);
    }

    pub fn pop(&mut self) -> Option<PathStep> {
        self.steps.pop()
    }

    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether `prefix`'s steps begin this path.
    pub fn starts_with(&self, prefix: &AttributePath) -> bool {
        self.steps.starts_with(&prefix.steps)
    }
}

impl From<Vec<PathStep>> for AttributePath {
    fn from(steps: Vec<PathStep>) -> Self {
        AttributePath { steps }
    }
}

impl FromIterator<PathStep> for AttributePath {
    fn from_iter<I: IntoIterator<Item = PathStep>>(iter: I) -> Self {
        AttributePath {
            steps: iter.into_iter().collect(),
        }
    }
}

/// `cluster_id`, `tags["x"]`, `subnet_ids[0]`, `node[1].volume.size`; the root prints as
/// nothing.
impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PathStep::Attribute(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathStep::ElementKeyString(key) => {
                    f.write_str("[")?;
                    // JSON string quoting is HCL's for every key a map can hold.
                    f.write_str(&serde_json::to_string(key).map_err(|_| fmt::Error)?)?;
                    f.write_str("]")?;
                }
                PathStep::ElementKeyInt(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Value {
    /// The value at `path`, looking through dynamic wrappers; `None` when a step does not
    /// apply (wrong kind, missing key, out of range) or passes through null or unknown.
    pub fn get_path(&self, path: &AttributePath) -> Option<&Value> {
        let mut current = self;
        for step in &path.steps {
            current = current.get_step(step)?;
        }
        Some(current)
    }

    /// One step of `get_path`.
    pub fn get_step(&self, step: &PathStep) -> Option<&Value> {
        match (self.unwrap_dynamic(), step) {
            (Value::Object(attrs), PathStep::Attribute(name)) => attrs.get(name),
            (Value::Map(elems), PathStep::ElementKeyString(key)) => elems.get(key),
            (Value::List(elems) | Value::Tuple(elems), PathStep::ElementKeyInt(i)) => {
                elems.get(usize::try_from(*i).ok()?)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_terraform_references() {
        assert_eq!(AttributePath::attr("cluster_id").to_string(), "cluster_id");
        assert_eq!(
            AttributePath::attr("tags").key("x").to_string(),
            r#"tags["x"]"#
        );
        assert_eq!(
            AttributePath::attr("subnet_ids").index(0).to_string(),
            "subnet_ids[0]"
        );
        assert_eq!(
            AttributePath::attr("node")
                .index(1)
                .attribute("volume")
                .key("a\"b")
                .to_string(),
            r#"node[1].volume["a\"b"]"#
        );
        assert_eq!(AttributePath::root().to_string(), "");
    }

    #[test]
    fn get_path_walks_objects_maps_lists() {
        let v = Value::object([
            (
                "tags",
                Value::Map(
                    [("x".to_string(), Value::string("y"))]
                        .into_iter()
                        .collect(),
                ),
            ),
            (
                "ids",
                Value::List(vec![Value::string("a"), Value::string("b")]),
            ),
            ("gone", Value::Null),
        ]);
        assert_eq!(
            v.get_path(&AttributePath::attr("tags").key("x")),
            Some(&Value::string("y"))
        );
        assert_eq!(
            v.get_path(&AttributePath::attr("ids").index(1)),
            Some(&Value::string("b"))
        );
        assert_eq!(v.get_path(&AttributePath::attr("ids").index(2)), None);
        assert_eq!(v.get_path(&AttributePath::attr("ids").index(-1)), None);
        assert_eq!(
            v.get_path(&AttributePath::attr("gone").attribute("x")),
            None
        );
        assert_eq!(v.get_path(&AttributePath::root()), Some(&v));
    }
}
