"""docs/ stays true to the code: every `docs/PAGE.md#anchor` pointer names a real heading, and method.md's
tables of query instructions and per-domain batches equal the code's (rejax/domains.py), and its training
recipe table equals rejax/train/recipe.py's values. The paper's numbers are stated in method.md once; the
code is checked against that page, not against a copy of its own literals."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from rejax.domains import INSTRUCTIONS, PAPER_DEVICES, PAPER_DOMAIN_SETTINGS
from rejax.train.recipe import paper_config

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SOURCES = ("rejax", "synth", "tests", "scripts", "configs", "bench", "docs", "sample_data")
SUFFIXES = {".py", ".md", ".sh", ".sbatch", ".toml"}


def anchor_of(heading: str) -> str:
  """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, spaces as hyphens."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
  return {anchor_of(m) for m in re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), re.M)}


def pointers() -> list[tuple[str, str, str]]:
  """(where, page, anchor) of every `docs/PAGE.md#anchor` in the repo, and of every `(PAGE.md#anchor)` or
  `(#anchor)` link inside docs/."""
  found = []
  files = [REPO / "README.md", REPO / "Makefile"] + [
      f for top in SOURCES for f in sorted((REPO / top).rglob("*")) if f.is_file() and f.suffix in SUFFIXES]
  for path in files:
    if not path.is_file() or path == pathlib.Path(__file__):
      continue
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(REPO).as_posix()
    found += [(where, page, anchor) for page, anchor in re.findall(r"docs/([\w.-]+\.md)#([\w-]+)", text)]
    if path.parent == DOCS:
      for page, anchor in re.findall(r"\]\(([\w.-]*\.md)?#([\w-]+)\)", text):
        found.append((where, page or path.name, anchor))
  return found


def test_every_docs_pointer_names_an_existing_heading():
  found = pointers()
  assert found, "no docs/ pointers found at all"
  broken = [f"{where}: docs/{page}#{anchor}" for where, page, anchor in found
            if not (DOCS / page).is_file() or anchor not in anchors(DOCS / page)]
  assert not broken, "pointers to missing docs headings:\n" + "\n".join(broken)


def table_rows(section: str) -> list[list[str]]:
  """The body rows of the first table under `## {section}` in method.md, as lists of cells."""
  text = (DOCS / "method.md").read_text(encoding="utf-8")
  body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
  rows = [line for line in body.splitlines() if line.startswith("|")]
  return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_instruction_table_is_the_code_s():
  assert [tuple(row) for row in table_rows("Query instructions")] == list(INSTRUCTIONS.items())


def test_per_domain_table_is_the_code_s():
  rows = table_rows("Per-domain batches")
  assert [(row[0], (int(row[1]), int(row[2]))) for row in rows] == list(PAPER_DOMAIN_SETTINGS.items())
  for name, b, g, passages, per_device in rows:
    assert int(passages) == int(b) * int(g) and int(per_device) * PAPER_DEVICES == int(b), name


def recipe_value(text: str):
  """A cell of the recipe table as a value: `1e-4` -> 0.0001, `0 (off)` -> 0, `bfloat16` -> 'bfloat16'."""
  text = re.sub(r"\s*\(.*\)$", "", text.strip())
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def test_training_recipe_table_is_the_code_s():
  config = paper_config()
  checked = []
  for key_cell, value_cell, _ in table_rows("Training recipe"):
    keys = re.findall(r"`([\w.*]+)`", key_cell)
    section = keys[0].rpartition(".")[0]
    keys = [k if "." in k or not section else f"{section}.{k}" for k in keys]  # `optim.b1`, `b2` -> optim.b2
    if keys == ["model.lora.*"]:
      rank, alpha, dropout, targets = re.fullmatch(r"rank (\d+), alpha (\d+), dropout ([\d.]+), (\d+) projections",
                                                   value_cell).groups()
      lora = config.model.lora
      assert (lora.rank, lora.alpha, lora.dropout, len(lora.targets)) == (int(rank), float(alpha), float(dropout),
                                                                            int(targets))
    elif keys == ["data.domains"]:
      assert dict(config.data.domains) == PAPER_DOMAIN_SETTINGS  # the per-domain table, checked above
    else:
      values = [recipe_value(v) for v in value_cell.split(", ")]
      assert len(values) == len(keys), key_cell
      for key, value in zip(keys, values):
        got = config
        for part in key.split("."):
          got = got[part]
        assert got == value, (key, got, value)
    checked += keys
  assert {"total_steps", "loss.temperature", "loss.ri_start_step", "loss.ri_clamp_max", "optim.lr"} <= set(checked)


@pytest.mark.parametrize("heading, anchor", [
    ("RI-InfoNCE", "ri-infonce"), ("Data flow", "data-flow"), ("Per-domain batches", "per-domain-batches"),
    ("The method, as rejax implements it", "the-method-as-rejax-implements-it")])
def test_anchor_of_follows_github(heading, anchor):
  assert anchor_of(heading) == anchor


def architecture_rows() -> dict[str, str]:
  """docs/architecture.md's package table: first cell (`rejax/train/`, `rejax/cli.py`) -> the row's text."""
  text = (DOCS / "architecture.md").read_text(encoding="utf-8")
  section = text.split("## Packages", 1)[1].split("\n## ", 1)[0]
  return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w/.]+)` \|.*$", section, re.M)}


def test_every_module_is_in_the_architecture_table():
  """Each package's row names every module in it (`step.py`), and each top-level module has its own row, so the
  map of the code a newcomer reads first is never missing a file."""
  rows = architecture_rows()
  missing = []
  for top in ("rejax", "synth"):
    for path in sorted((REPO / top).rglob("*.py")):
      if path.name == "__init__.py":
        continue
      relative = path.relative_to(REPO).as_posix()
      package = path.parent.relative_to(REPO).as_posix() + "/"
      if relative in rows:
        continue
      row = rows.get(package) or (rows.get(f"{top}/") if path.parent == REPO / top else None)
      if row is None or f"`{path.name}`" not in row:
        missing.append(relative)
  assert not missing, "modules docs/architecture.md's package table does not name:\n" + "\n".join(missing)
