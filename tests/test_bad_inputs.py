"""Bad input never gives a wrong answer: `rejax encode / eval / export / train / data convert` on broken input
stop with one line naming the problem (file:line, field, flag, id or directory), exit 1 (argparse's usage errors
2), print no traceback, and leave every input and earlier output byte-identical.

Three classes, each a table of cases and one parametrized test, plus a few direct tests: inputs that used to give
a silently wrong result, exports that could lose data, and errors that used to surface as tracebacks. Most run
`rejax.cli.main` in this process; one subprocess checks what a user's terminal shows (and that `--debug` /
REJAX_DEBUG=1 bring the traceback back).
Two more classes of direct tests: a second `rejax train` on a workdir in use (refused, naming the holder; a stale or
killed holder's lock taken over), and writes a full disk or a read-only target refuses (one line, no temporary
left, the previous output intact, and the same command working once there is space).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

from rejax.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------- helpers
def write_jsonl(path: pathlib.Path, rows: list) -> pathlib.Path:
  """`path`, holding one line per row: a dict as JSON, a string as it is (for lines that are not valid rows)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
  return path


def write_beir(root: pathlib.Path, corpus=None, queries=None, qrels=None) -> pathlib.Path:
  """A small valid BEIR directory, with any of its three files replaced."""
  corpus = corpus or [{"_id": f"d{i}", "title": f"t{i}", "text": f"document number {i} about topic {i % 3}"}
                      for i in range(6)]
  queries = queries or [{"_id": "q1", "text": "topic 1"}, {"_id": "q2", "text": "topic 2"}]
  qrels = qrels or "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
  write_jsonl(root / "corpus.jsonl", corpus)
  write_jsonl(root / "queries.jsonl", queries)
  (root / "qrels").mkdir(parents=True, exist_ok=True)
  (root / "qrels" / "test.tsv").write_text(qrels)
  return root


def snapshot(*roots: pathlib.Path) -> dict[str, str]:
  """sha256 of every file under `roots` (files or directories), by path, and each directory's listing: what must
  not change (no byte, and no entry added or removed)."""
  digests = {}
  for root in roots:
    for path in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
      if path.is_file():
        digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
      elif path.is_dir():
        digests[f"{path}/"] = " ".join(sorted(p.name for p in path.iterdir()))
  return digests


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
  """(exit status, the one-line message, all of stderr) of `rejax ARGV` run in this process."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as info:
    main([str(a) for a in argv])
  stderr = capsys.readouterr().err
  code = info.value.code
  if isinstance(code, str):  # sys.exit(message): the interpreter prints the message to stderr, status 1
    return 1, code, stderr + code
  lines = stderr.strip().splitlines()
  return code, lines[-1] if lines else "", stderr


def check_failure(argv, capsys, status: int, fragment: str, unchanged: list[pathlib.Path]) -> str:
  """Runs `rejax ARGV`; asserts its status, a one-line `rejax CMD: error:` message holding `fragment`, no
  traceback, and that every file under `unchanged` is byte-identical afterwards. Returns the message."""
  before = snapshot(*unchanged)
  code, message, stderr = cli(argv, capsys)
  assert code == status, stderr
  assert "\n" not in message and message.startswith(f"rejax {argv[0]}"), message
  assert ": error: " in message, message
  assert fragment in message, message
  assert "Traceback" not in stderr
  assert snapshot(*unchanged) == before
  return message


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
  """Errors as users see them, even when the suite runs with REJAX_DEBUG=1."""
  monkeypatch.delenv("REJAX_DEBUG", raising=False)


@pytest.fixture(scope="module")
def model_dir(tiny_model_factory) -> pathlib.Path:
  return tiny_model_factory("qwen3_tied")[0]


@pytest.fixture
def encode_args(tmp_path, model_dir):
  """`rejax encode` arguments on tmp_path/in.jsonl, with an earlier output tmp_path/out.npy that must survive."""
  np.save(tmp_path / "out.npy", np.ones((2, 3), np.float32))
  return ["encode", "--model", model_dir, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.npy",
          "--max-length", "16", "--batch-size", "4"]


def broken_tokenizer(model_dir: pathlib.Path, out: pathlib.Path, how: str) -> pathlib.Path:
  """A copy of the model directory whose tokenizer is missing, or whose tokenizer.json lost most of its vocab."""
  out.mkdir()
  for f in ("config.json", "model.safetensors"):
    (out / f).symlink_to(model_dir / f)
  if how == "truncated vocab":
    shutil.copy(model_dir / "tokenizer_config.json", out)
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok["model"]["vocab"], tok["model"]["merges"] = dict(list(tok["model"]["vocab"].items())[:300]), []
    (out / "tokenizer.json").write_text(json.dumps(tok))
  return out


# The case tables, one per class: name -> a function that writes its input and returns what to run and expect.
WRONG_RESULTS: dict[str, Callable] = {}
EXPORT_REFUSALS: dict[str, Callable] = {}
TRACEBACKS: dict[str, Callable] = {}


def case(table: dict, name: str):
  """A decorator registering the case function in `table` under `name`."""

  def register(fn: Callable) -> Callable:
    table[name] = fn
    return fn

  return register


# ------------------------------------------------------------------ class 1: silently wrong results, now refused
# Each case writes its input under `t` (tmp_path) and returns (argv, exit status, what the message must say);
# `e` is the encode command line of the `encode_args` fixture.
def beir_eval(t: pathlib.Path, **files) -> list:
  """`rejax eval --model bm25` on a BEIR directory t/data with `files` replaced (see write_beir)."""
  data = write_beir(t / "data", **files)
  return ["eval", "--model", "bm25", "--dataset", data, "--output", t / "RESULTS.json"]


def encode_texts(t: pathlib.Path, e: list, rows: list, *flags: str) -> list:
  """The encode command line `e` on t/in.jsonl holding `rows`, with `flags` added."""
  write_jsonl(t / "in.jsonl", rows)
  return [*e, *flags]


def with_model(e: list, model: pathlib.Path | str) -> list:
  """The encode command line `e` with another --model."""
  return [*e[:2], model, *e[3:]]


@case(WRONG_RESULTS, "encode text is a number")  # embedded as the string "5"
def _(t, e):
  argv = encode_texts(t, e, [{"text": "fine"}, {"text": 5}])
  return argv, 1, "in.jsonl:2: field `text` must be a string, got an integer 5"


@case(WRONG_RESULTS, "encode text is a list")  # embedded as "['a']"
def _(t, e):
  return encode_texts(t, e, [{"text": ["a"]}]), 1, "in.jsonl:1: field `text` must be a string, got a list"


@case(WRONG_RESULTS, "encode negative batch size")  # wrote zero rows with exit 0
def _(t, e):
  return encode_texts(t, e, [{"text": "a"}], "--batch-size", "-1"), 2, "argument --batch-size: must be >= 1, got -1"


@case(WRONG_RESULTS, "encode zero max length")
def _(t, e):
  return encode_texts(t, e, [{"text": "a"}], "--max-length", "0"), 2, "argument --max-length: must be >= 2, got 0"


@case(WRONG_RESULTS, "eval zero top-k")
def _(t, e):
  return [*beir_eval(t), "--top-k", "0"], 2, "argument --top-k: must be >= 1, got 0"


@case(WRONG_RESULTS, "encode tokenizer missing")  # loaded a 1-token tokenizer: every text embedded alike
def _(t, e):
  argv = with_model(encode_texts(t, e, [{"text": "a"}]), broken_tokenizer(e[2], t / "m", "missing"))
  return argv, 1, "m: no tokenizer files"


@case(WRONG_RESULTS, "encode tokenizer half written")
def _(t, e):
  argv = with_model(encode_texts(t, e, [{"text": "a"}]), broken_tokenizer(e[2], t / "m", "truncated vocab"))
  return argv, 1, "m: the tokenizer has only 326 tokens for config.json's vocab_size 151936"


@case(WRONG_RESULTS, "qrels query not in queries")  # scored 0 silently while the console counted the others
def _(t, e):
  argv = beir_eval(t, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td2\t1\n")
  return argv, 1, f"1 query ids of {t / 'data/qrels/test.tsv'} are not in {t / 'data/queries.jsonl'}, e.g. ['q9']"


@case(WRONG_RESULTS, "corpus duplicate id")  # was last-one-wins
def _(t, e):
  argv = beir_eval(t, corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}, {"_id": "d1", "text": "c"}])
  return argv, 1, f"corpus.jsonl:3: duplicate _id 'd1' (first at {t / 'data/corpus.jsonl'}:1)"


@case(WRONG_RESULTS, "queries duplicate id (int and str)")
def _(t, e):
  argv = beir_eval(t, queries=[{"_id": 1, "text": "a"}, {"_id": "1", "text": "b"}],
                   qrels="query-id\tcorpus-id\tscore\n1\td1\t1\n")
  return argv, 1, "queries.jsonl:2: duplicate _id '1'"


@case(WRONG_RESULTS, "qrels duplicate judgment")
def _(t, e):
  argv = beir_eval(t, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\n")
  return argv, 1, "test.tsv:3: duplicate judgment of query 'q1', doc 'd1' (first at line 2)"


@case(WRONG_RESULTS, "corpus id is a boolean")
def _(t, e):
  argv = beir_eval(t, corpus=[{"_id": True, "text": "a"}])
  return argv, 1, "corpus.jsonl:1: field `_id` must be a string or an integer, got a boolean True"


@case(WRONG_RESULTS, "corpus title is a list")
def _(t, e):
  argv = beir_eval(t, corpus=[{"_id": "d1", "title": ["x"], "text": "a"}])
  return argv, 1, "corpus.jsonl:1: field `title` must be a string, got a list"


@case(WRONG_RESULTS, "query text is null")
def _(t, e):
  argv = beir_eval(t, queries=[{"_id": "q1", "text": None}])
  return argv, 1, "queries.jsonl:1: field `text` must be a string, got null"


@pytest.mark.parametrize("name", WRONG_RESULTS)
def test_input_that_gave_a_wrong_result_is_refused(name, tmp_path, encode_args, capsys):
  argv, status, fragment = WRONG_RESULTS[name](tmp_path, encode_args)
  check_failure(argv, capsys, status, fragment, unchanged=[tmp_path])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("num_docs", [50, 3000])
def test_approximate_index_returns_every_query_its_full_top_k(kind, num_docs, capsys):
  """`--index ivf` once made one cell per document of a small corpus and probed one: ~1 hit per query."""
  from rejax.eval.search import build_index, search

  rng = np.random.default_rng(0)
  docs = rng.standard_normal((num_docs, 16)).astype(np.float32)
  docs /= np.linalg.norm(docs, axis=1, keepdims=True)
  ids = [f"d{i}" for i in range(num_docs)]
  run = search(build_index(docs, kind), ids, docs[:8], [f"q{i}" for i in range(8)], k=100)
  assert [len(hits) for hits in run.values()] == [min(100, num_docs)] * 8
  assert all(f"d{i}" in run[f"q{i}"] for i in range(8))  # each query is its own document: found
  if kind == "ivf":
    assert "ivf index:" in capsys.readouterr().err  # the clamp is said, not silent


def test_ivf_eval_on_a_small_corpus_ranks_like_flat(tmp_path, model_dir):
  """The CLI end to end: on a 40-document corpus `--index ivf` gives flat's complete rankings."""
  corpus = [{"_id": f"d{i}", "text": f"document {i} on subject {i % 5} with words {i * 7 % 11}"} for i in range(40)]
  queries = [{"_id": f"q{i}", "text": f"subject {i}"} for i in range(5)]
  qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(5))
  data = write_beir(tmp_path / "data", corpus, queries, qrels)
  runs = {}
  for kind in ("flat", "ivf"):
    main(["eval", "--model", str(model_dir), "--dataset", str(data), "--output", str(tmp_path / f"{kind}.json"),
          "--run-out", str(tmp_path / f"{kind}.trec"), "--index", kind, "--top-k", "30", "--max-length", "32",
          "--cache-dir", str(tmp_path / "cache")])
    runs[kind] = (tmp_path / f"{kind}.trec").read_text().splitlines()
  assert len(runs["ivf"]) == 5 * 30
  assert [line.split()[:3] for line in runs["ivf"]] == [line.split()[:3] for line in runs["flat"]]


# --------------------------------------------------------------------------- class 2: exports that lose data
@pytest.fixture
def run_workdir(tmp_path, model_dir) -> pathlib.Path:
  """A `rejax train` workdir as far as export's output checks read it: config.json (model.path = the tiny model,
  export_dir `export`), a checkpoints/ entry and an earlier export."""
  from rejax.train.config import load_config_file, to_json

  config = load_config_file(str(ROOT / "configs" / "tiny.py"))
  config.unlock()
  config.model.path = str(model_dir)
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "4").mkdir(parents=True)
  (workdir / "checkpoints" / "4" / "state").write_bytes(b"weights")
  (workdir / "config.json").write_text(to_json(config) + "\n")
  (workdir / "export").mkdir()
  (workdir / "export" / "model.safetensors").write_bytes(b"old export")
  return workdir


# Each case returns (--output, further flags, what the message must say) for the workdir `w` and base model `m`.
@case(EXPORT_REFUSALS, "output is the workdir")
def _(w, m, t):
  return w, [], f"--output {w} is (or holds) the run's workdir"


@case(EXPORT_REFUSALS, "output holds the workdir, even with --overwrite")
def _(w, m, t):
  return t, ["--overwrite"], f"--output {t} is (or holds) the run's workdir"


@case(EXPORT_REFUSALS, "output inside the workdir, even with --overwrite")
def _(w, m, t):
  return w / "checkpoints", ["--overwrite"], f"is inside the run's workdir {w}; only its export_dir"


@case(EXPORT_REFUSALS, "output is the base model, even with --overwrite")
def _(w, m, t):
  return m, ["--overwrite"], "is the base model directory"


@case(EXPORT_REFUSALS, "output is a non-empty directory")
def _(w, m, t):
  (t / "other").mkdir()
  (t / "other" / "notes.txt").write_text("keep")
  return t / "other", [], f"--output {t / 'other'}: not empty; export to a new directory, or pass --overwrite"


@case(EXPORT_REFUSALS, "run's own export without --overwrite")
def _(w, m, t):
  return w / "export", [], "export: not empty"


@case(EXPORT_REFUSALS, "output is a file")
def _(w, m, t):
  (t / "file").write_text("x")
  return t / "file", ["--overwrite"], "file: is a file, not a directory"


@pytest.mark.parametrize("name", EXPORT_REFUSALS)
def test_export_that_would_lose_data_is_refused(name, run_workdir, model_dir, tmp_path, capsys):
  output, extra, fragment = EXPORT_REFUSALS[name](run_workdir, model_dir, tmp_path)
  check_failure(["export", "--workdir", run_workdir, "--output", output, *extra], capsys, 1, fragment,
                unchanged=[tmp_path, model_dir])


@pytest.fixture(scope="module")
def tiny_decoder(model_dir):
  from rejax.hf.load import load_decoder

  return load_decoder(model_dir)[0]


def test_overwrite_replaces_the_old_directory_whole(tiny_decoder, model_dir, tmp_path):
  from rejax.errors import ExportError
  from rejax.hf.export import export_model

  out = tmp_path / "out"
  out.mkdir()
  (out / "model-00001-of-00009.safetensors").write_bytes(b"stale shard")  # would shadow the new weights
  (out / "notes.txt").write_text("old")
  with pytest.raises(ExportError, match="out: not empty"):
    export_model(tiny_decoder, out, base_dir=model_dir)
  export_model(tiny_decoder, out, base_dir=model_dir, overwrite=True)
  assert not (out / "notes.txt").exists() and not (out / "model-00001-of-00009.safetensors").exists()
  assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old directory left beside it


def test_a_failed_export_leaves_the_previous_one_untouched(tiny_decoder, model_dir, tmp_path, monkeypatch):
  from rejax.hf import export

  out = export.export_model(tiny_decoder, tmp_path / "out", base_dir=model_dir)
  before = snapshot(tmp_path)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # as a Ctrl-C after the weights are written

  monkeypatch.setattr(export, "write_sentence_transformers_files", killed)
  with pytest.raises(KeyboardInterrupt):
    export.export_model(tiny_decoder, out, base_dir=model_dir, overwrite=True)
  assert snapshot(tmp_path) == before  # the old export, whole; no half directory beside it


def test_train_loop_replaces_its_own_export_without_a_flag(run_workdir, model_dir, tmp_path):
  """`rejax train` re-run on a finished workdir (resume, `make demo`) exports again into workdir/export; an
  absolute export_dir that holds something other than an export fails when the run starts."""
  from rejax.errors import ExportError
  from rejax.train.export_run import check_output, check_own_export_dir, run_config

  config = run_config(run_workdir)
  assert check_own_export_dir(config, run_workdir, model_dir) is True
  check_output(run_workdir / "export", run_workdir, config, model_dir, overwrite=True)  # what export_run checks
  config.export_dir = str(tmp_path / "elsewhere")
  (tmp_path / "elsewhere").mkdir()
  (tmp_path / "elsewhere" / "thesis.tex").write_text("keep")
  with pytest.raises(ExportError, match="export_dir .*elsewhere: not empty"):
    check_own_export_dir(config, run_workdir, model_dir)
  config.export_dir = "checkpoints"
  with pytest.raises(ExportError, match="would replace the run's checkpoints"):
    check_own_export_dir(config, run_workdir, model_dir)


# ------------------------------------------------------------------- class 3: tracebacks, now one-line errors
def gzip_file(path: pathlib.Path, rows: list[dict], truncate: bool = False) -> pathlib.Path:
  """`rows` as gzipped JSONL (repeated, so there is something to cut), cut in half when `truncate`."""
  data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode() * 50)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data[: len(data) // 2] if truncate else data)
  return path


def bright_eval(t: pathlib.Path) -> list:
  """`rejax eval --model bm25` on the BRIGHT task pony of t/bright (its examples file written by the case)."""
  return ["eval", "--model", "bm25", "--bright", t / "bright", "--tasks", "pony", "--output", t / "RESULTS.json"]


BRIGHT_EXAMPLE = {"id": "0", "query": "q", "gold_ids": ["a"], "gold_ids_long": ["a"], "excluded_ids": []}


def convert_input(t: pathlib.Path) -> list:
  """`rejax data convert` of t/x-formatted.jsonl (written by the case) to t/ds."""
  return ["data", "convert", "--input", t / "x-formatted.jsonl", "--output", t / "ds"]


@case(TRACEBACKS, "empty input file")
def _(t, e):
  (t / "in.jsonl").write_text("\n\n")
  return e, 1, "in.jsonl: empty file (no rows)"


@case(TRACEBACKS, "input is a directory")
def _(t, e):
  (t / "in.jsonl").mkdir()
  return e, 1, "in.jsonl: is a directory, not a file"


@case(TRACEBACKS, "invalid UTF-8")
def _(t, e):
  (t / "in.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
  return e, 1, "in.jsonl:2: invalid UTF-8 (byte 0xe9"


@case(TRACEBACKS, "lone surrogate")
def _(t, e):
  (t / "in.jsonl").write_text('{"text": "a\\ud800b"}\n')
  return e, 1, "in.jsonl:1: field `text` holds a lone surrogate '\\ud800' at character 1"


@case(TRACEBACKS, "truncated .gz")
def _(t, e):
  gzip_file(t / "bright/examples/pony.jsonl.gz", [BRIGHT_EXAMPLE], truncate=True)
  return bright_eval(t), 1, "pony.jsonl.gz: not a complete gzip file"


@case(TRACEBACKS, "not gzip .gz")
def _(t, e):
  write_jsonl(t / "bright/examples/pony.jsonl.gz", [BRIGHT_EXAMPLE])
  return bright_eval(t), 1, "pony.jsonl.gz: not a complete gzip file (Not a gzipped file"


@case(TRACEBACKS, "number overflows a flag")
def _(t, e):
  return encode_texts(t, e, [{"text": "a"}], "--batch-size", "1" + "0" * 30), 2, "argument --batch-size: must be <= "


@case(TRACEBACKS, "number overflows JSON")
def _(t, e):
  argv = encode_texts(t, e, ['{"text": "a", "n": ' + "9" * 5000 + "}"])
  return argv, 1, "in.jsonl:1: invalid JSON: Exceeds the limit"


@case(TRACEBACKS, "number overflows a qrels grade")
def _(t, e):
  argv = beir_eval(t, qrels="query-id\tcorpus-id\tscore\nq1\td1\t" + "9" * 400 + "\n")
  return argv, 1, "test.tsv:2: the score of query 'q1', doc 'd1' is out of range"


@case(TRACEBACKS, "config file syntax error")
def _(t, e):
  (t / "cfg.py").write_text("def get_config():\n  return (\n\n")
  return ["train", "--config", t / "cfg.py", "--workdir", t / "w"], 1, "cfg.py:2: syntax error: '(' was never closed"


@case(TRACEBACKS, "workdir is a file (train)")
def _(t, e):
  (t / "w").write_text("x")
  argv = ["train", "--config", ROOT / "configs/tiny.py", "--workdir", t / "w"]
  return argv, 1, f"--workdir {t / 'w'}: is a file, not a directory"


@case(TRACEBACKS, "workdir is a file (export)")
def _(t, e):
  (t / "w").write_text("x")
  return ["export", "--workdir", t / "w", "--output", t / "o"], 1, f"--workdir {t / 'w'}: is a file"


@case(TRACEBACKS, "unknown asset")  # rejax.assets raises AssetError
def _(t, e):
  argv = with_model(encode_texts(t, e, [{"text": "a"}]), "asset:nope")
  return argv, 1, "asset:nope: unknown asset 'nope'; known: qwen3-tokenizer"


@case(TRACEBACKS, "data convert: input is a directory")
def _(t, e):
  (t / "x-formatted.jsonl").mkdir()
  return convert_input(t), 1, "x-formatted.jsonl: is a directory, not a file"


@case(TRACEBACKS, "data convert: truncated .gz")
def _(t, e):
  record = {"prompt": "p", "query": "q", "pos": ["a"], "neg": ["b"]}
  gzip_file(t / "x-formatted.jsonl.gz", [record] * 100, truncate=True)
  argv = ["data", "convert", "--input", t / "x-formatted.jsonl.gz", "--output", t / "ds"]
  return argv, 1, "x-formatted.jsonl.gz: not a complete gzip file (Compressed file ended"


@case(TRACEBACKS, "data convert: empty input")
def _(t, e):
  (t / "x-formatted.jsonl").write_text("")
  return convert_input(t), 1, "x-formatted.jsonl: empty file (no records)"


@pytest.mark.parametrize("name", TRACEBACKS)
def test_error_is_one_line_not_a_traceback(name, tmp_path, encode_args, capsys):
  argv, status, fragment = TRACEBACKS[name](tmp_path, encode_args)
  message = check_failure(argv, capsys, status, fragment, unchanged=[tmp_path])
  if argv[0] == "data":
    assert message.startswith("rejax data convert: error: ")


def test_the_terminal_shows_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
  """What a user sees (a real process): the line alone and status 1; with REJAX_DEBUG=1 or --debug (before or
  after the subcommand), the exception itself and its traceback."""
  (tmp_path / "in.jsonl").mkdir()
  argv = ["encode", "--model", "asset:qwen3-tokenizer", "--input", str(tmp_path / "in.jsonl"),
          "--output", str(tmp_path / "out.npy")]
  env = {k: v for k, v in os.environ.items() if k != "REJAX_DEBUG"}
  cmd = [sys.executable, "-m", "rejax.cli", *argv]
  plain = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert plain.returncode == 1 and plain.stdout == ""
  assert plain.stderr == f"rejax encode: error: {tmp_path / 'in.jsonl'}: is a directory, not a file\n"
  debug = subprocess.run(cmd, capture_output=True, text=True, env={**env, "REJAX_DEBUG": "1"}, cwd=ROOT, timeout=300)
  assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError: " in debug.stderr
  from rejax.errors import InputError

  for flags in (argv + ["--debug"], ["--debug"] + argv):
    with pytest.raises(InputError, match="is a directory"):
      main(flags)


def test_a_bug_is_one_line_too_and_says_how_to_see_it(tmp_path, monkeypatch, capsys):
  import rejax.cli

  def buggy(args):
    raise TypeError("unsupported operand")

  monkeypatch.setattr(rejax.cli, "cmd_encode", buggy)
  code, message, stderr = cli(["encode", "--model", "m", "--input", tmp_path / "i.jsonl", "--output", tmp_path / "o"],
                              capsys)
  assert code == 1 and "Traceback" not in stderr
  assert message == ("rejax encode: internal error: TypeError: unsupported operand (rerun with --debug or "
                     "REJAX_DEBUG=1 for the traceback)")



def test_a_jax_runtime_error_is_internal_not_the_users(tmp_path, monkeypatch, capsys):
  """JaxRuntimeError is a RuntimeError, which a command otherwise reports as the user's error: the device or the
  compiler failing (JAX's own error type, as XLA raises it for an allocation it cannot make) is an internal error."""
  import jax

  import rejax.cli

  def runs_out_of_device_memory(args):
    raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1099511627776 bytes.")

  monkeypatch.setattr(rejax.cli, "cmd_encode", runs_out_of_device_memory)
  code, message, stderr = cli(["encode", "--model", "m", "--input", tmp_path / "i.jsonl", "--output", tmp_path / "o"],
                              capsys)
  assert code == 1 and "Traceback" not in stderr
  assert message.startswith("rejax encode: internal error: ") and message.endswith(
      "(rerun with --debug or REJAX_DEBUG=1 for the traceback)"), message


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_npy", "wrong_shape"])
def test_a_damaged_embedding_cache_file_is_recomputed_and_replaced(tmp_path, capsys, damage):
  from rejax.eval.cache import cached

  good = np.arange(12, dtype=np.float32).reshape(3, 4)
  path = tmp_path / "k.npy"
  np.save(path, good)
  raw = path.read_bytes()
  path.write_bytes({"truncated": raw[: len(raw) - 10], "empty": b"", "not_npy": b"hello",
                    "wrong_shape": raw}[damage])
  if damage == "wrong_shape":
    np.save(path, np.arange(3, dtype=np.float32))
  calls = []
  out = cached(tmp_path, "k", lambda: calls.append(1) or good, "corpus")
  assert calls == [1] and np.array_equal(out, good)  # recomputed, not raised and not returned half
  err = capsys.readouterr().err
  assert f"cached embeddings {path} are " in err and "recomputing" in err
  assert np.array_equal(np.load(path), good)  # replaced whole: the next run reads it from the cache
  assert np.array_equal(cached(tmp_path, "k", lambda: 1 / 0, "corpus"), good)


# ------------------------------------------------------------------- class 4: two runs on one workdir
# `rejax train` holds WORKDIR/run.lock (rejax.train.lock): a second run on the workdir stops at once, naming the
# holder; a lock whose holder is gone (killed: the kernel dropped its flock) is taken over with a warning.
TINY = ROOT / "configs" / "tiny.py"
MESH_8 = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]  # the suite's 8 CPU devices


def train_argv(workdir: pathlib.Path, *overrides: str) -> list:
  """`rejax train` of configs/tiny.py on the suite's 8 devices."""
  return ["train", "--config", TINY, "--workdir", workdir, *MESH_8, *overrides]


# Past the lock, the run fails at once: what a lock test needs without the cost of training.
NO_MODEL = "--config.model.path=/no/such/model"


@pytest.fixture
def lock_holder():
  """Starts a process that takes the lock of a workdir (`rejax.train.lock.RunLock`) and holds it until its stdin
  closes; yields the function that starts one and returns its Popen."""
  procs = []

  def start(workdir: pathlib.Path) -> subprocess.Popen:
    code = ("import sys; from rejax.train.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(workdir)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout.readline().strip() == "held"
    return proc

  yield start
  for proc in procs:
    if proc.poll() is None:
      proc.stdin.close()
      proc.wait(timeout=60)


def dead_pid() -> int:
  """The pid of a process that has ended."""
  return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                            text=True, check=True).stdout)


def stale_lock(workdir: pathlib.Path, pid: int, host: str | None = None) -> pathlib.Path:
  """WORKDIR/run.lock as a holder `pid` left it (no flock held), with its workdir; returns the lock file."""
  import socket

  from rejax.train.lock import LOCK_FILE

  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                               "started": "2024-01-02T03:04:05+00:00",
                                               "workdir": str(workdir.resolve()), "argv": []}) + "\n")
  return workdir / LOCK_FILE


def test_a_second_run_on_a_held_workdir_is_refused_at_once_naming_the_holder(tmp_path, lock_holder, capsys):
  import socket

  workdir = tmp_path / "run"
  holder = lock_holder(workdir)
  since = json.loads((workdir / "run.lock").read_text())["started"]
  message = check_failure(train_argv(workdir), capsys, 1,
                          f"--workdir {workdir}: in use by another rejax train (pid {holder.pid} on "
                          f"{socket.gethostname()}, since {since})", unchanged=[tmp_path])
  assert "run.lock" in message  # and nothing was loaded or written: tmp_path is byte-identical (base_model, data)


def test_a_stale_lock_is_taken_over_with_a_warning_and_released_on_error(tmp_path, capsys):
  from rejax.train.lock import RunLock

  workdir = tmp_path / "run"
  pid = dead_pid()
  lock_file = stale_lock(workdir, pid)
  code, message, stderr = cli(train_argv(workdir, NO_MODEL), capsys)
  assert code == 1 and "/no/such/model: not a model directory" in message  # past the lock: the run went on
  assert (f"warning: {lock_file}: taking over the stale lock of pid {pid} on " in stderr
          and "since 2024-01-02T03:04:05+00:00" in stderr)
  assert "Traceback" not in stderr
  assert lock_file.read_text() == ""  # released, although the run failed
  RunLock(workdir).acquire().release()  # and free


def test_a_kill_9_holder_does_not_block_the_next_run(tmp_path, lock_holder, capsys):
  import signal

  workdir = tmp_path / "run"
  holder = lock_holder(workdir)
  holder.send_signal(signal.SIGKILL)  # no release: the body stays, the kernel drops the flock
  holder.wait(timeout=60)
  assert json.loads((workdir / "run.lock").read_text())["pid"] == holder.pid
  code, message, stderr = cli(train_argv(workdir, NO_MODEL), capsys)
  assert code == 1 and "not a model directory" in message and "in use" not in message
  assert f"taking over the stale lock of pid {holder.pid}" in stderr


def test_a_run_that_fails_before_writing_leaves_no_workdir(tmp_path, capsys):
  """The lock creates the workdir; released on an early error, it removes it again (nothing else was written)."""
  check_failure(train_argv(tmp_path / "new", NO_MODEL), capsys, 1, "not a model directory", unchanged=[tmp_path])
  assert not (tmp_path / "new").exists()


def test_a_live_holder_named_in_the_lock_is_refused_even_without_flock(tmp_path):
  """A file system that does not enforce flock: the body names a process of this host that runs (and is older
  than the lock) on this workdir. A copied workdir (another path in the body) or a reused pid is stale instead."""
  import socket

  from rejax.train.lock import Holder, RunLock, WorkdirInUseError

  workdir = tmp_path / "run"
  stale_lock(workdir, os.getppid())
  body = json.loads((workdir / "run.lock").read_text())
  body["started"] = "2999-01-01T00:00:00+00:00"  # the holder started before it took the lock
  (workdir / "run.lock").write_text(json.dumps(body))
  with pytest.raises(WorkdirInUseError, match=f"pid {os.getppid()} on {socket.gethostname()}.*does not enforce"):
    RunLock(workdir).acquire()
  copied = Holder(pid=os.getppid(), host=socket.gethostname(), started=body["started"], workdir="/elsewhere")
  reused = Holder(pid=os.getppid(), host=socket.gethostname(), started="2000-01-01T00:00:00+00:00")
  other_host = Holder(pid=os.getppid(), host="another-host", started=body["started"])
  assert not any(h.still_running(workdir) for h in (copied, reused, other_host))


def test_only_process_0_of_a_multi_host_run_takes_the_lock(tmp_path, lock_holder, monkeypatch):
  """The processes of one run never refuse each other: process 1 touches no lock file; it stops only when
  process 0 reports (by a broadcast) that another run holds the workdir."""
  import jax
  from jax.experimental import multihost_utils

  from rejax.train.lock import WorkdirInUseError, lock_workdir

  verdict = {"refused": 0}
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  monkeypatch.setattr(multihost_utils, "broadcast_one_to_all", lambda value: verdict["refused"])
  workdir = tmp_path / "run"
  lock_holder(workdir)  # held by "another run": process 1 does not look
  assert lock_workdir(workdir) is None
  verdict["refused"] = 1
  with pytest.raises(WorkdirInUseError, match="process 0 of this run could not lock it"):
    lock_workdir(workdir)


LOCK_IN_TWO_PROCESSES = """
import os, sys
import jax
from rejax.train import distributed
from rejax.train.lock import lock_workdir, releases_workdir_lock

@releases_workdir_lock
def run(workdir):
  lock = lock_workdir(workdir)
  print(f"locked={lock is not None}", flush=True)

distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
try:
  run(sys.argv[3])
except RuntimeError as e:
  print(f"refused: {e}", flush=True)
"""


def test_the_two_processes_of_one_run_share_the_lock_and_are_refused_together(tmp_path, lock_holder):
  """Real jax.distributed processes (2 on this host): process 0 takes the lock and process 1 does not refuse;
  when another run holds the workdir, both stop, process 0 naming the holder."""
  import socket

  def both(workdir: pathlib.Path) -> list[str]:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      coordinator = f"127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", LOCK_IN_TWO_PROCESSES, coordinator, str(i), str(workdir)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in range(2)]
    return [p.communicate(timeout=300)[0].strip().splitlines()[-1] for p in procs]

  assert both(tmp_path / "free") == ["locked=True", "locked=False"]
  holder = lock_holder(tmp_path / "held")
  first, second = both(tmp_path / "held")
  assert first.startswith(f"refused: --workdir {tmp_path / 'held'}: in use by another rejax train (pid {holder.pid} ")
  assert second == f"refused: --workdir {tmp_path / 'held'}: process 0 of this run could not lock it (see its error)"


# ------------------------------------------------------------ class 5: a disk that cannot take the write
# Each write goes to a temporary sibling renamed into place (rejax.io): a full disk (ENOSPC) or a read-only target
# (EROFS, EACCES) is one line naming what and where (and the bytes needed), removes the temporary, leaves the
# previous output as it was; once there is space, the same command works. The faults are injected in this process.
def no_temporaries(root: pathlib.Path) -> list[str]:
  """The temporaries left under `root`: rejax.io's siblings and Orbax's unfinished saves."""
  return [str(p) for p in root.rglob("*") if any(k in p.name for k in (".tmp", ".partial", ".old-", "-tmp"))]


def full_disk_file(real, fail_after: int = 100, code: int = 28):
  """A writable binary file that writes `fail_after` bytes, then raises OSError(code) (28: ENOSPC)."""

  class Full:
    def __init__(self, f):
      self.f, self.written = f, 0

    def write(self, data):
      room = fail_after - self.written
      if len(data) > room:
        self.f.write(bytes(data[:max(room, 0)]))
        self.f.flush()
        raise OSError(code, os.strerror(code))
      self.written += len(data)
      return self.f.write(data)

    def __getattr__(self, name):
      return getattr(self.f, name)

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.f.close()

  return Full(real)


def disk_full_for_io(monkeypatch, fail_after: int = 100) -> None:
  """rejax.io's file writes: the disk fills up after `fail_after` bytes."""
  import builtins

  import rejax.io

  monkeypatch.setattr(rejax.io, "open", lambda path, mode="r", *a, **k: full_disk_file(
      builtins.open(path, mode, *a, **k), fail_after), raising=False)


def read_only_for_io(monkeypatch, directory: pathlib.Path) -> None:
  """`directory` cannot be written: chmod 0o555 where that stops this user (not root); else rejax.io's opens
  there fail with EROFS, as on a read-only mount."""
  import builtins
  import errno

  import rejax.io

  if os.geteuid() != 0:
    directory.chmod(0o555)  # given back by the `writable_again` fixture
    return

  def read_only_open(path, mode="r", *a, **k):
    if "w" in mode and pathlib.Path(path).parent == directory:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return builtins.open(path, mode, *a, **k)

  monkeypatch.setattr(rejax.io, "open", read_only_open, raising=False)


@pytest.fixture
def writable_again(tmp_path):
  """Gives tmp_path (and what is under it) its write permission back after a read-only case."""
  yield
  for path in [tmp_path, *tmp_path.rglob("*")]:
    if path.is_dir() and not path.is_symlink():
      path.chmod(0o755)


def test_encode_on_a_full_disk_is_one_line_and_keeps_the_previous_output(tmp_path, encode_args, capsys,
                                                                          monkeypatch):
  write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}, {"text": "b"}])
  disk_full_for_io(monkeypatch)
  message = check_failure(encode_args, capsys, 1, f"could not write embeddings {tmp_path / 'out.npy'}: No space "
                          "left on device (ENOSPC); it needs ", unchanged=[tmp_path])
  assert " free there; the previous one is unchanged; free some space" in message
  assert no_temporaries(tmp_path) == []
  monkeypatch.undo()  # space is freed: the same command works
  main([str(a) for a in encode_args])
  assert np.load(tmp_path / "out.npy").shape[0] == 2 and no_temporaries(tmp_path) == []


def test_encode_to_a_read_only_directory_is_one_line(tmp_path, encode_args, capsys, monkeypatch, writable_again):
  write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
  read_only_for_io(monkeypatch, tmp_path)
  reason = "Permission denied (EACCES)" if os.geteuid() else "Read-only file system (EROFS)"
  check_failure(encode_args, capsys, 1, f"could not write embeddings {tmp_path / 'out.npy'}: {reason}",
                unchanged=[tmp_path])
  assert no_temporaries(tmp_path) == []


def test_base_model_copy_on_a_full_disk_leaves_no_half_model(tmp_path, capsys, monkeypatch):
  """The workdir's base_model (tokenizer files + config.json) is built in a hidden sibling: a copy cut by a full
  disk leaves neither base_model nor the sibling, and the workdir the run created is gone again."""
  import errno

  real_copy = shutil.copy

  def copy_half(src, dst, *a, **k):
    pathlib.Path(dst).write_bytes(pathlib.Path(src).read_bytes()[:1000])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

  monkeypatch.setattr(shutil, "copy", copy_half)
  workdir = tmp_path / "run"
  check_failure(train_argv(workdir), capsys, 1, f"could not write the base model {workdir / 'base_model'}: No space "
                "left on device (ENOSPC); it needs ", unchanged=[tmp_path])
  assert not workdir.exists()
  monkeypatch.setattr(shutil, "copy", real_copy)  # space is freed: the next run builds it whole
  from rejax.train.config import load_config_file
  from rejax.train.run_inputs import base_model_dir

  base = base_model_dir(load_config_file(str(TINY)), workdir)
  assert (base / "config.json").is_file() and (base / "tokenizer.json").is_file()
  assert sorted(p.name for p in workdir.iterdir()) == ["base_model"]


def test_metrics_truncation_on_a_full_disk_keeps_the_file(tmp_path, monkeypatch):
  """A resumed run rewrites metrics.jsonl without the steps past its checkpoint; a full disk keeps it whole."""
  from rejax.io import WriteError
  from rejax.train.logger import RunLogger

  metrics = tmp_path / "metrics.jsonl"
  write_jsonl(metrics, [{"step": s, "loss": 1.0 / s} for s in range(1, 9)])
  (tmp_path / "metrics.jsonl.tmp").write_text("left by an earlier version")
  before = snapshot(metrics)
  disk_full_for_io(monkeypatch)
  with pytest.raises(WriteError) as info:
    RunLogger(tmp_path, total_steps=8, start_step=4)
  assert str(info.value).startswith(f"could not write metrics {metrics}: No space left on device (ENOSPC); "
                                    "it needs ") and "\n" not in str(info.value)
  assert snapshot(metrics) == before and no_temporaries(tmp_path) == []
  monkeypatch.undo()
  RunLogger(tmp_path, total_steps=8, start_step=4).close()
  assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_compiled_step_record_the_disk_cannot_take_is_one_line_naming_the_file(tmp_path, monkeypatch):
  import errno

  from rejax import io
  from rejax.io import WriteError
  from rejax.train.compiled_step import CompiledSteps

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(io, "open", full_disk, raising=False)  # the module's `open`, not the builtin
  with pytest.raises(WriteError, match=f"could not write the compiled step's memory figures to "
                                       f"{tmp_path / 'compiled_steps.jsonl'}: No space left on device"):
    CompiledSteps(jitted=None, log=lambda message: None, workdir=tmp_path)._recorded({"query_ids": (4, 64)}, 1.0,
                                                                                  compiled=None)
  assert not (tmp_path / "compiled_steps.jsonl").exists()


def test_a_metrics_line_the_disk_cannot_take_is_one_line_naming_the_file(tmp_path):
  import errno

  from rejax.io import WriteError
  from rejax.train.logger import RunLogger

  class FullFile:
    def write(self, data):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
      pass

  logger = RunLogger(tmp_path, total_steps=8, start_step=0)
  real, logger._file = logger._file, FullFile()
  try:
    with pytest.raises(WriteError, match=f"could not write the metrics of step 3 to {tmp_path / 'metrics.jsonl'}: "
                                         r"No space left on device \(ENOSPC\); it needs \d+ B"):
      logger.log(3, {"loss": 1.0})
  finally:
    logger._file = real
    logger.close()


class SavedState:
  """What a Checkpointer saves of a TrainState: step, trainable, opt_state."""

  def __init__(self, value: float):
    import jax.numpy as jnp

    self.step, self.trainable, self.opt_state = jnp.array(int(value)), {"w": jnp.full((256,), value)}, {}


def disk_full_for_checkpoints(monkeypatch) -> None:
  """Orbax's save of the data iterator's state (grain's handler) writes half its file, then the disk is full."""
  import errno

  import grain.checkpoint

  def full(self, directory, item=None, args=None):
    (directory / "process_0-of-1.json").write_text('{"half')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(grain.checkpoint.CheckpointHandler, "save", full)


def read_only_for_checkpoints(monkeypatch, directory: pathlib.Path) -> None:
  """`directory` (checkpoints/) cannot be written: chmod 0o555 where that stops this user (not root); else
  creating a file there fails with EROFS, as on a read-only mount (Orbax itself would wait 5 minutes for it)."""
  import errno

  import rejax.train.checkpoint

  if os.geteuid() != 0:
    directory.chmod(0o555)  # given back by the `writable_again` fixture
    return

  def read_only(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

  monkeypatch.setattr(rejax.train.checkpoint, "_check_writable", read_only)


@pytest.mark.parametrize("fault", ["disk full", "read-only"])
def test_a_checkpoint_save_the_disk_refuses_is_one_line_and_leaves_no_unfinished_save(tmp_path, monkeypatch, fault,
                                                                                       writable_again):
  import grain

  from rejax.io import WriteError
  from rejax.train.checkpoint import Checkpointer

  data = iter(grain.MapDataset.range(10).to_iter_dataset())
  checkpoints = Checkpointer(tmp_path, every=1, keep=3)
  checkpoints.save(1, SavedState(1.0), data, {"step": 1})
  checkpoints.wait()
  before = snapshot(tmp_path)
  if fault == "disk full":
    disk_full_for_checkpoints(monkeypatch)
  else:
    read_only_for_checkpoints(monkeypatch, tmp_path / "checkpoints")
  with pytest.raises(WriteError) as info:
    checkpoints.save(2, SavedState(2.0), data, {"step": 2})
    checkpoints.wait()  # where an asynchronous save's error surfaces
  message = str(info.value)
  where = f"could not write checkpoint step 2 {tmp_path / 'checkpoints' / '2'}: "
  if fault == "disk full":
    assert message.startswith(f"{where}No space left on device (ENOSPC); it needs about 1.0 KiB")
    assert "removed its unfinished 2.orbax-checkpoint-tmp; free some space, then" in message
  else:
    reason = "Permission denied (EACCES)" if os.geteuid() else "Read-only file system (EROFS)"
    assert message.startswith(f"{where}{reason}; once it is writable, ")
  assert message.endswith("the same command resumes the run from step 1") and "\n" not in message
  assert snapshot(tmp_path) == before and no_temporaries(tmp_path) == []  # step 1 whole, nothing half-written
  checkpoints.wait()  # reported once: the loop's `finally: wait()` does not raise it again

  monkeypatch.undo()  # space is freed: a new manager on the directory (the next run) saves and restores step 2
  (tmp_path / "checkpoints").chmod(0o755)
  checkpoints = Checkpointer(tmp_path, every=1, keep=3)
  assert checkpoints.all_steps() == [1]
  checkpoints.save(2, SavedState(2.0), data, {"step": 2})
  checkpoints.wait()
  assert checkpoints.all_steps() == [1, 2]
  checkpoints.close()


def test_the_next_run_removes_the_unfinished_save_of_a_killed_one(tmp_path):
  from rejax.train.checkpoint import Checkpointer

  unfinished = tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp"
  (unfinished / "state").mkdir(parents=True)
  (unfinished / "state" / "half").write_bytes(b"\0" * 10)
  checkpoints = Checkpointer(tmp_path, every=1, keep=3)
  warnings = []
  assert checkpoints.restore_latest(SavedState(0.0), None, warn=warnings.append)[0] == 0
  assert not unfinished.exists() and "8.orbax-checkpoint-tmp" in warnings[0]
  checkpoints.close()


TRAIN_WITH_A_FULL_DISK_AT_STEP_2 = """
import errno, os, sys
import grain.checkpoint
from rejax.cli import main

real = grain.checkpoint.CheckpointHandler.save

def full(self, directory, item=None, args=None):
  if directory.parent.name.startswith("2."):  # checkpoints/2.orbax-checkpoint-tmp/data
    (directory / "process_0-of-1.json").write_text('{"half')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  return real(self, directory, item, args)

grain.checkpoint.CheckpointHandler.save = full
main(sys.argv[1:])
"""


@pytest.mark.slow  # ~1.5 min; the full-disk errors of encode, metrics and compiled steps run by default
def test_train_stopped_by_a_full_disk_at_a_checkpoint_resumes_once_there_is_space(tmp_path):
  """The whole path as a user meets it: `rejax train` whose step-2 save meets a full disk stops with one line and
  no traceback, its unfinished save removed; the same command, with space again, resumes from step 1."""
  workdir = tmp_path / "run"
  argv = ["train", "--config", str(TINY), "--workdir", str(workdir), "--config.total_steps=3",
          "--config.ckpt_every=1", "--config.log_every=1", "--config.export_dir="]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
  env.pop("REJAX_DEBUG", None)
  full = subprocess.run([sys.executable, "-c", TRAIN_WITH_A_FULL_DISK_AT_STEP_2, *argv], capture_output=True,
                        text=True, env=env, cwd=ROOT, timeout=600)
  assert full.returncode == 1, full.stderr[-3000:]
  assert "Traceback" not in full.stderr
  assert full.stderr.strip().splitlines()[-1].startswith(
      f"rejax train: error: could not write checkpoint step 2 {workdir / 'checkpoints' / '2'}: No space left on "
      "device (ENOSPC)")
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"] and no_temporaries(workdir) == []
  assert (workdir / "run.lock").read_text() == ""

  again = subprocess.run([sys.executable, "-m", "rejax.cli", *argv], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resuming at step 1" in again.stderr
  assert [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_an_embedding_cache_the_disk_cannot_take_is_skipped_with_a_warning(tmp_path, capsys, monkeypatch):
  """The embeddings are computed by then (maybe hours of encoding): a full cache disk must not lose them."""
  from rejax.eval.cache import cached

  disk_full_for_io(monkeypatch)
  out = cached(tmp_path, "k", lambda: np.ones((3, 4), np.float32), "corpus")
  assert out.shape == (3, 4) and sorted(tmp_path.iterdir()) == []
  err = capsys.readouterr().err
  assert (f"corpus: warning: could not write the embedding cache {tmp_path / 'k.npy'}: No space left on device "
          "(ENOSPC); it needs 176 B") in err and "continuing without caching them" in err


def test_a_write_removes_the_temporaries_killed_writers_left_and_keeps_live_ones(tmp_path):
  import socket

  from rejax.io import write_dir_atomic, write_npy_atomic

  host, dead = socket.gethostname(), dead_pid()
  out = tmp_path / "out.npy"
  stale = [f".out.npy.tmp-{host}-{dead}", ".out.npy.tmp", f".out.npy.tmp-{dead}"]  # this module's; older versions'
  kept = [f".out.npy.tmp-{host}-{os.getppid()}", f".out.npy.tmp-another-host-{dead}", "out.npy.tmp-notes"]
  for name in stale + kept:
    (tmp_path / name).write_bytes(b"half")
  write_npy_atomic(out, np.ones((2, 2), np.float32))
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["out.npy"])

  (tmp_path / f".model.partial-{host}-{dead}" / "sub").mkdir(parents=True)
  (tmp_path / "model.partial").mkdir()  # base_model_dir's staging before rejax.io
  write_dir_atomic(tmp_path / "model", lambda d: (d / "config.json").write_text("{}"), legacy=["model.partial"])
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["out.npy", "model"])


def test_a_replaced_directory_is_put_back_when_the_new_one_cannot_be_written(tmp_path):
  import errno

  from rejax.io import WriteError, write_dir_atomic

  target = tmp_path / "model"
  target.mkdir()
  (target / "config.json").write_text("old")
  before = snapshot(tmp_path)

  def build(staging):
    (staging / "config.json").write_text("new")
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

  with pytest.raises(WriteError, match=r"could not write model .*model: Disk quota exceeded \(EDQUOT\); it needs "
                                       r"1\.0 KiB; .* free there; the previous one is unchanged; free some space "
                                       r"\(or raise the quota\)"):
    write_dir_atomic(target, build, what="model", size=1024, replace=True)
  assert snapshot(tmp_path) == before
  write_dir_atomic(target, lambda d: (d / "config.json").write_text("new"), replace=True)
  assert (target / "config.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_os_error_under_a_library_error_is_found():
  """Orbax reports tensorstore's disk full as a ValueError: its text carries the OS's code."""
  from rejax.io import storage_errno

  orbax = ValueError('RESOURCE_EXHAUSTED: Error writing "trainable.w/0" in OCDBT database at local file "/w/'
                     'checkpoints/2.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed to '
                     "write 1685948 bytes to file 5: No space left on device [os_error_code='28']")
  assert storage_errno(orbax) == 28
  wrapped = RuntimeError("save failed")
  wrapped.__cause__ = OSError(30, "Read-only file system")
  assert storage_errno(wrapped) == 30 and storage_errno(ValueError("no step 3")) is None
