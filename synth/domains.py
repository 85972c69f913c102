"""Per-domain settings of the synthesis: what a query looks like, what relevance means, (G, batch).

The 12 BRIGHT domains are presets (docs/method.md#per-domain-batches, #query-instructions); a user's own corpus is
a domain whose config block gives these fields itself.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from rejax.data.records import DOMAIN_PATTERN

STACKEXCHANGE = {
  "biology": ("Biology", "a Biology"), "earth_science": ("Earth Science", "an Earth Science"),
  "economics": ("Economics", "an Economics"), "psychology": ("Psychology", "a Psychology"),
  "robotics": ("Robotics", "a Robotics"), "stackoverflow": ("Stack Overflow", "a Stack Overflow"),
  "sustainable_living": ("Sustainable Living", "a Sustainable Living"),
}


@dataclasses.dataclass(frozen=True)
class DomainSpec:
  """Everything the prompts and the formatter need to know about one domain."""

  name: str
  topic: str  # what belongs to the domain (the filter's question)
  instruction: str  # the retrieval instruction stored as `prompt` and used for mining
  query_kind: str  # what to write from a source document
  relevance: str  # when a document is relevant to a query (the annotator's definition)
  group_size: int  # G: passages per query in a training group
  batch_size: int  # queries per device


def _stackexchange(name: str) -> DomainSpec:
  site, article = STACKEXCHANGE[name]
  return DomainSpec(
    name, topic=f"{site} (questions and answers on the {site} StackExchange site)",
    instruction=f"Given {article} post, retrieve relevant passages that help answer the post.",
    query_kind=(f"a post for the {site} StackExchange site: a user describes a concrete situation, observation "
                "or problem in their own words and asks a question whose answer needs the concepts or theories "
                "in the document, without naming or quoting them"),
    relevance=(f"the document discusses concepts or theories that a {site} expert would use to reason about "
               "and answer the post, even if the post never names them"),
    group_size=16, batch_size=8)


_MATH_KIND = ("a new, self-contained math problem that is solved with the same theorem or problem-solving skill "
              "as the document, on different objects and numbers, without stating the theorem")

BRIGHT: dict[str, DomainSpec] = {
  **{name: _stackexchange(name) for name in STACKEXCHANGE},
  "leetcode": DomainSpec(
    "leetcode", topic="algorithmic programming problems and their solutions",
    instruction="Given a Coding problem, retrieve relevant examples that help answer the problem.",
    query_kind=("a new LeetCode-style programming problem with a different story, stated with its input, output "
                "and an example, that is solved by the same algorithm or data structure as the document"),
    relevance="the document's algorithm or data structure helps solve the problem",
    group_size=2, batch_size=64),
  "pony": DomainSpec(
    "pony", topic="the Pony programming language (its syntax, types and standard library)",
    instruction="Given a Pony question, retrieve relevant passages that help answer the question.",
    query_kind=("a coding instruction that says it uses the Pony language, describes a small program or function "
                "to write and gives its code template, such that implementing it needs the syntax the document "
                "describes"),
    relevance="the Pony syntax or feature the document describes is needed to complete the coding instruction",
    group_size=64, batch_size=2),
  "aops": DomainSpec(
    "aops", topic="competition mathematics problems and solutions",
    instruction="Given a Math problem, retrieve relevant examples that help answer the problem.",
    query_kind=_MATH_KIND, relevance="the document's problem-solving technique helps solve the problem",
    group_size=16, batch_size=8),
  "theoremqa_questions": DomainSpec(
    "theoremqa_questions", topic="mathematics, physics and engineering problems solved with a theorem",
    instruction="Given a Math problem, retrieve relevant examples that help answer the problem.",
    query_kind=_MATH_KIND,
    relevance="the document's worked example uses a theorem or skill that helps solve the problem",
    group_size=16, batch_size=8),
  "theoremqa_theorems": DomainSpec(
    "theoremqa_theorems", topic="mathematical theorems, definitions and their statements",
    instruction="Given a Math problem, retrieve relevant theorems that help answer the problem.",
    query_kind=_MATH_KIND, relevance="the theorem in the document helps solve the problem",
    group_size=16, batch_size=8),
}

FIELDS = tuple(f.name for f in dataclasses.fields(DomainSpec) if f.name != "name")


def check_domain_name(name: str, where: str) -> str:
  """`name` when it is a domain name (rejax.data.convert's rule: lowercase letters, digits and `_`), else a
  ValueError naming `where`: a domain names files under the workdir, so `../x`, `/abs` or `a/b` could escape it."""
  if not isinstance(name, str) or not DOMAIN_PATTERN.fullmatch(name):
    raise ValueError(f"{where}: {name!r} is not a domain name; a domain names files under the workdir, so use "
                     "lowercase letters, digits and `_` (e.g. biology)")
  return name


def domain_spec(name: str, block: Mapping, where: str) -> DomainSpec:
  """The spec of a configured domain: its BRIGHT preset (`preset`, default the domain's name when it is a
  BRIGHT domain) with the block's non-empty fields on top; a field left unset without a preset is an error."""
  check_domain_name(name, "domains")
  preset_name = block.get("preset") or (name if name in BRIGHT else "")
  if preset_name and preset_name not in BRIGHT:
    raise ValueError(f"{where}.preset={preset_name!r}: not a BRIGHT domain ({', '.join(BRIGHT)})")
  values = dataclasses.asdict(BRIGHT[preset_name]) if preset_name else {}
  values.update({k: block[k] for k in FIELDS if block.get(k)})
  missing = [k for k in FIELDS if not values.get(k)]
  if missing:
    raise ValueError(f"{where}: no BRIGHT preset, so set {', '.join(f'{where}.{k}' for k in missing)}")
  values["name"] = name
  return DomainSpec(**values)
