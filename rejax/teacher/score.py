"""`rejax data score`: teacher scores added to released-format records, the `pos_scores` / `neg_scores` a
distillation loss reads (docs/architecture.md).

Every record's (query, positive) and (query, negative) pairs are scored by the teacher (scorers.py: a decoder or a
sentence-transformers bi-encoder, the inner product of the embeddings; a CrossEncoder, its prediction), in one pass
over the whole input (each distinct text embedded once); any earlier scores are replaced. The records are written
under their file names into a new directory, with score.json (the teacher and counts).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

from rejax.errors import InputError
from rejax.teacher.record_files import check_new_output, read_records, record_files, write_records_dir
from rejax.teacher.scorers import BM25, load_scorer, resolve

SUMMARY = "score.json"


def teacher_scores(scorer, records: list[dict], *, progress: bool = True) -> list[tuple[list[float], list[float]]]:
  """(pos_scores, neg_scores) of each record by `scorer` (anything with scorers' `score_pairs`)."""
  queries, instructions, documents = [], [], []
  for r in records:
    for text in r["pos"] + r["neg"]:
      queries.append(r["query"])
      instructions.append(r["prompt"])
      documents.append(text)
  scores = scorer.score_pairs(queries, instructions, documents, progress=progress)
  out, start = [], 0
  for r in records:
    npos, nneg = len(r["pos"]), len(r["neg"])
    out.append(([float(s) for s in scores[start : start + npos]],
                [float(s) for s in scores[start + npos : start + npos + nneg]]))
    start += npos + nneg
  return out


def score(teacher: str, input_path: pathlib.Path, output: pathlib.Path, *, logits: bool = False,
          dtype: str = "float32", max_length: int = 512, batch_size: int = 32, progress: bool = True) -> dict:
  """Writes the records of `input_path` with the teacher's scores, and score.json, to the new directory `output`;
  returns score.json's content."""
  check_new_output(output)
  files = {path.name: [record for _, record in read_records(path)] for path in record_files(input_path)}
  records = [r for rs in files.values() for r in rs]
  if teacher == BM25:
    raise InputError("--teacher bm25: BM25 scores depend on a corpus's statistics; mine with `rejax data mine --model "
                     "bm25 --include-scores` instead")
  kind, model_dir = resolve(teacher, "--teacher")
  if logits and kind != "cross-encoder":
    raise InputError(f"--logits: only a CrossEncoder has logits; --teacher {teacher} is a {kind} model")
  pairs = sum(len(r["pos"]) + len(r["neg"]) for r in records)
  print(f"scoring {pairs} pairs of {len(records)} records with the {kind} {teacher}", file=sys.stderr)
  scorer = load_scorer(kind, model_dir, dtype=dtype, max_length=max_length, batch_size=batch_size, logits=logits)
  scored = iter(teacher_scores(scorer, records, progress=progress))
  out_files = {}
  for name, rs in files.items():
    out_files[name] = [{**r, "pos_scores": pos, "neg_scores": neg} for r, (pos, neg) in zip(rs, scored)]
  pos_all = [s for r in out_files.values() for rec in r for s in rec["pos_scores"]]
  neg_all = [s for r in out_files.values() for rec in r for s in rec["neg_scores"]]
  summary = {"teacher": teacher, "kind": kind, "logits": logits, "input": str(input_path), "records": len(records),
             "pairs": pairs, "mean_pos_score": float(np.mean(pos_all)), "mean_neg_score": float(np.mean(neg_all)),
             "files": {name: len(rs) for name, rs in out_files.items()}}
  write_records_dir(output, out_files, summary, SUMMARY, what="scored records")
  return summary
