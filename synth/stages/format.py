"""format: released-format records (docs/method.md#training-data) and the ArrayRecord dataset rejax trains from.

Score >= `format.pos_min_score` is a positive, 1..`format.neg_max_score` a hard negative (candidate
order kept); queries lacking either (or, with the reason stage on, a reasoning_query) are dropped.
Each domain gets `format/DOMAIN-formatted.jsonl` with its instruction as `prompt` and its (G, batch)
as `train_group_size` / `batch_size`; when every domain is formatted, `finish` converts them with
rejax.data.convert into `WORKDIR/arrayrecord/`.
"""

from __future__ import annotations

import collections
import pathlib

from rejax.data.convert import convert, read_manifest
from synth.config import stage_enabled
from synth.context import Context
from synth.report import say
from synth.summary import StageSummary
from synth.units import read_jsonl, write_jsonl_atomic

NAME = "format"
ARRAYRECORD = "arrayrecord"


def labelled(ctx: Context, domain: str) -> tuple[dict[str, list], dict[str, list]]:
  """({qid: [(doc id, score)] positives}, {qid: [(doc id, score)] negatives}) of the annotations."""
  block = ctx.config.format
  pos: dict[str, list] = collections.defaultdict(list)
  neg: dict[str, list] = collections.defaultdict(list)
  for row in read_jsonl(ctx.require("annotate", domain)):
    if row["score"] >= block.pos_min_score:
      pos[row["qid"]].append((row["doc_id"], row["score"]))
    elif 1 <= row["score"] <= block.neg_max_score:
      neg[row["qid"]].append((row["doc_id"], row["score"]))
  return pos, neg


def jsonl_path(ctx: Context, domain: str) -> pathlib.Path:
  """`WORKDIR/format/DOMAIN-formatted.jsonl` (the name rejax.data.convert takes the domain from)."""
  return ctx.workdir / NAME / f"{domain}-formatted.jsonl"


def run(ctx: Context, domain: str) -> StageSummary | None:
  """The formatter's summary for one domain (in: queries; out: records)."""
  spec, corpus = ctx.domains[domain], ctx.corpus(domain)
  queries = read_jsonl(ctx.require("generate", domain))
  pos, neg = labelled(ctx, domain)
  with_reason = stage_enabled(ctx.config, "reason")
  reasoning = {r["qid"]: r["reasoning_query"] for r in read_jsonl(ctx.require("reason", domain))} if with_reason else {}
  records, dropped = [], collections.Counter()
  for q in queries:
    qid = q["qid"]
    if not pos[qid]:
      dropped["no positive"] += 1
    elif not neg[qid]:
      dropped["no negative"] += 1
    elif with_reason and not reasoning.get(qid):
      dropped["no reasoning_query"] += 1
    else:
      record = {"prompt": spec.instruction, "query": q["query"]}
      if with_reason:
        record["reasoning_query"] = reasoning[qid]
      record.update(pos=[corpus[d] for d, _ in pos[qid]], neg=[corpus[d] for d, _ in neg[qid]],
                    pos_scores=[float(s) for _, s in pos[qid]], neg_scores=[float(s) for _, s in neg[qid]],
                    train_group_size=spec.group_size, batch_size=spec.batch_size)
      records.append(record)
  write_jsonl_atomic(jsonl_path(ctx, domain), records)
  return StageSummary(NAME, domain, len(queries), len(records), dict(dropped))


def finish(ctx: Context) -> pathlib.Path | None:
  """Converts every domain's JSONL into `WORKDIR/arrayrecord/` (once); returns it, None if nothing to write."""
  output = ctx.workdir / ARRAYRECORD
  counts = {d: StageSummary.load(ctx.path(NAME, d, ".summary.json")).n_out for d in ctx.domains}
  wanted = {d: n for d, n in counts.items() if n}
  if output.exists():
    have = {d: info["records"] for d, info in read_manifest(output)["domains"].items()}
    if have != wanted:
      raise RuntimeError(f"{output} holds {have} records but {ctx.workdir / NAME} has {wanted}; "
                         f"delete {output} to convert again")
    return output
  for domain in sorted(set(counts) - set(wanted)):
    say(f"format {domain}: no records, left out of {output}")
  if not wanted:
    return None
  manifest = convert([str(jsonl_path(ctx, d)) for d in sorted(wanted)], output)
  say(f"wrote {manifest['records']} records to {output}")
  return output
