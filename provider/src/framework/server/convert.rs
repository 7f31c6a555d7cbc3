//! The protocol form of the framework's types: diagnostics, attribute paths and schemas. Only
//! the adapter converts; the framework's types know nothing of protobuf.

use crate::cty::{AttributePath, PathStep};
use crate::framework::diag::{Diagnostic, Diagnostics, Severity};
use crate::framework::schema::{AttrType, Attribute, Block, NestedBlock, Nesting, Schema};
use crate::tfplugin::proto::tfplugin6 as pb;

/// A framework value's tfplugin6 message.
pub trait ToProto {
    type Proto;
    fn to_proto(&self) -> Self::Proto;
}

impl ToProto for Diagnostic {
    type Proto = pb::Diagnostic;
    fn to_proto(&self) -> pb::Diagnostic {
        pb::Diagnostic {
            severity: match self.severity {
                Severity::Error => pb::diagnostic::Severity::Error as i32,
                Severity::Warning => pb::diagnostic::Severity::Warning as i32,
            },
            summary: self.summary.clone(),
            detail: self.detail.clone(),
            attribute: self.attribute.as_ref().map(ToProto::to_proto),
        }
    }
}

impl ToProto for Diagnostics {
    type Proto = Vec<pb::Diagnostic>;
    fn to_proto(&self) -> Vec<pb::Diagnostic> {
        self.iter().map(Diagnostic::to_proto).collect()
    }
}

impl ToProto for AttributePath {
    type Proto = pb::AttributePath;
    fn to_proto(&self) -> pb::AttributePath {
        use pb::attribute_path::step::Selector;
        pb::AttributePath {
            steps: self
                .steps
                .iter()
                .map(|s| pb::attribute_path::Step {
                    selector: Some(match s {
                        PathStep::Attribute(n) => Selector::AttributeName(n.clone()),
                        PathStep::ElementKeyString(k) => Selector::ElementKeyString(k.clone()),
                        PathStep::ElementKeyInt(i) => Selector::ElementKeyInt(*i),
                    }),
                })
                .collect(),
        }
    }
}

impl ToProto for Schema {
    type Proto = pb::Schema;
    fn to_proto(&self) -> pb::Schema {
        pb::Schema {
            version: self.version,
            block: Some(self.block.to_proto()),
        }
    }
}

impl ToProto for Block {
    type Proto = pb::schema::Block;
    fn to_proto(&self) -> pb::schema::Block {
        pb::schema::Block {
            version: 0,
            attributes: self.attributes.iter().map(Attribute::to_proto).collect(),
            block_types: self.blocks.iter().map(NestedBlock::to_proto).collect(),
            description: self.description.clone(),
            description_kind: pb::StringKind::Markdown as i32,
            deprecated: self.deprecated,
        }
    }
}

impl ToProto for Attribute {
    type Proto = pb::schema::Attribute;
    fn to_proto(&self) -> pb::schema::Attribute {
        let (ty, nested_type) = match &self.ty {
            AttrType::Type(t) => (t.to_json(), None),
            AttrType::Nested {
                nesting,
                attributes,
                min_items,
                max_items,
            } => {
                use pb::schema::object::NestingMode as M;
                let mode = match nesting {
                    Nesting::Single | Nesting::Group => M::Single,
                    Nesting::List => M::List,
                    Nesting::Set => M::Set,
                    Nesting::Map => M::Map,
                };
                #[allow(deprecated)]
                let obj = pb::schema::Object {
                    attributes: attributes.iter().map(Attribute::to_proto).collect(),
                    nesting: mode as i32,
                    min_items: *min_items,
                    max_items: *max_items,
                };
                (Vec::new(), Some(obj))
            }
        };
        pb::schema::Attribute {
            name: self.name.clone(),
            r#type: ty,
            description: self.description.clone(),
            required: self.required,
            optional: self.optional && !self.required,
            computed: self.computed,
            sensitive: self.sensitive,
            description_kind: pb::StringKind::Markdown as i32,
            deprecated: self.deprecation.is_some(),
            nested_type,
            write_only: false,
        }
    }
}

impl ToProto for NestedBlock {
    type Proto = pb::schema::NestedBlock;
    fn to_proto(&self) -> pb::schema::NestedBlock {
        use pb::schema::nested_block::NestingMode as M;
        pb::schema::NestedBlock {
            type_name: self.name.clone(),
            block: Some(self.block.to_proto()),
            nesting: match self.nesting {
                Nesting::Single => M::Single,
                Nesting::List => M::List,
                Nesting::Set => M::Set,
                Nesting::Map => M::Map,
                Nesting::Group => M::Group,
            } as i32,
            min_items: self.min_items,
            max_items: self.max_items,
        }
    }
}
