"""R2MED (hub org R2MED, one dataset repo per task): the 8 tasks, their query instructions, a loader per task.

Each task repo `R2MED/{task}` holds three JSONL files (configs `corpus`, `query`, `qrels` on the hub):
  corpus.jsonl   {"id", "text"}
  query.jsonl    {"id", "text"}
  qrels.jsonl    {"q_id", "p_id", "score"}
A local directory holds one such folder per task (`DIR/Biology/corpus.jsonl`, ...); a task folder in the
BEIR layout (`corpus.jsonl` with `_id`, `queries.jsonl`, `qrels/test.tsv`) works too. The hub org id
`R2MED` fetches the task repos when online.

The paper names the tasks and the protocol (max length 512) but not the query instructions; the ones
below are ours, in the style of BRIGHT's, and `--instruction` overrides them (docs/method.md#r2med).
"""

from __future__ import annotations

import pathlib

from rejax.errors import InputError
from rejax.eval.beir import MAX_GRADE, RetrievalDataset, check_judged_docs, check_judged_queries, load_beir
from rejax.eval.benchmark import check_tasks
from rejax.eval.hub_data import dataset_snapshot
from rejax.rows import ID, read_rows

HUB_ORG = "R2MED"
FILES = ("corpus.jsonl", "query.jsonl", "qrels.jsonl")
TEXT_FIELDS = {"id": ID, "text": str}  # corpus.jsonl and query.jsonl
QRELS_FIELDS = {"q_id": ID, "p_id": ID, "score": int}

# The paper's task order.
INSTRUCTIONS = {
    "Biology": "Given a Biology post, retrieve relevant passages that help answer the post.",
    "Bioinformatics": "Given a Bioinformatics post, retrieve relevant passages that help answer the post.",
    "Medical-Sciences": "Given a Medical Sciences post, retrieve relevant passages that help answer the post.",
    "MedXpertQA-Exam": "Given a medical exam question, retrieve relevant passages that help answer the question.",
    "MedQA-Diag": "Given a patient case, retrieve relevant passages that help make the diagnosis.",
    "PMC-Treatment": "Given a patient case, retrieve relevant passages that help plan the treatment.",
    "PMC-Clinical": "Given a patient case, retrieve relevant passages that help answer the clinical question.",
    "IIYi-Clinical": "Given a patient case, retrieve relevant passages that help answer the clinical question.",
}
TASKS = tuple(INSTRUCTIONS)


def r2med_task_dir(source: str | pathlib.Path, task: str) -> pathlib.Path:
  """The local folder of one task: `source/task`, or the hub repo `R2MED/{task}` when source is `R2MED`."""
  check_tasks([task], TASKS, "R2MED")
  if str(source) == HUB_ORG and not pathlib.Path(source).exists():
    return dataset_snapshot(f"{HUB_ORG}/{task}", list(FILES))
  folder = pathlib.Path(source).expanduser() / task
  if not folder.is_dir():
    raise FileNotFoundError(f"{folder}: missing; an R2MED directory has one folder per task ({', '.join(TASKS)})")
  return folder


def load_r2med_task(source: str | pathlib.Path, task: str, *, instruction: str | None = None) -> RetrievalDataset:
  """One R2MED task with its instruction (ours unless `instruction` is given; docs/method.md#r2med)."""
  folder = r2med_task_dir(source, task)
  instruction = instruction if instruction is not None else INSTRUCTIONS[task]
  if not (folder / "qrels.jsonl").is_file() and (folder / "qrels" / "test.tsv").is_file():
    dataset = load_beir(folder)
    dataset.name, dataset.instruction = task, instruction
    return dataset
  for name in FILES:
    if not (folder / name).is_file():
      raise FileNotFoundError(f"{folder / name}: missing; an R2MED task folder has {', '.join(FILES)}")
  corpus = {str(r["id"]): r["text"]
            for r in read_rows(folder / "corpus.jsonl", TEXT_FIELDS, unique="id", allow_empty=False)}
  qrels = read_qrels_jsonl(folder / "qrels.jsonl")
  queries = {str(r["id"]): r["text"]
             for r in read_rows(folder / "query.jsonl", TEXT_FIELDS, unique="id", allow_empty=False)}
  name = f"R2MED {task}"
  check_judged_queries(qrels, queries, name=name, qrels_file=folder / "qrels.jsonl",
                       queries_file=folder / "query.jsonl")
  check_judged_docs(qrels, corpus, name=name, qrels_file=folder / "qrels.jsonl")
  return RetrievalDataset(task, corpus, {q: t for q, t in queries.items() if q in qrels}, qrels,
                          instruction=instruction)


def read_qrels_jsonl(path: pathlib.Path) -> dict[str, dict[str, int]]:
  """{query id: {doc id: grade}} of `{"q_id", "p_id", "score"}` rows; a repeated judgment or a grade out of range
  raises InputError naming the file and ids."""
  qrels: dict[str, dict[str, int]] = {}
  for r in read_rows(path, QRELS_FIELDS, unique=("q_id", "p_id"), allow_empty=False):
    qid, docid = str(r["q_id"]), str(r["p_id"])
    if abs(r["score"]) > MAX_GRADE:
      raise InputError(f"{path}: the score of query {qid!r}, doc {docid!r} is out of range (|score| < 2**31)")
    qrels.setdefault(qid, {})[docid] = r["score"]
  return qrels
