#!/usr/bin/env python3
"""Prints the Inputs and Outputs tables of a module's README from its variables.tf and outputs.tf.

    python3 modules/readme-tables.py modules/replicated-cluster

Paste the output between the BEGIN_TF_DOCS / END_TF_DOCS markers of the module's README, or run
with --write to replace them in place. acceptance-tests/tests/modules_readme.rs fails when a
README's tables no longer match the code.
"""
import re, sys, json
def blocks(text, kind):
    # Top-level blocks: `kind "name" {` ... matching `}` at column 0.
    for m in re.finditer(r'^%s "([^"]+)" \{\n(.*?)^\}' % kind, text, re.S | re.M):
        yield m.group(1), m.group(2)
def attr(body, name):
    m = re.search(r'^  %s\s*=\s*(.*?)(?=\n  [a-z_]+\s*=|\n  [a-z_]+ \{|\n*\Z)' % name, body, re.S | re.M)
    return m.group(1).strip() if m else None
def unq(s):
    return json.loads(s) if s and s.startswith('"') else s
d = sys.argv[1].rstrip("/")
import io, contextlib
buf = io.StringIO()
ctx = contextlib.redirect_stdout(buf)
ctx.__enter__()
rows = ["| Name | Description | Type | Default | Required |", "|------|-------------|------|---------|:--------:|"]
for name, body in blocks(open(d + "/variables.tf").read(), "variable"):
    typ = re.sub(r"\n\s*(?=[a-z_]+\s*=)", ", ", attr(body, "type"))
    typ = " ".join(typ.replace("{, ", "{ ").split())
    dflt = attr(body, "default")
    req = "yes" if dflt is None else "no"
    dflt = "n/a" if dflt is None else "`%s`" % " ".join(dflt.split())
    rows.append("| `%s` | %s | `%s` | %s | %s |" % (name, unq(attr(body, "description")).replace("|", "\\|"), typ, dflt, req))
print("## Inputs\n\n" + "\n".join(rows) + "\n")
rows = ["| Name | Description |", "|------|-------------|"]
for name, body in blocks(open(d + "/outputs.tf").read(), "output"):
    rows.append("| `%s` | %s |" % (name, unq(attr(body, "description"))))
print("## Outputs\n\n" + "\n".join(rows))

ctx.__exit__(None, None, None)
tables = buf.getvalue()
if "--write" in sys.argv:
    path = d + "/README.md"
    text = open(path).read()
    start, end = "<!-- BEGIN_TF_DOCS -->\n", "<!-- END_TF_DOCS -->"
    a, b = text.index(start) + len(start), text.index(end)
    open(path, "w").write(text[:a] + tables + text[b:])
else:
    sys.stdout.write(tables)
