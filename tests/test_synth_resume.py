"""Resumable, sharded work units: an interrupted run resumes without repeats; shards split the units."""

from __future__ import annotations

import pathlib

import pytest

from synth.backends.scripted import ScriptedBackend
from synth.pipeline import run_all, run_stage
from synth.units import Shard, UnitRunner, read_jsonl
from tests.test_synth_stages import make_config, make_context, respond


class Crash(Exception):
  pass


def outputs(ctx):
  """Every stage's merged output and the formatted records."""
  got = {stage: read_jsonl(ctx.path(stage, "cs")) for stage in ("generate", "mine", "annotate", "reason")}
  got["format"] = read_jsonl(ctx.workdir / "format" / "cs-formatted.jsonl")
  return got


def sources_asked(backend: ScriptedBackend) -> list[str]:
  return [m[0]["content"].split("<document>\n")[1].split("\n")[0] for m, _ in backend.calls
          if "Requirements:" in m[0]["content"]]


def test_resume_after_a_crash_repeats_nothing_and_equals_an_uninterrupted_run(tmp_path):
  reference = make_context(make_config(tmp_path / "ref"))
  assert run_all(reference)

  config = make_config(tmp_path / "crash")
  batches = {"n": 0}

  def crashing(messages, sampling):  # dies inside the generator's 3rd batch (unit 2 of 6)
    if "Requirements:" in messages[0]["content"]:
      batches["n"] += 1
      if batches["n"] == 9:
        raise Crash()
    return respond(messages, sampling)

  first = make_context(config, crashing)
  with pytest.raises(Crash):
    run_all(first)
  units = pathlib.Path(config.workdir) / "generate" / "cs.units"
  assert sorted(p.name for p in units.glob("unit-*")) == ["unit-000000.jsonl", "unit-000001.jsonl"]

  second = make_context(config)
  assert run_all(second)
  done_before = sources_asked(first.backend("generator"))[:8]
  asked_after = sources_asked(second.backend("generator"))
  assert not set(done_before) & set(asked_after)  # finished units are not asked again
  assert len(asked_after) == 22 - 8  # the rest, including the lost in-flight unit
  assert outputs(second) == outputs(reference)
  qids = [q["qid"] for q in outputs(second)["generate"]]
  assert len(qids) == len(set(qids))

  third = make_context(config)
  assert run_all(third)  # everything done: no request at all
  assert third.backend("generator").calls == [] and third.backend("annotator").calls == []


def test_shards_split_the_units_and_the_last_one_merges(tmp_path):
  reference = make_context(make_config(tmp_path / "ref"))
  assert run_stage(reference, "generate")

  config = make_config(tmp_path / "sharded")
  shard1 = make_context(config, shard=Shard(1, 2))
  assert not run_stage(shard1, "generate")  # units of shard 0 missing: no merged output yet
  assert not shard1.path("generate", "cs").exists()
  shard0 = make_context(config, shard=Shard(0, 2))
  assert run_stage(shard0, "generate")
  asked0, asked1 = sources_asked(shard0.backend("generator")), sources_asked(shard1.backend("generator"))
  assert asked0 and asked1 and not set(asked0) & set(asked1) and len(asked0) + len(asked1) == 22
  assert read_jsonl(shard0.path("generate", "cs")) == read_jsonl(reference.path("generate", "cs"))


def test_changed_work_is_refused_not_mixed(tmp_path):
  runner = UnitRunner(tmp_path / "u", unit_size=2, progress=False)
  items = [{"k": i} for i in range(5)]
  assert len(runner.run(items, [str(i) for i in range(5)], lambda b: [dict(x) for x in b])) == 5
  with pytest.raises(RuntimeError, match="the work changed"):
    UnitRunner(tmp_path / "u", unit_size=3, progress=False).run(items, [str(i) for i in range(5)], list)
  with pytest.raises(RuntimeError, match="delete"):
    runner.run(items[:4], [str(i) for i in range(4)], list)


def test_shard_parse():
  assert Shard.parse("2/4") == Shard(2, 4) and Shard(2, 4).owns(6) and not Shard(2, 4).owns(5)
  for bad in ("4/4", "x", "1/0"):
    with pytest.raises(ValueError, match="--shard"):
      Shard.parse(bad)
