"""The BRIGHT loader on the shipped example files: instructions, queries, gold ids and excluded ids come
through exactly; excluded docs at the top of a ranking score as if they were never there (pytrec_eval)."""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest
import pytrec_eval

from rejax.eval import bright
from rejax.eval.metrics import evaluate, remove_excluded
from tests.bright_fixture import BRIGHT, SHIPPED_TASKS, make_bright_dir, read_examples, write_parquet


@pytest.fixture(scope="module")
def bright_dir(tmp_path_factory):
  return make_bright_dir(tmp_path_factory.mktemp("bright"))


@pytest.mark.parametrize("task", SHIPPED_TASKS)
def test_queries_gold_and_excluded_ids_come_through_exactly(bright_dir, task):
  rows = read_examples(task)
  dataset = bright.load_bright_task(bright_dir, task)
  assert dataset.name == task
  assert dataset.queries == {row["id"]: row["query"] for row in rows}
  assert list(dataset.queries) == [row["id"] for row in rows]
  assert dataset.qrels == {row["id"]: dict.fromkeys(row["gold_ids"], 1) for row in rows}
  excluded = {row["id"]: set(row["excluded_ids"]) - {"N/A"} for row in rows}
  assert dataset.excluded == {qid: ids for qid, ids in excluded.items() if ids}
  assert dataset.instruction == bright.INSTRUCTIONS[task]


def test_leetcode_fixture_has_real_exclusions(bright_dir):
  dataset = bright.load_bright_task(bright_dir, "leetcode")
  assert len(dataset.excluded) == 20 and sum(map(len, dataset.excluded.values())) > 20 * 100
  assert bright.load_bright_task(bright_dir, "pony").excluded == {}  # ["N/A"] is BRIGHT's "none"


def test_hub_parquet_layout_reads_like_jsonl(bright_dir, tmp_path):
  """examples/{task}-0000N-of-0000M.parquet shards (the hub's files) give the same dataset as the .jsonl.gz."""
  rows = read_examples("leetcode")
  write_parquet(rows[:7], tmp_path / "examples" / "leetcode-00000-of-00002.parquet")
  write_parquet(rows[7:], tmp_path / "examples" / "leetcode-00001-of-00002.parquet")
  (tmp_path / "documents").mkdir()
  (tmp_path / "documents" / "leetcode-00000-of-00001.parquet").write_bytes(
      (bright_dir / "documents" / "leetcode-00000-of-00001.parquet").read_bytes())
  assert bright.load_bright_task(tmp_path, "leetcode") == bright.load_bright_task(bright_dir, "leetcode")


def test_excluded_ids_at_the_top_score_as_if_absent(bright_dir):
  dataset = bright.load_bright_task(bright_dir, "leetcode")
  rows = read_examples("leetcode")
  fillers = [d for d in dataset.corpus if d.startswith("filler/")]
  run, clean = {}, {}
  for i, row in enumerate(rows):
    excluded = [d for d in row["excluded_ids"] if d != "N/A"]
    gold = row["gold_ids"][: 1 + i % 3]  # some gold docs are found, others are not
    ranked = excluded + fillers[: i % 5] + gold + fillers[i % 5 :]
    run[row["id"]] = {d: float(len(ranked) - r) for r, d in enumerate(ranked)}
    clean[row["id"]] = {d: s for d, s in run[row["id"]].items() if d not in set(excluded)}
  qrels = {row["id"]: dict.fromkeys(row["gold_ids"], 1) for row in rows}
  ours = evaluate(remove_excluded(run, dataset.excluded), dataset.qrels)
  reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_10", "recall_100", "map"}).evaluate(clean)
  for name, measure in {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100",
                        "map": "map"}.items():
    assert ours[name] == pytest.approx(sum(v[measure] for v in reference.values()) / len(rows), abs=1e-9, rel=0)
  assert ours["ndcg@10"] > 0.3
  assert evaluate(run, dataset.qrels)["ndcg@10"] == 0.0  # left in, the excluded docs fill every top 10


def test_shipped_files_have_the_sha256_in_provenance():
  """PROVENANCE.md records each shipped file's sha256 (pony and theoremqa_theorems: the upstream file's)."""
  recorded = dict(re.findall(r"^\| `(examples/[\w.]+)` \|.*\| `([0-9a-f]{64})` \|$",
                             (BRIGHT / "PROVENANCE.md").read_text(), re.M))
  shipped = {path.relative_to(BRIGHT).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted((BRIGHT / "examples").iterdir())}
  assert recorded == shipped


def test_errors_name_the_task_and_file(bright_dir, tmp_path):
  with pytest.raises(ValueError, match="unknown BRIGHT task.*biolgy"):
    bright.check_tasks(["biolgy"])
  assert bright.check_tasks(["pony", "biology"]) == ["biology", "pony"]  # paper order
  with pytest.raises(FileNotFoundError, match=r"documents: no file for 'leetcode'"):
    bright.load_bright_task(BRIGHT, "leetcode")
  write_parquet([{"id": "leetcode/leetcode_11.txt", "content": "x"}],
                tmp_path / "documents" / "leetcode-00000-of-00001.parquet")
  (tmp_path / "examples").mkdir()
  (tmp_path / "examples" / "leetcode.jsonl.gz").write_bytes((BRIGHT / "examples" / "leetcode.jsonl.gz").read_bytes())
  judged = r"BRIGHT leetcode: \d+ judged doc ids of .*examples \(gold_ids\) are not in .*documents, e\.g\. \["
  with pytest.raises(ValueError, match=judged):
    bright.load_bright_task(tmp_path, "leetcode")
  bad = tmp_path / "bad" / "examples"
  bad.mkdir(parents=True)
  with gzip.open(bad / "pony.jsonl.gz", "wt") as f:
    f.write('{"id": "0", "query": "q", "gold_ids": [], "gold_ids_long": [], "excluded_ids": []}\n{"id": "1"}\n')
  with pytest.raises(ValueError, match=r"pony\.jsonl\.gz:2: missing field\(s\) query"):
    bright.load_bright_examples(tmp_path / "bad", "pony")


def test_hub_id_offline_names_the_dataset(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  import huggingface_hub.constants

  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  with pytest.raises(RuntimeError, match=r"could not fetch the dataset 'xlangai/BRIGHT'.*local directory"):
    bright.bright_root("xlangai/BRIGHT", ["pony"])
