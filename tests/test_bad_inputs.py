"""Bad input never gives a wrong answer: `rejax encode / eval / export / train / data convert` on broken input
stop with one line naming the problem (file:line, field, flag, id or directory), exit 1 (argparse's usage errors
2), print no traceback, and leave every input and earlier output byte-identical.

Three classes, each a table of cases and one parametrized test, plus a few direct tests: inputs that used to give
a silently wrong result, exports that could lose data, and errors that used to surface as tracebacks. Most run `rejax.cli.main` in this process; one
subprocess checks what a user's terminal shows (and that `--debug` / REJAX_DEBUG=1 bring the traceback back).
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


@case(TRACEBACKS, "unknown asset")  # rejax.assets raises KeyError
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
