"""The twelve training domains (BRIGHT's tasks, in the paper's order): one table of each domain's query instruction,
the paper's (global batch, G), and what the synthesis writes and judges for it.

Evaluation (`rejax.eval.bright`: the query instructions), training (`rejax.data.pipeline`, the recipe's
`data.domains`), export (`rejax.hf.export`: the default prompts) and synthesis (`synth.domains`: the presets) all
read it; docs/method.md#per-domain-batches and docs/method.md#query-instructions show it.
"""

from __future__ import annotations

import dataclasses

# The paper trains on 8 devices: a domain's queries per device are its global batch / PAPER_DEVICES.
PAPER_DEVICES = 8


@dataclasses.dataclass(frozen=True)
class Domain:
  """One training domain: its query instruction, the paper's batch layout, and what synthesis needs of it."""

  name: str
  instruction: str  # the query instruction: BRIGHT's, the training records' `prompt`, an export's prompt
  batch_size: int  # the paper's global batch B: queries per step over all devices
  group_size: int  # G: passages per query in a training group (1 positive + G-1 negatives)
  topic: str  # what belongs to the domain (the synthesis filter's question)
  query_kind: str  # what the synthesis writes from a source document
  relevance: str  # when a document is relevant to a query (the annotator's definition)

  @property
  def per_device_batch(self) -> int:
    """Queries per device on the paper's PAPER_DEVICES devices."""
    return self.batch_size // PAPER_DEVICES


def _stackexchange(name: str, site: str, instruction: str) -> Domain:
  """A StackExchange domain: posts of the `site` site, answered by the concepts a document discusses."""
  return Domain(
    name, instruction, batch_size=64, group_size=16,
    topic=f"{site} (questions and answers on the {site} StackExchange site)",
    query_kind=(f"a post for the {site} StackExchange site: a user describes a concrete situation, observation "
                "or problem in their own words and asks a question whose answer needs the concepts or theories "
                "in the document, without naming or quoting them"),
    relevance=(f"the document discusses concepts or theories that a {site} expert would use to reason about "
               "and answer the post, even if the post never names them"))


_MATH_KIND = ("a new, self-contained math problem that is solved with the same theorem or problem-solving skill "
              "as the document, on different objects and numbers, without stating the theorem")

DOMAINS: dict[str, Domain] = {d.name: d for d in (
  _stackexchange("biology", "Biology",
                 "Given a Biology post, retrieve relevant passages that help answer the post."),
  _stackexchange("earth_science", "Earth Science",
                 "Given an Earth Science post, retrieve relevant passages that help answer the post."),
  _stackexchange("economics", "Economics",
                 "Given an Economics post, retrieve relevant passages that help answer the post."),
  _stackexchange("psychology", "Psychology",
                 "Given a Psychology post, retrieve relevant passages that help answer the post."),
  _stackexchange("robotics", "Robotics",
                 "Given a Robotics post, retrieve relevant passages that help answer the post."),
  _stackexchange("stackoverflow", "Stack Overflow",
                 "Given a Stack Overflow post, retrieve relevant passages that help answer the post."),
  _stackexchange("sustainable_living", "Sustainable Living",
                 "Given a Sustainable Living post, retrieve relevant passages that help answer the post."),
  Domain(
    "leetcode", "Given a Coding problem, retrieve relevant examples that help answer the problem.",
    batch_size=512, group_size=2, topic="algorithmic programming problems and their solutions",
    query_kind=("a new LeetCode-style programming problem with a different story, stated with its input, output "
                "and an example, that is solved by the same algorithm or data structure as the document"),
    relevance="the document's algorithm or data structure helps solve the problem"),
  Domain(
    "pony", "Given a Pony question, retrieve relevant passages that help answer the question.",
    batch_size=16, group_size=64, topic="the Pony programming language (its syntax, types and standard library)",
    query_kind=("a coding instruction that says it uses the Pony language, describes a small program or function "
                "to write and gives its code template, such that implementing it needs the syntax the document "
                "describes"),
    relevance="the Pony syntax or feature the document describes is needed to complete the coding instruction"),
  Domain(
    "aops", "Given a Math problem, retrieve relevant examples that help answer the problem.",
    batch_size=64, group_size=16, topic="competition mathematics problems and solutions",
    query_kind=_MATH_KIND, relevance="the document's problem-solving technique helps solve the problem"),
  Domain(
    "theoremqa_questions", "Given a Math problem, retrieve relevant examples that help answer the problem.",
    batch_size=64, group_size=16, topic="mathematics, physics and engineering problems solved with a theorem",
    query_kind=_MATH_KIND,
    relevance="the document's worked example uses a theorem or skill that helps solve the problem"),
  Domain(
    "theoremqa_theorems", "Given a Math problem, retrieve relevant theorems that help answer the problem.",
    batch_size=64, group_size=16, topic="mathematical theorems, definitions and their statements",
    query_kind=_MATH_KIND, relevance="the theorem in the document helps solve the problem"),
)}

# Views of the table: the query instruction of each domain (docs/method.md#query-instructions), and the paper's
# (global batch, G) of each, every step holding B*G = 1,024 passages (docs/method.md#per-domain-batches).
INSTRUCTIONS: dict[str, str] = {name: d.instruction for name, d in DOMAINS.items()}
PAPER_DOMAIN_SETTINGS: dict[str, tuple[int, int]] = {name: (d.batch_size, d.group_size) for name, d in DOMAINS.items()}
