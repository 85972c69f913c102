"""The R2MED loader on its hub layout (corpus.jsonl, query.jsonl, qrels.jsonl per task) and on the BEIR layout,
and `rejax eval --r2med` with BM25: metrics equal pytrec_eval on the written runs."""

from __future__ import annotations

import json
import pathlib

import pytest
import pytrec_eval

from rejax.cli import main
from rejax.eval import r2med
from tests.test_eval_cli import read_trec_run

CACM = pathlib.Path(__file__).resolve().parents[1] / "sample_data" / "cacm"


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def cacm_as_r2med_task(folder: pathlib.Path, num_queries: int = 12) -> dict:
  """The first queries of the CACM fixture written in R2MED's hub layout; returns the qrels written."""
  corpus = [json.loads(line) for line in (CACM / "corpus.jsonl").read_text().splitlines()]
  write_jsonl(folder / "corpus.jsonl", [{"id": r["_id"], "text": f"{r['title']}\n{r['text']}"} for r in corpus])
  header, *rows = (CACM / "qrels" / "test.tsv").read_text().splitlines()
  qrels: dict[str, dict[str, int]] = {}
  for line in rows:
    qid, docid, score = line.split("\t")
    if len(qrels) < num_queries or qid in qrels:
      qrels.setdefault(qid, {})[docid] = int(score)
  write_jsonl(folder / "qrels.jsonl", [{"q_id": q, "p_id": d, "score": s} for q, ds in qrels.items()
                                       for d, s in ds.items()])
  queries = [json.loads(line) for line in (CACM / "queries.jsonl").read_text().splitlines()]
  write_jsonl(folder / "query.jsonl", [{"id": q["_id"], "text": q["text"]} for q in queries])
  return qrels


def test_hub_layout_loads_with_the_task_instruction(tmp_path):
  qrels = cacm_as_r2med_task(tmp_path / "Biology")
  dataset = r2med.load_r2med_task(tmp_path, "Biology")
  assert dataset.name == "Biology" and dataset.instruction == r2med.INSTRUCTIONS["Biology"]
  assert dataset.qrels == qrels and dataset.queries.keys() == qrels.keys()
  assert len(dataset.corpus) == 3204 and dataset.excluded == {}
  assert r2med.load_r2med_task(tmp_path, "Biology", instruction="x").instruction == "x"


def test_beir_layout_task_folder_loads_too(tmp_path):
  (tmp_path / "PMC-Clinical").symlink_to(CACM.resolve())
  dataset = r2med.load_r2med_task(tmp_path, "PMC-Clinical")
  assert dataset.name == "PMC-Clinical" and len(dataset.queries) == 52
  assert dataset.instruction == r2med.INSTRUCTIONS["PMC-Clinical"]


def test_r2med_errors_name_the_task_and_file(tmp_path):
  with pytest.raises(ValueError, match="unknown R2MED task"):
    r2med.load_r2med_task(tmp_path, "biology")
  with pytest.raises(FileNotFoundError, match="Biology: missing"):
    r2med.load_r2med_task(tmp_path, "Biology")
  write_jsonl(tmp_path / "Biology" / "corpus.jsonl", [{"id": "d1", "text": "x"}])
  write_jsonl(tmp_path / "Biology" / "query.jsonl", [{"id": "q1", "text": "y"}])
  write_jsonl(tmp_path / "Biology" / "qrels.jsonl", [{"q_id": "q1", "p_id": "d2", "score": 1}])
  with pytest.raises(ValueError, match=r"R2MED Biology: 1 judged doc ids .*qrels\.jsonl"):
    r2med.load_r2med_task(tmp_path, "Biology")


def test_r2med_cli_with_bm25(tmp_path):
  qrels = {task: cacm_as_r2med_task(tmp_path / "r2med" / task, n) for task, n in (("Biology", 12), ("MedQA-Diag", 20))}
  out = tmp_path / "out" / "RESULTS.json"
  main(["eval", "--model", "bm25", "--r2med", str(tmp_path / "r2med"), "--tasks", "MedQA-Diag,Biology",
        "--output", str(out)])
  results = json.loads(out.read_text())
  assert results["benchmark"] == "R2MED" and results["tasks"] == ["Biology", "MedQA-Diag"]
  for task, judged in qrels.items():
    run = read_trec_run(out.parent / "runs" / f"{task}.trec")
    reference = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut_10", "recall_100"}).evaluate(run)
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100")):
      want = sum(v[theirs] for v in reference.values()) / len(judged)
      assert results["per_task"][task][ours] == pytest.approx(want, abs=1e-9, rel=0)
  assert "| metric | Biology | MedQA-Diag | Average |" in out.with_suffix(".md").read_text()


def test_hub_org_offline_names_the_dataset(monkeypatch, tmp_path):
  import huggingface_hub.constants

  monkeypatch.chdir(tmp_path)  # no local folder called R2MED
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  with pytest.raises(RuntimeError, match=r"could not fetch the dataset 'R2MED/Biology'"):
    r2med.load_r2med_task("R2MED", "Biology")
