"""annotate: a relevance score 1..5 for every (query, candidate) pair, by the domain's relevance definition.

The annotator analyses the query, then the document, then answers `<score>N</score>`. An answer
without a parseable score is dropped and counted, unless `annotate.score_completion` is on: then the
annotator's own analysis is sent back with an open `<score>` tag to complete (for small models that
reason but forget the tag; off in the paper's settings). Writes `annotate/DOMAIN.jsonl` rows
`{"qid", "doc_id", "score"}` in candidate order.
"""

from __future__ import annotations

import dataclasses

from synth.context import Context
from synth.prompts import annotate_messages, score_prefix
from synth.summary import StageSummary
from synth.textproc import parse_completed_score, parse_score
from synth.units import read_jsonl

NAME = "annotate"
COMPLETION_TOKENS = 8  # `N</score>` and a little slack


def run(ctx: Context, domain: str) -> StageSummary | None:
  """The annotator's summary for one domain (in: pairs; out: scored pairs)."""
  block, spec, corpus = ctx.config.annotate, ctx.domains[domain], ctx.corpus(domain)
  queries = {q["qid"]: q["query"] for q in read_jsonl(ctx.require("generate", domain))}
  items = [{"qid": m["qid"], "doc_id": d} for m in read_jsonl(ctx.require("mine", domain)) for d in m["candidates"]]

  def process(batch):
    sampling = ctx.sampling(NAME, domain, batch[0]["qid"], batch[0]["doc_id"])
    requests = [annotate_messages(spec, queries[it["qid"]], corpus[it["doc_id"]]) for it in batch]
    answers = ctx.chat(block.backend, requests, sampling)
    scores = [parse_score(a) if a is not None else None for a in answers]
    completed = set()
    if block.score_completion:
      redo = [i for i, (a, s) in enumerate(zip(answers, scores)) if s is None and a]
      if redo:
        tails = ctx.chat(block.backend, [[*requests[i], score_prefix(answers[i])] for i in redo],
                         dataclasses.replace(sampling, max_tokens=COMPLETION_TOKENS))
        for i, tail in zip(redo, tails):
          scores[i] = parse_completed_score(tail)
          completed.add(i)
    rows = []
    for i, (item, answer, score) in enumerate(zip(batch, answers, scores)):
      row = {**item, "score": score}
      if i in completed and score is not None:
        row["completed"] = True  # the score came from the open-tag completion
      if score is None:
        row["drop"] = "no <score>1..5</score> in the answer" if answer is not None else "backend returned nothing"
      rows.append(row)
    return rows

  keys = [f"{it['qid']}\x1f{it['doc_id']}" for it in items]
  done = ctx.run_units(NAME, domain, items, keys, process)
  return None if done is None else ctx.keep(NAME, domain, done[0], len(items), done[1])
