"""reason: a `reasoning_query` per query, an LLM rewrite that reasons about what the query needs.

The authors did not publish how theirs were made (docs/method.md#data-synthesis); ours asks for the essential
problem, the knowledge an answer needs, and a sketch of the answer, in BRIGHT's spirit. Only queries
that the format stage will keep (at least one positive and one negative) are rewritten. Writes
`reason/DOMAIN.jsonl` rows `{"qid", "reasoning_query"}`.
"""

from __future__ import annotations

import collections

from synth.context import Context
from synth.prompts import reason_messages
from synth.stages.format import labelled
from synth.summary import StageSummary
from synth.units import read_jsonl

NAME = "reason"


def run(ctx: Context, domain: str) -> StageSummary | None:
  """The rewriter's summary for one domain (in: queries; out: queries with a reasoning_query)."""
  spec = ctx.domains[domain]
  queries = read_jsonl(ctx.require("generate", domain))
  pos, neg = labelled(ctx, domain)
  skipped: collections.Counter = collections.Counter()
  items = []
  for q in queries:
    if not pos[q["qid"]]:
      skipped["no positive (format drops it)"] += 1
    elif not neg[q["qid"]]:
      skipped["no negative (format drops it)"] += 1
    else:
      items.append({"qid": q["qid"], "query": q["query"]})

  def process(batch):
    answers = ctx.chat(ctx.config.reason.backend, [reason_messages(spec, it["query"]) for it in batch],
                       ctx.sampling(NAME, domain, batch[0]["qid"]))
    rows = []
    for item, answer in zip(batch, answers):
      text = (answer or "").strip()
      row = {"qid": item["qid"], "reasoning_query": text}
      drop = "empty rewrite" if answer is not None else "backend returned nothing"
      rows.append(row if text else {**row, "drop": drop})
    return rows

  done = ctx.run_units(NAME, domain, items, [it["qid"] for it in items], process)
  return None if done is None else ctx.keep(NAME, domain, done[0], len(queries), skipped, done[1])
