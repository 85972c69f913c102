"""The prompts of each stage (our own wording of the paper's, docs/method.md#data-synthesis), as chat messages."""

from __future__ import annotations

from synth.domains import DomainSpec

Messages = list[dict[str, str]]

SCORE_SCALE = """\
1 = unrelated, or only shares surface words with the query
2 = same general area, but nothing in it helps answer the query
3 = contains a concept, method or fact that helps answer part of the query
4 = clearly helps: an expert would use it to answer the query
5 = essential: it provides exactly the knowledge the query needs"""


def _user(text: str) -> Messages:
  return [{"role": "user", "content": text}]


def filter_messages(domain: DomainSpec, passage: str) -> Messages:
  """Asks whether a passage belongs to the domain; the answer starts with Yes or No."""
  return _user(
    f"Domain: {domain.topic}\n\nPassage:\n{passage}\n\n"
    "Does this passage belong to the domain above, i.e. is it the kind of material an expert in that domain "
    "would consult? Answer with a single word: Yes or No.")


def generate_messages(domain: DomainSpec, document: str, length: str, level: str) -> Messages:
  """Asks for one stand-alone query of the domain's kind that the document helps answer."""
  return _user(
    f"Here is a document:\n\n<document>\n{document}\n</document>\n\n"
    f"Write {domain.query_kind}.\n\n"
    "Requirements:\n"
    f"- Length: {length}.\n"
    f"- Written at the level of someone with a {level} education.\n"
    "- The document must help answer it, but answering must take reasoning: do not copy sentences from the "
    "document or give away its key terms.\n"
    "- It must stand alone: a reader who never saw the document understands it. Never refer to the document "
    "(no \"the passage\", \"this document\", \"the text\", \"the article\", \"this\" for the source).\n"
    "- Output only the query itself: no title line such as \"Query:\", no quotes, no explanation.")


def annotate_messages(domain: DomainSpec, query: str, document: str) -> Messages:
  """Asks for an analysis of the query, then of the document, then a 1..5 score in <score> tags."""
  return _user(
    f"You judge whether a document is relevant to a query.\n\nRelevance means: {domain.relevance}.\n\n"
    f"<query>\n{query}\n</query>\n\n<document>\n{document}\n</document>\n\n"
    "First analyse the query: what is it really asking, and what knowledge does answering it need? "
    "Then analyse the document: what does it offer, and does that knowledge match? "
    f"Then score the relevance on this scale:\n{SCORE_SCALE}\n\n"
    "End your answer with the score alone inside tags, <score>N</score>, N being your score from 1 to 5 "
    "(no example value is given on purpose: judge this pair only).")


def score_prefix(analysis: str) -> dict[str, str]:
  """An assistant message holding the annotator's analysis and an open `<score>` tag, to be continued."""
  return {"role": "assistant", "content": f"{analysis.strip()}\n\n<score>"}


def reason_messages(domain: DomainSpec, query: str) -> Messages:
  """Asks for a reasoning-expanded rewrite of the query (the `reasoning_query` of a record)."""
  return _user(
    f"Task: {domain.instruction}\n\n<query>\n{query}\n</query>\n\n"
    "Before searching, think about what this query needs:\n"
    "1. State the essential problem in one or two sentences.\n"
    "2. Reason step by step about which concepts, theories, theorems, algorithms or syntax an expert would "
    "need to answer it, and what a helpful document would contain.\n"
    "3. Sketch how those pieces lead to an answer.\n\n"
    "Write this reasoning as one passage in plain prose that could itself be used as a search query. "
    "Output only that passage.")
