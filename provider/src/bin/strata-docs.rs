//! `strata-docs`: writes the registry-format docs (`docs/index.md`, `docs/resources/*.md`,
//! `docs/data-sources/*.md`) from the provider's own schema plus the examples, in the
//! terraform-plugin-docs layout. With `--check` it writes nothing and fails when a committed page
//! differs from what it would write. It owns only those generated pages; other files under
//! `docs/` are left alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use strata_provider::cty::{Type, Value};
use strata_provider::datasources;
use strata_provider::framework::{AttrType, Attribute, Block, Nesting, PlanModifier, Resource};
use strata_provider::provider::provider_schema;
use strata_provider::resources;
use strata_provider::resources::TEST_WIDGET_TYPE;

const PROVIDER_NAME: &str = "strata";
const TEMPLATE: &str = "docs/templates/index.md.tmpl";
const STALE_HINT: &str = "docs are stale: run scripts/gen-docs";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata-docs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut check = false;
    let mut root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--root" => root = PathBuf::from(args.next().context("--root needs a directory")?),
            "-h" | "--help" => {
                println!(
                    "usage: strata-docs [--check] [--root <repo root>]\n\
                     Writes docs/index.md, docs/resources/*.md and docs/data-sources/*.md from \
                     the provider schema; \
                     --check only reports stale files."
                );
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let pages = generate(&root)?;
    if check {
        let stale = stale_files(&root, &pages)?;
        if stale.is_empty() {
            println!("docs are up to date ({} pages)", pages.len());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{STALE_HINT}");
        for f in &stale {
            eprintln!("  {f}");
        }
        return Ok(ExitCode::FAILURE);
    }
    write_pages(&root, &pages)?;
    println!(
        "wrote {} pages under {}",
        pages.len(),
        root.join("docs").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The resources to document: everything the provider serves except the test-only widget,
/// which joins `resources::all()` when `STRATA_TEST_RESOURCES=1` is set in the environment of
/// a build with the `test-resources` feature (this crate's tests).
fn documented_resources() -> Vec<std::sync::Arc<dyn Resource>> {
    resources::all()
        .into_iter()
        .filter(|r| r.type_name() != TEST_WIDGET_TYPE)
        .collect()
}

/// Every generated page, keyed by its path relative to the repository root.
fn generate(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut missing = Vec::new();
    let mut pages = BTreeMap::new();

    let provider = provider_schema();
    check_descriptions("provider", &provider.block, &mut missing);
    let template = read(root, TEMPLATE)?;
    let example = read(root, "examples/provider/provider.tf")?;
    pages.insert(
        "docs/index.md".to_string(),
        render_index(&template, &provider.block, &example)?,
    );

    for r in documented_resources() {
        let name = r.type_name();
        let schema = r.schema();
        check_descriptions(name, &schema.block, &mut missing);
        let dir = format!("examples/resources/{name}");
        let example = read(root, &format!("{dir}/resource.tf"))?;
        let import = read(root, &format!("{dir}/import.sh"))?;
        let short = name.strip_prefix("strata_").unwrap_or(name);
        pages.insert(
            format!("docs/resources/{short}.md"),
            render_resource(name, &schema.block, &example, &import),
        );
    }

    for d in datasources::all() {
        let name = d.type_name();
        let schema = d.schema();
        check_descriptions(&format!("data.{name}"), &schema.block, &mut missing);
        let example = read(
            root,
            &format!("examples/data-sources/{name}/data-source.tf"),
        )?;
        let short = name.strip_prefix("strata_").unwrap_or(name);
        pages.insert(
            format!("docs/data-sources/{short}.md"),
            render_data_source(name, &schema.block, &example),
        );
    }

    if !missing.is_empty() {
        bail!(
            "{} schema element(s) have no description:\n  {}",
            missing.len(),
            missing.join("\n  ")
        );
    }
    Ok(pages)
}

fn read(root: &Path, rel: &str) -> Result<String> {
    std::fs::read_to_string(root.join(rel)).with_context(|| format!("reading {rel}"))
}

/// Files under our ownership that differ from `pages`, are missing, or should not exist.
fn stale_files(root: &Path, pages: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for (rel, want) in pages {
        match std::fs::read_to_string(root.join(rel)) {
            Ok(have) if &have == want => {}
            Ok(_) => stale.push(format!("{rel} (differs)")),
            Err(_) => stale.push(format!("{rel} (missing)")),
        }
    }
    for rel in extra_resource_pages(root, pages)? {
        stale.push(format!("{rel} (no such resource)"));
    }
    Ok(stale)
}

/// Pages in `docs/resources/` or `docs/data-sources/` that the generator would not write (a
/// removed resource or data source).
fn extra_resource_pages(root: &Path, pages: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut extra = Vec::new();
    for sub in ["docs/resources", "docs/data-sources"] {
        let entries = match std::fs::read_dir(root.join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {sub}")),
        };
        for entry in entries {
            let file = entry.with_context(|| format!("listing {sub}"))?.file_name();
            let rel = format!("{sub}/{}", file.to_string_lossy());
            if rel.ends_with(".md") && !pages.contains_key(&rel) {
                extra.push(rel);
            }
        }
    }
    extra.sort();
    Ok(extra)
}

fn write_pages(root: &Path, pages: &BTreeMap<String, String>) -> Result<()> {
    for rel in extra_resource_pages(root, pages)? {
        std::fs::remove_file(root.join(&rel)).with_context(|| format!("removing {rel}"))?;
    }
    for (rel, text) in pages {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {rel}'s folder"))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {rel}"))?;
    }
    Ok(())
}

/// Pushes `<owner>.<path>` for every attribute, nested attribute and block without a
/// description (the top-level block included).
fn check_descriptions(owner: &str, block: &Block, missing: &mut Vec<String>) {
    if block.description.trim().is_empty() {
        missing.push(owner.to_string());
    }
    walk_attrs(owner, &block.attributes, missing);
    for b in &block.blocks {
        check_descriptions(&format!("{owner}.{}", b.name), &b.block, missing);
    }
}

fn walk_attrs(owner: &str, attrs: &[Attribute], missing: &mut Vec<String>) {
    for a in attrs {
        let path = format!("{owner}.{}", a.name);
        if a.description.trim().is_empty() {
            missing.push(path.clone());
        }
        if let AttrType::Nested { attributes, .. } = &a.ty {
            walk_attrs(&path, attributes, missing);
        }
    }
}

fn render_index(template: &str, block: &Block, example: &str) -> Result<String> {
    for placeholder in ["{{example}}", "{{schema}}"] {
        if !template.contains(placeholder) {
            bail!("{TEMPLATE} has no {placeholder} placeholder");
        }
    }
    let example = format!("```terraform\n{}\n```", example.trim_end());
    let schema = format!(
        "<!-- schema generated by strata-docs -->\n## Schema\n\n{}",
        render_schema(block).trim_end()
    );
    Ok(template
        .replace("{{example}}", &example)
        .replace("{{schema}}", &schema))
}

fn render_resource(name: &str, block: &Block, example: &str, import: &str) -> String {
    let mut out = String::new();
    let description = block.description.trim();
    let _ = write!(
        out,
        "---\n# generated by strata-docs (scripts/gen-docs); do not edit\n\
         page_title: \"{name} Resource - {PROVIDER_NAME}\"\n\
         subcategory: \"\"\n\
         description: |-\n{}\n---\n\n# {name} (Resource)\n\n{description}\n\n",
        indent(description, "  ")
    );
    let _ = write!(
        out,
        "## Example Usage\n\n```terraform\n{}\n```\n\n",
        example.trim_end()
    );
    let _ = write!(
        out,
        "<!-- schema generated by strata-docs -->\n## Schema\n\n{}",
        render_schema(block)
    );
    let _ = write!(
        out,
        "## Import\n\nImport is supported using the following syntax:\n\n```shell\n{}\n```\n",
        import.trim_end()
    );
    out
}

fn render_data_source(name: &str, block: &Block, example: &str) -> String {
    let mut out = String::new();
    let description = block.description.trim();
    let _ = write!(
        out,
        "---\n# generated by strata-docs (scripts/gen-docs); do not edit\n\
         page_title: \"{name} Data Source - {PROVIDER_NAME}\"\n\
         subcategory: \"\"\n\
         description: |-\n{}\n---\n\n# {name} (Data Source)\n\n{description}\n\n",
        indent(description, "  ")
    );
    let _ = write!(
        out,
        "## Example Usage\n\n```terraform\n{}\n```\n\n",
        example.trim_end()
    );
    let _ = write!(
        out,
        "<!-- schema generated by strata-docs -->\n## Schema\n\n{}",
        render_schema(block)
    );
    out
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A nested schema still to be written below the current one.
struct Pending {
    /// `nestedblock` or `nestedatt`.
    kind: &'static str,
    path: Vec<String>,
    block: Block,
}

impl Pending {
    /// Anchors chain the path: `nestedblock--assume_role`, `nestedatt--rules--ports`.
    fn anchor(&self) -> String {
        format!("{}--{}", self.kind, self.path.join("--"))
    }
}

/// The `### Required / Optional / Read-Only` lists for a top-level block, then one
/// `### Nested Schema for` section per nested block or nested attribute, depth first.
fn render_schema(block: &Block) -> String {
    let mut out = String::new();
    let mut queue: std::collections::VecDeque<Pending> =
        render_groups(&mut out, block, &[], "### ").into();
    while let Some(p) = queue.pop_front() {
        let _ = write!(
            out,
            "<a id=\"{}\"></a>\n### Nested Schema for `{}`\n\n",
            p.anchor(),
            p.path.join(".")
        );
        if !p.block.description.trim().is_empty() {
            let _ = write!(out, "{}\n\n", p.block.description.trim());
        }
        let more = render_groups(&mut out, &p.block, &p.path, "");
        for (i, m) in more.into_iter().enumerate() {
            queue.insert(i, m);
        }
    }
    out
}

#[derive(PartialEq, Clone, Copy)]
enum Group {
    Required,
    Optional,
    ReadOnly,
}

/// Writes `block`'s lists and returns its nested schemas in the order they were listed.
fn render_groups(
    out: &mut String,
    block: &Block,
    parent: &[String],
    heading: &str,
) -> Vec<Pending> {
    let child = |name: &str| {
        let mut path = parent.to_vec();
        path.push(name.to_string());
        path
    };

    let mut lines: Vec<(Group, String, String, Option<Pending>)> = Vec::new();
    for a in &block.attributes {
        let group = if a.required {
            Group::Required
        } else if a.optional {
            Group::Optional
        } else {
            Group::ReadOnly
        };
        let mut line = format!("- `{}` ({}) {}", a.name, attr_kind(a), attr_text(a));
        let nested = a.nested_block().map(|(_, nested)| Pending {
            kind: "nestedatt",
            path: child(&a.name),
            block: nested,
        });
        if let Some(p) = &nested {
            let _ = write!(line, " (see [below for nested schema](#{}))", p.anchor());
        }
        lines.push((group, a.name.clone(), line.trim_end().to_string(), nested));
    }
    for b in &block.blocks {
        let group = if b.min_items > 0 {
            Group::Required
        } else {
            Group::Optional
        };
        let p = Pending {
            kind: "nestedblock",
            path: child(&b.name),
            block: b.block.clone(),
        };
        let line = format!(
            "- `{}` ({}) {} (see [below for nested schema](#{}))",
            b.name,
            block_kind(b.nesting, b.min_items, b.max_items),
            sentence(b.block.description.trim()),
            p.anchor(),
        );
        lines.push((group, b.name.clone(), line, Some(p)));
    }
    // Alphabetical within each group, as terraform-plugin-docs lists them.
    lines.sort_by(|a, b| a.1.cmp(&b.1));
    let mut pending = Vec::new();
    for (group, label) in [
        (Group::Required, "Required"),
        (Group::Optional, "Optional"),
        (Group::ReadOnly, "Read-Only"),
    ] {
        let mut in_group = lines.iter_mut().filter(|l| l.0 == group).peekable();
        if in_group.peek().is_none() {
            continue;
        }
        if heading.is_empty() {
            let _ = write!(out, "{label}:\n\n");
        } else {
            let _ = write!(out, "{heading}{label}\n\n");
        }
        for (_, _, line, nested) in in_group {
            out.push_str(line);
            out.push('\n');
            pending.extend(nested.take());
        }
        out.push('\n');
    }
    pending
}

fn attr_kind(a: &Attribute) -> String {
    let mut kind = match &a.ty {
        AttrType::Type(t) => type_name(t),
        AttrType::Nested { nesting, .. } => match nesting {
            Nesting::Single | Nesting::Group => "Attributes".to_string(),
            Nesting::List => "Attributes List".to_string(),
            Nesting::Set => "Attributes Set".to_string(),
            Nesting::Map => "Attributes Map".to_string(),
        },
    };
    if a.sensitive {
        kind.push_str(", Sensitive");
    }
    if a.deprecation.is_some() {
        kind.push_str(", Deprecated");
    }
    kind
}

fn block_kind(nesting: Nesting, min: i64, max: i64) -> String {
    let mut kind = match nesting {
        Nesting::Single | Nesting::Group => "Block".to_string(),
        Nesting::List => "Block List".to_string(),
        Nesting::Set => "Block Set".to_string(),
        Nesting::Map => "Block Map".to_string(),
    };
    if matches!(nesting, Nesting::List | Nesting::Set) {
        if min > 0 {
            let _ = write!(kind, ", Min: {min}");
        }
        if max > 0 {
            let _ = write!(kind, ", Max: {max}");
        }
    }
    kind
}

/// terraform-plugin-docs' type names: `String`, `List of String`, `Map of Number`.
fn type_name(t: &Type) -> String {
    match t {
        Type::Bool => "Boolean".into(),
        Type::Number => "Number".into(),
        Type::String => "String".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object { .. } => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

/// The description, then what the schema says beyond it: the default, replacement, the
/// accepted values, deprecation.
fn attr_text(a: &Attribute) -> String {
    let mut parts = vec![sentence(a.description.trim())];
    if let Some(msg) = &a.deprecation {
        parts.push(format!("**Deprecated:** {}", sentence(msg.trim())));
    }
    if let Some(d) = &a.default {
        parts.push(format!("Defaults to `{}`.", default_text(d)));
    }
    for m in &a.plan_modifiers {
        match m {
            PlanModifier::RequiresReplace => {
                parts.push("Changing this forces a new resource.".into());
            }
            PlanModifier::RequiresReplaceIf { description, .. } => {
                parts.push(format!(
                    "Changing this forces a new resource when {}",
                    sentence(description.trim())
                ));
            }
            PlanModifier::UseStateForUnknown => {}
        }
    }
    for v in &a.validators {
        parts.push(format!("Must be {}", sentence(v.description().trim())));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

fn default_text(v: &Value) -> String {
    v.to_string()
}

/// `text` ending in a full stop (unless it already ends in punctuation or is empty).
fn sentence(text: &str) -> String {
    if text.is_empty() || text.ends_with(['.', '!', '?', ':', ')']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_provider::framework::{Attr, NestedBlock, validators};

    fn sample() -> Block {
        Block::new()
            .description("A widget.")
            .attribute(
                Attr::string("name")
                    .required()
                    .requires_replace()
                    .validate(validators::one_of(&["a", "b"]))
                    .description("Name"),
            )
            .attribute(
                Attr::number("size")
                    .default(Value::number_i64(3))
                    .description("Size."),
            )
            .attribute(
                Attr::string("secret")
                    .computed_only()
                    .sensitive()
                    .description("Secret."),
            )
            .block(NestedBlock::single(
                "timeouts",
                Block::new()
                    .description("Timeouts.")
                    .attribute(Attr::string("create").optional().description("Create.")),
            ))
    }

    #[test]
    fn lists_attributes_by_group_with_their_facts() {
        let text = render_schema(&sample());
        let req = text.find("### Required").unwrap();
        let opt = text.find("### Optional").unwrap();
        let ro = text.find("### Read-Only").unwrap();
        assert!(req < opt && opt < ro);
        assert!(text.contains(
            "- `name` (String) Name. Changing this forces a new resource. Must be one of \"a\", \"b\"."
        ));
        assert!(text.contains("- `size` (Number) Size. Defaults to `3`."));
        assert!(text.contains("- `secret` (String, Sensitive) Secret."));
        assert!(text.contains(
            "- `timeouts` (Block) Timeouts. (see [below for nested schema](#nestedblock--timeouts))"
        ));
        assert!(text.contains(
            "<a id=\"nestedblock--timeouts\"></a>\n### Nested Schema for `timeouts`\n\nTimeouts.\n\nOptional:\n\n- `create` (String) Create."
        ));
    }

    #[test]
    fn missing_descriptions_are_named() {
        let block = sample()
            .attribute(Attr::string("bare").optional())
            .block(NestedBlock::single(
                "inner",
                Block::new().attribute(Attr::bool("flag").optional()),
            ));
        let mut missing = Vec::new();
        check_descriptions("strata_x", &block, &mut missing);
        assert_eq!(
            missing,
            ["strata_x.bare", "strata_x.inner", "strata_x.inner.flag"]
        );
    }

    #[test]
    fn every_served_resource_is_described_and_the_widget_never_is() {
        let names: Vec<&str> = documented_resources()
            .iter()
            .map(|r| r.type_name())
            .collect();
        assert!(names.contains(&"strata_cluster"));
        assert!(!names.contains(&TEST_WIDGET_TYPE));
        let mut missing = Vec::new();
        check_descriptions("provider", &provider_schema().block, &mut missing);
        for r in documented_resources() {
            check_descriptions(r.type_name(), &r.schema().block, &mut missing);
        }
        for d in datasources::all() {
            check_descriptions(d.type_name(), &d.schema().block, &mut missing);
        }
        assert!(missing.is_empty(), "undescribed: {missing:?}");
    }

    #[test]
    fn deeper_nesting_chains_anchors_and_titles() {
        let block = Block::new().block(NestedBlock::single(
            "outer",
            Block::new()
                .description("Outer.")
                .block(NestedBlock::list("inner", Block::new().description("Inner.")).max_items(2)),
        ));
        let text = render_schema(&block);
        assert!(text.contains(
            "<a id=\"nestedblock--outer--inner\"></a>\n### Nested Schema for `outer.inner`"
        ));
        assert!(text.contains("- `inner` (Block List, Max: 2) Inner. (see [below for nested schema](#nestedblock--outer--inner))"));
    }
}
