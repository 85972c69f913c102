"""Training data: JSONL -> TFDS/ArrayRecord round trip, errors by file:line, and the Grain pipeline's
determinism, resumability, process sharding and per-domain batch shapes."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from rejax.cli import main as rejax_main
from rejax.data import sampling
from rejax.data.convert import convert, read_manifest
from rejax.data.pipeline import BatchPlan, BuildBatch, PipelineConfig, make_dataset
from rejax.data.records import RecordError, from_example
from rejax.errors import InputError

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "sample_data" / "reason_embed"
SETTINGS = {"biology": (4, 4), "earth_science": (4, 8), "economics": (2, 16)}


def fixture_records(domain: str) -> list[dict]:
  """The fixture's records of a domain, read independently of rejax."""
  return [json.loads(line) for line in open(FIXTURE / f"{domain}-formatted.jsonl", encoding="utf-8")]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("data") / "reason_embed"
  convert([str(FIXTURE / "*.jsonl")], out)
  return out


@pytest.fixture(scope="module")
def pipeline_config(dataset_dir, qwen3_tokenizer_dir) -> PipelineConfig:
  return PipelineConfig(str(dataset_dir), str(qwen3_tokenizer_dir), SETTINGS, max_query_length=128,
                        max_passage_length=64, seed=7)


def read_all(directory: pathlib.Path) -> dict[str, list[dict]]:
  import tensorflow_datasets as tfds

  sources = tfds.builder_from_directory(str(directory)).as_data_source()
  return {domain: [from_example(source[i]) for i in range(len(source))] for domain, source in sources.items()}


def test_convert_round_trips_every_record_exactly(dataset_dir):
  stored = read_all(dataset_dir)
  assert sorted(stored) == ["biology", "earth_science", "economics"]
  for domain, records in stored.items():
    assert records == fixture_records(domain)  # same records, same order, optional fields as they were
  manifest = read_manifest(dataset_dir)
  assert {d: info["records"] for d, info in manifest["domains"].items()} == {"biology": 24, "earth_science": 20,
                                                                              "economics": 12}
  assert manifest["records"] == 56


def test_convert_reads_gzip_and_keeps_unknown_fields(tmp_path):
  records = fixture_records("economics")[:3]
  records[0]["type"] = "normal"  # a field outside the schema survives as it was
  del records[1]["reasoning_query"]
  with gzip.open(tmp_path / "economics-formatted.jsonl.gz", "wt", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  convert([str(tmp_path / "*.jsonl.gz")], tmp_path / "out")
  assert read_all(tmp_path / "out") == {"economics": records}


def test_a_killed_conversions_staging_is_removed_by_the_next_one_and_a_live_ones_kept(tmp_path):
  from rejax.io import HOST

  records = fixture_records("economics")[:2]
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "economics-formatted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()  # a pid that no longer runs: the conversion it stood for was killed
  killed = tmp_path / f".out.partial-{HOST}-{dead.pid}"
  live = tmp_path / f".out.partial-{HOST}-{os.getppid()}"  # a writer that still runs (pytest's parent)
  for staging in (killed, live):
    (staging / "reason_embed").mkdir(parents=True)
  convert([str(tmp_path / "in" / "*.jsonl")], tmp_path / "out")
  assert read_all(tmp_path / "out") == {"economics": records}
  assert not killed.exists() and live.is_dir()
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "out", live.name])


def test_a_malformed_line_is_reported_by_file_and_line_and_leaves_no_output(tmp_path):
  lines = open(FIXTURE / "biology-formatted.jsonl", encoding="utf-8").read().splitlines()
  bad = json.loads(lines[3])
  bad["pos"] = "not a list"
  lines[3] = json.dumps(bad)
  source = tmp_path / "biology-formatted.jsonl"
  source.write_text("\n".join(lines) + "\n")
  with pytest.raises(RecordError, match=rf"{source}:4: `pos` must be a list of strings"):
    convert([str(source)], tmp_path / "out")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["biology-formatted.jsonl"]  # nothing half-written

  lines[5] = lines[5][:40]  # truncated JSON
  source.write_text("\n".join(lines) + "\n")
  manifest = convert([str(source)], tmp_path / "out", skip_invalid=True)
  assert manifest["domains"]["biology"] == {**manifest["domains"]["biology"], "records": 22, "skipped": 2}
  expected = [r for i, r in enumerate(fixture_records("biology")) if i not in (3, 5)]
  assert read_all(tmp_path / "out")["biology"] == expected


def test_cli_convert_names_the_bad_line(tmp_path, capsys):
  source = tmp_path / "pony-formatted.jsonl"
  source.write_text(json.dumps({"prompt": "p", "query": "q", "pos": ["a"], "neg": ["b"]}) + "\n"
                    + json.dumps({"prompt": "p", "query": "q", "pos": ["a"], "neg": ["b"], "batch_size": 0}) + "\n")
  with pytest.raises(SystemExit) as exit_info:
    rejax_main(["data", "convert", "--input", str(source), "--output", str(tmp_path / "out")])
  assert f"{source}:2: `batch_size` must be a positive integer" in str(exit_info.value)
  with pytest.raises(SystemExit, match="no input file matches"):
    rejax_main(["data", "convert", "--input", str(tmp_path / "nothing*.jsonl"), "--output", str(tmp_path / "o")])


def take(iterator, n: int) -> list[dict]:
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_same_seed_same_batches_and_another_seed_differs(pipeline_config):
  first = take(iter(make_dataset(pipeline_config, num_steps=8)), 8)
  assert_same_batches(first, take(iter(make_dataset(pipeline_config, num_steps=8)), 8))
  other = take(iter(make_dataset(PipelineConfig(**{**pipeline_config.__dict__, "seed": 8}), num_steps=8)), 8)
  assert any(x["passage_ids"].shape != y["passage_ids"].shape or (x["passage_ids"] != y["passage_ids"]).any()
             for x, y in zip(first, other))


def test_restoring_iterator_state_continues_as_if_never_stopped(pipeline_config):
  steps = 12  # more than one epoch (6 + 5 + 6 = 17 batches... of which 11 fit the fixture: see plan)
  uninterrupted = take(iter(make_dataset(pipeline_config, num_steps=steps)), steps)
  iterator = iter(make_dataset(pipeline_config, num_steps=steps))
  take(iterator, 5)
  state = json.loads(json.dumps(iterator.get_state()))  # what a checkpoint stores
  resumed = iter(make_dataset(pipeline_config, num_steps=steps))
  resumed.set_state(state)
  assert_same_batches(take(resumed, steps - 5), uninterrupted[5:])


def test_worker_processes_give_the_same_batches(pipeline_config):
  in_process = take(iter(make_dataset(pipeline_config, num_steps=6)), 6)
  with_workers = take(iter(make_dataset(pipeline_config, num_steps=6, num_workers=2)), 6)
  assert_same_batches(with_workers, in_process)


def test_every_batch_is_one_domain_with_its_batch_and_group_size(pipeline_config, qwen3_tokenizer_dir):
  from transformers import AutoTokenizer

  tokenizer = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))
  plan = BatchPlan({"biology": 24, "earth_science": 20, "economics": 12}, SETTINGS, seed=7)
  assert plan.steps_per_epoch == 24 // 4 + 20 // 4 + 12 // 2
  prompts = {d: fixture_records(d)[0]["prompt"] for d in SETTINGS}
  seen = set()
  for batch in take(iter(make_dataset(pipeline_config, num_steps=plan.steps_per_epoch)), plan.steps_per_epoch):
    domain = plan.domains[int(batch["domain"])].name
    seen.add(domain)
    batch_size, group = SETTINGS[domain]
    assert batch["query_ids"].shape[0] == batch["reason_ids"].shape[0] == batch_size
    assert batch["passage_ids"].shape[0] == batch_size * group
    for ids, mask in zip(batch["query_ids"], batch["query_mask"]):
      decoded = tokenizer.decode(ids[mask.astype(bool)][:40])
      assert decoded.startswith(f"Instruct: {prompts[domain]}\nQuery:")
    for name in ("query", "reason", "passage"):  # EOS ends every row, lengths are from the bucket set
      ids, mask = batch[f"{name}_ids"], batch[f"{name}_mask"]
      assert ids.shape[1] in (16, 32, 64, 128)
      last = mask.sum(axis=1) - 1
      assert (ids[np.arange(len(ids)), last] == tokenizer.eos_token_id).all()
  assert seen == set(SETTINGS)


def test_epoch_covers_each_domain_once_and_processes_split_it_disjointly():
  plan = BatchPlan({"biology": 24, "earth_science": 20, "economics": 12}, SETTINGS, seed=3)
  for epoch in range(3):
    per_domain = {d: [] for d in range(3)}
    for step in range(epoch * plan.steps_per_epoch, (epoch + 1) * plan.steps_per_epoch):
      e, d, indices = plan.batch(step)
      assert e == epoch
      parts = [indices[sampling.process_slice(len(indices), p, 2)] for p in range(2)]
      assert not set(parts[0]) & set(parts[1])
      np.testing.assert_array_equal(np.concatenate(parts), indices)
      per_domain[d] += list(indices)
    for d, spec in enumerate(plan.domains):
      assert len(per_domain[d]) == len(set(per_domain[d])) == spec.batches_per_epoch * spec.batch_size
  assert not np.array_equal(plan.batch(0)[2], plan.batch(plan.steps_per_epoch)[2]) or \
      plan.batch(0)[1] != plan.batch(plan.steps_per_epoch)[1]


def test_two_processes_load_the_halves_of_the_one_process_batch(pipeline_config):
  whole = take(iter(make_dataset(pipeline_config, num_steps=4)), 4)
  halves = [take(iter(make_dataset(pipeline_config, num_steps=4, process_index=p, process_count=2)), 4)
            for p in range(2)]
  for step, batch in enumerate(whole):
    group = SETTINGS[["biology", "earth_science", "economics"][int(batch["domain"])]][1]
    for name in ("query", "reason", "passage"):
      ids, mask = batch[f"{name}_ids"], batch[f"{name}_mask"]
      rows = 0
      for half in (halves[0][step], halves[1][step]):
        h_ids, h_mask = half[f"{name}_ids"], half[f"{name}_mask"]
        width = h_ids.shape[1]
        np.testing.assert_array_equal(h_mask, mask[rows:rows + len(h_ids), :width])
        np.testing.assert_array_equal(h_ids * h_mask, (ids * mask)[rows:rows + len(h_ids), :width])
        rows += len(h_ids)
      assert rows == len(ids)
    assert halves[0][step]["passage_ids"].shape[0] == halves[0][step]["query_ids"].shape[0] * group


def test_sampled_negatives_exclude_positives_and_repeat_short_pools():
  pos, neg = ["p1", "p2", "shared"], ["shared", "n1", "n2", "n3"]
  positives_seen = set()
  for epoch in range(200):
    group = sampling.sample_group(pos, neg, 8, seed=1, epoch=epoch, domain=0, index=5)
    assert group[0] in pos and not set(group[1:]) & set(pos)
    counts = {t: group[1:].count(t) for t in ("n1", "n2", "n3")}
    assert sum(counts.values()) == 7 and max(counts.values()) <= 3  # 7 draws from the pool repeated 3 times
    positives_seen.add(group[0])
  assert positives_seen == set(pos)
  long_pool = [f"n{i}" for i in range(50)]
  group = sampling.sample_group(["p"], long_pool, 16, seed=1, epoch=0, domain=0, index=0)
  assert len(set(group[1:])) == 15  # without replacement when the pool suffices
  assert group == sampling.sample_group(["p"], long_pool, 16, seed=1, epoch=0, domain=0, index=0)
  with pytest.raises(ValueError, match="f.jsonl:9: every negative is also a positive"):
    sampling.sample_group(["a"], ["a"], 4, seed=1, epoch=0, domain=0, index=0, where="f.jsonl:9")


def test_fixture_groups_never_contain_a_records_positive(dataset_dir, pipeline_config):
  stored = read_all(dataset_dir)
  for d, (domain, records) in enumerate(sorted(stored.items())):
    for index, record in enumerate(records):
      group = sampling.sample_group(record["pos"], record["neg"], SETTINGS[domain][1], 7, 0, d, index)
      assert group[0] in record["pos"] and not set(group[1:]) & set(record["pos"])


def test_domains_without_settings_and_indivisible_batches_are_named(pipeline_config):
  with pytest.raises(ValueError, match="domain 'economics' of the data has no"):
    BuildBatch(PipelineConfig(**{**pipeline_config.__dict__, "domain_settings": {"biology": (4, 4),
                                                                                 "earth_science": (4, 4)}}))
  with pytest.raises(ValueError, match="global batch 2 is not divisible by the 4 processes"):
    BuildBatch(pipeline_config, process_index=0, process_count=4)
  with pytest.raises(FileNotFoundError, match="not a converted dataset"):
    BuildBatch(PipelineConfig(str(FIXTURE), pipeline_config.tokenizer_dir, SETTINGS))


def scored_records(count: int, positives: int = 2, negatives: int = 5) -> list[dict]:
  """Records whose every passage text names its teacher score: `pos 3.1` scores 3.1, `neg 3.4` scores -3.4."""
  return [{"prompt": "p", "query": f"query {i}", "pos": [f"pos {i}.{k}" for k in range(positives)],
           "neg": [f"neg {i}.{k}" for k in range(negatives)],
           "pos_scores": [float(f"{i}.{k}") for k in range(positives)],
           "neg_scores": [-float(f"{i}.{k}") for k in range(negatives)]} for i in range(count)]


def write_jsonl(path: pathlib.Path, records: list[dict]) -> pathlib.Path:
  path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  return path


def test_teacher_scores_are_those_of_the_sampled_passages_in_their_order(tmp_path, qwen3_tokenizer_dir):
  """A dataset converted by `rejax data convert` from JSONL with pos_scores / neg_scores: each batch's
  teacher_scores [queries, G] holds the score of each passage the pipeline sampled (read back from its tokens), in
  the passages' order, for one process and for each half of two."""
  from transformers import AutoTokenizer

  write_jsonl(tmp_path / "biology-formatted.jsonl", scored_records(12))
  rejax_main(["data", "convert", "--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "out")])
  manifest = read_manifest(tmp_path / "out")
  assert manifest["domains"]["biology"]["scored"] == 12 and "first_unscored" not in manifest["domains"]["biology"]
  config = PipelineConfig(str(tmp_path / "out"), str(qwen3_tokenizer_dir), {"biology": (4, 4)},
                          max_query_length=32, max_passage_length=32, seed=3, teacher_scores=True)
  tokenizer = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))
  whole = take(iter(make_dataset(config, num_steps=3)), 3)
  halves = [take(iter(make_dataset(config, num_steps=3, process_index=p, process_count=2)), 3) for p in range(2)]
  for step, batch in enumerate(whole):
    scores = batch["teacher_scores"]
    assert scores.shape == (4, 4) and scores.dtype == np.float32
    texts = [tokenizer.decode(ids[mask.astype(bool)], skip_special_tokens=True).strip()
             for ids, mask in zip(batch["passage_ids"], batch["passage_mask"])]
    named = [float(t.split()[1]) * (1 if t.startswith("pos") else -1) for t in texts]
    assert all(t.startswith("pos") for t in texts[::4]) and not any(t.startswith("pos") for t in texts[1::4][1:])
    np.testing.assert_array_equal(scores.reshape(-1), np.float32(named))
    np.testing.assert_array_equal(np.concatenate([h[step]["teacher_scores"] for h in halves]), scores)
  without = take(iter(make_dataset(dataclasses.replace(config, teacher_scores=False), num_steps=1)), 1)[0]
  assert "teacher_scores" not in without
  np.testing.assert_array_equal(without["passage_ids"], whole[0]["passage_ids"])  # the same passages either way


def test_distilling_from_a_dataset_without_every_score_names_the_domain_and_record(tmp_path, qwen3_tokenizer_dir):
  """Refused when the pipeline is built (before any step compiles), from the manifest's count, or for a dataset
  converted before the count by reading its records."""
  records = scored_records(4)
  del records[2]["neg_scores"]
  write_jsonl(tmp_path / "biology-formatted.jsonl", scored_records(4))
  source = write_jsonl(tmp_path / "economics-formatted.jsonl", records)
  convert([str(tmp_path / "*.jsonl")], tmp_path / "out")
  config = PipelineConfig(str(tmp_path / "out"), str(qwen3_tokenizer_dir), {"biology": (2, 2), "economics": (2, 2)},
                          teacher_scores=True)
  message = (rf"^{tmp_path / 'out'}: domain 'economics' has 1 of 4 records without teacher scores \(pos_scores and "
             rf"neg_scores\), the first at {source}:3; distillation \(loss.distill_weight > 0\) needs them on every "
             "record$")
  with pytest.raises(InputError, match=message):
    BuildBatch(config)
  BuildBatch(dataclasses.replace(config, teacher_scores=False))  # without distillation the dataset is fine
  manifest_path = tmp_path / "out" / "manifest.json"
  manifest = json.loads(manifest_path.read_text())
  for info in manifest["domains"].values():
    info.pop("scored"), info.pop("first_unscored", None)
  manifest_path.write_text(json.dumps(manifest))
  with pytest.raises(InputError, match=message):
    BuildBatch(config)


def test_teacher_scores_must_be_finite_numbers(tmp_path):
  record = scored_records(1)[0]
  record["neg_scores"][1] = float("nan")
  source = write_jsonl(tmp_path / "biology-formatted.jsonl", [record])
  with pytest.raises(RecordError, match=rf"^{source}:1: `neg_scores` must be a list of finite numbers$"):
    convert([str(source)], tmp_path / "out")
