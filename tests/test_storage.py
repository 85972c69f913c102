"""gs:// paths against a real Cloud Storage JSON API on 127.0.0.1 (tests/gcs_server.py): objects and directories
appear whole, a directory without its commit file is never taken for complete, bucket inputs are staged once per
host, the run lock is an object created only if absent, and a bad bucket is one line before any work."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from rejax import staging, storage
from rejax.cli import main
from rejax.errors import InputError
from rejax.io import append_text, write_dir_atomic, write_text_atomic
from rejax.train import bucket_lock
from rejax.train.lock import WorkdirInUseError, lock_workdir, releases_workdir_lock
from tests.gcs_server import GCSServer, free_port, offline_env
from tests.teacher_fixtures import small_collection  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
  with GCSServer() as gcs:
    gcs.create_bucket("unit")
    yield gcs


@pytest.fixture
def gcs(server, monkeypatch, tmp_path):
  """The server's environment in this process, a fresh prefix of the bucket, and a private staging cache."""
  for key, value in server.env.items():
    monkeypatch.setenv(key, value)
  monkeypatch.setenv("REJAX_STAGING_DIR", str(tmp_path / "staged"))
  import gcsfs

  gcsfs.GCSFileSystem.clear_instance_cache()
  server.prefix = f"t{time.monotonic_ns()}"
  return server


def url(gcs, name: str = "") -> str:
  return f"gs://unit/{gcs.prefix}/{name}".rstrip("/")


def test_paths_keep_urls_and_refuse_schemes_rejax_cannot_write():
  assert str(storage.as_path("gs://bucket/runs/x/")) == "gs://bucket/runs/x"
  assert storage.as_path("runs/x") == pathlib.Path("runs/x")
  with pytest.raises(InputError, match="--workdir s3://b/x: rejax reads and writes local paths and gs:// URLs"):
    storage.as_path("s3://b/x", "--workdir")
  assert storage.same_or_inside(storage.as_path("gs://b/run/export"), storage.as_path("gs://b/run"))
  assert not storage.same_or_inside(storage.as_path("gs://b/run2"), storage.as_path("gs://b/run"))
  assert not storage.same_or_inside(pathlib.Path("/gs:/b/run"), storage.as_path("gs://b/run"))


def test_a_file_on_a_bucket_is_one_object_and_append_rewrites_it(gcs):
  path = storage.as_path(url(gcs, "metrics.jsonl"))
  write_text_atomic(path, "a\n")
  append_text(path, "b\n")
  assert path.read_text() == "a\nb\n"
  assert gcs.objects("unit", gcs.prefix) == {f"{gcs.prefix}/metrics.jsonl": 4}


def test_a_directory_is_uploaded_commit_file_last_and_replaced_commit_file_first(gcs, monkeypatch):
  target = storage.as_path(url(gcs, "export"))
  order = []
  real_copy = storage.copy_file
  monkeypatch.setattr(storage, "copy_file", lambda src, dst: (order.append(dst.name), real_copy(src, dst))[1])

  def build(names):
    def fill(staging_dir):
      for name in names:
        (staging_dir / name).write_text(name)
    return fill

  write_dir_atomic(target, build(["config.json", "model.safetensors", "tokenizer.json"]), commit="config.json")
  assert order[-1] == "config.json"
  with pytest.raises(FileExistsError):
    write_dir_atomic(target, build(["config.json"]), commit="config.json")
  # A writer that dies half-way through the replacement leaves no config.json: nothing takes it for complete.
  def killed_before_the_commit_file(src, dst):
    if dst.name == "config.json":
      raise ConnectionError("killed")
    return real_copy(src, dst)

  monkeypatch.setattr(storage, "copy_file", killed_before_the_commit_file)
  with pytest.raises(OSError, match="killed"):
    write_dir_atomic(target, build(["config.json", "model.safetensors"]), commit="config.json", replace=True)
  assert not (target / "config.json").exists() and (target / "model.safetensors").exists()
  with pytest.raises(FileNotFoundError, match="no config.json"):
    staging.staged(target, "--model", required="config.json")


def test_a_bucket_directory_is_staged_once_per_host_and_again_when_it_changes(gcs, tmp_path):
  source = storage.as_path(url(gcs, "model"))
  write_dir_atomic(source, lambda d: [(d / "config.json").write_text("{}"), (d / "sub").mkdir(),
                                      (d / "sub" / "w.bin").write_bytes(b"12345")], commit="config.json")
  logged = []
  local = staging.staged(source, "--model", required="config.json", log=logged.append)
  assert local.is_relative_to(tmp_path / "staged") and (local / "sub" / "w.bin").read_bytes() == b"12345"
  assert staging.staged(source, "--model", log=logged.append) == local and len(logged) == 1
  (source / "sub" / "w.bin").write_bytes(b"123456")
  assert (staging.staged(source, "--model", log=logged.append) / "sub" / "w.bin").read_bytes() == b"123456"
  assert len(logged) == 2


def test_a_missing_bucket_is_one_line_before_any_work(gcs):
  with pytest.raises(storage.StorageError, match=r"--workdir gs://no-such-bucket/run: bucket gs://no-such-bucket "
                                                 r"does not exist"):
    storage.check_store(storage.as_path("gs://no-such-bucket/run"), "--workdir")


def test_an_unreachable_store_is_one_line_within_the_timeout(gcs, monkeypatch):
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there
  monkeypatch.setattr(storage, "CHECK_TIMEOUT_S", 2.0)
  started = time.monotonic()
  with pytest.raises(storage.StorageError, match="did not answer within 2s"):
    storage.check_store(storage.as_path("gs://unit/run"), "--workdir")
  assert time.monotonic() - started < 30


def test_no_credentials_is_one_line_naming_what_to_do(monkeypatch, tmp_path):
  for key in ("STORAGE_EMULATOR_HOST", "GOOGLE_AUTH_TOKEN_FOR_TESTING", "CLOUD_STORAGE_EMULATOR_ENDPOINT"):
    monkeypatch.delenv(key, raising=False)
  for key, value in offline_env().items():
    monkeypatch.setenv(key, value)
  monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
  with pytest.raises(storage.StorageError, match="--workdir gs://some-bucket/run: no Google Cloud credentials .*"
                                                 "gcloud auth application-default login"):
    storage.check_store(storage.as_path("gs://some-bucket/run"), "--workdir")


def test_rejax_train_on_a_missing_bucket_fails_in_one_line(gcs, capsys):
  with pytest.raises(SystemExit) as exit_:
    main(["train", "--config", str(ROOT / "configs" / "tiny.py"), "--workdir", "gs://no-such-bucket/run"])
  assert str(exit_.value) == ("rejax train: error: --workdir gs://no-such-bucket/run: bucket gs://no-such-bucket does "
                              "not exist (create it, or check the name)")


def test_the_bucket_lock_refuses_a_second_run_and_takes_over_a_dead_ones(gcs, monkeypatch):
  workdir = storage.as_path(url(gcs, "run"))
  warnings = []

  @releases_workdir_lock
  def hold_and(inner):
    lock_workdir(workdir, warn=warnings.append)
    return inner()

  def second_run():
    with pytest.raises(WorkdirInUseError, match=f"--workdir {workdir}: in use by another rejax train \\(pid "
                                                f"{os.getpid()} on "):
      lock_workdir(workdir)

  hold_and(second_run)
  assert not (workdir / "run.lock").exists()  # released
  # A holder of this host whose process is gone (kill -9): taken over at once, with a warning naming it.
  body = {"pid": 2**22 + 12345, "host": bucket_lock.HOST, "started": "2026-01-01T00:00:00+00:00",
          "heartbeat": "2026-01-01T00:00:00+00:00"}
  (workdir / "run.lock").write_text(json.dumps(body))
  hold_and(lambda: None)
  assert any(f"taking over the stale lock of pid {2**22 + 12345}" in w for w in warnings)
  # Another host's lock that still beats: watched, then refused when it beats again.
  monkeypatch.setattr(bucket_lock, "_POLL_S", 0.2)
  fresh = dict(body, host="another-host", heartbeat=bucket_lock._now())
  (workdir / "run.lock").write_text(json.dumps(fresh))
  import threading
  beat = threading.Timer(0.5, lambda: (workdir / "run.lock").write_text(json.dumps(fresh)))
  beat.start()
  with pytest.raises(WorkdirInUseError, match="on another-host"):
    hold_and(lambda: None)
  beat.join()


def test_the_bucket_lock_beats_while_held(gcs, monkeypatch):
  monkeypatch.setattr(bucket_lock, "HEARTBEAT_S", 0.3)
  workdir = storage.as_path(url(gcs, "run"))
  beats = []

  @releases_workdir_lock
  def hold():
    lock_workdir(workdir)
    for _ in range(3):
      beats.append(json.loads((workdir / "run.lock").read_text())["heartbeat"])
      time.sleep(1.1)

  hold()
  assert len(set(beats)) == 3  # the body's heartbeat moved on while the run held the lock
  assert not (workdir / "run.lock").exists()


def test_a_bucket_workdir_of_another_run_is_one_line_before_any_work(gcs, capsys):
  from rejax.train.config import load_config_file, to_json

  workdir = url(gcs, "run")
  other = load_config_file(str(ROOT / "configs" / "tiny.py"))
  other.seed = 7
  storage.as_path(workdir + "/config.json").write_text(to_json(other))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "rejax.cli", "train", "--config", str(ROOT / "configs" / "tiny.py"),
                         "--workdir", workdir], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"rejax train: error: --workdir {workdir}: holds a run with seed=7 (its config.json), and "
                         "this command's config has seed=0; a resumed run may change only total_steps, ")
  assert line.endswith("Resume it with seed=7, or use a new --workdir")
  assert sorted(gcs.objects("unit", gcs.prefix)) == [f"{gcs.prefix}/run/config.json"]  # nothing else written


def test_encode_reads_a_model_and_texts_from_the_bucket_and_writes_the_embeddings_there(gcs, tiny_model_factory,
                                                                                          tmp_path, capsys):
  import numpy as np

  model_dir = tiny_model_factory("qwen3_tied")[0]
  texts = tmp_path / "in.jsonl"
  texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ("a cat", "the dog barks", "ice melts")))
  flags = ["--max-length", "16", "--batch-size", "2"]
  main(["encode", "--model", str(model_dir), "--input", str(texts), "--output", str(tmp_path / "local.npy"), *flags])
  bucket_model = storage.as_path(url(gcs, "model"))
  write_dir_atomic(bucket_model, lambda d: [storage.copy_file(f, d / f.name) for f in model_dir.iterdir()],
                   commit="config.json")
  storage.copy_file(texts, storage.as_path(url(gcs, "in.jsonl")))
  main(["encode", "--model", str(bucket_model), "--input", url(gcs, "in.jsonl"), "--output", url(gcs, "out.npy"),
        *flags])
  with storage.as_path(url(gcs, "out.npy")).open("rb") as f:
    np.testing.assert_array_equal(np.load(f), np.load(tmp_path / "local.npy"))
  assert "staging gs://unit/" in capsys.readouterr().err  # the model and the texts, once each


def test_data_mine_and_score_read_and_write_the_bucket_as_local_paths(gcs, small_collection, minilm_dir, tmp_path,
                                                                      monkeypatch):
  """`rejax data mine` (BM25) and `rejax data score` (all-MiniLM-L6-v2) with every path on the bucket write the same
  records as with local paths; an existing bucket output is refused before anything is staged or loaded."""
  for name in ("corpus.jsonl", "records/cacm-formatted.jsonl"):
    storage.copy_file(small_collection / name, storage.as_path(url(gcs, name)))
  mine_flags = ["--model", "bm25", "--negatives", "3", "--range-max", "10"]
  main(["data", "mine", *mine_flags, "--corpus", str(small_collection / "corpus.jsonl"), "--input",
        str(small_collection / "records"), "--output", str(tmp_path / "mined")])
  main(["data", "mine", *mine_flags, "--corpus", url(gcs, "corpus.jsonl"), "--input", url(gcs, "records"),
        "--output", url(gcs, "mined")])
  score_flags = ["--teacher", str(minilm_dir), "--max-length", "64"]
  main(["data", "score", *score_flags, "--input", str(tmp_path / "mined"), "--output", str(tmp_path / "scored")])
  main(["data", "score", *score_flags, "--input", url(gcs, "mined"), "--output", url(gcs, "scored")])
  for directory, summary in (("mined", "mine.json"), ("scored", "score.json")):
    local = tmp_path / directory / "cacm-formatted.jsonl"
    assert storage.as_path(url(gcs, f"{directory}/{local.name}")).read_bytes() == local.read_bytes(), directory
    remote = json.loads(storage.as_path(url(gcs, f"{directory}/{summary}")).read_text())
    assert remote["records"] == json.loads((tmp_path / directory / summary).read_text())["records"] == 12
  monkeypatch.setenv("REJAX_STAGING_DIR", str(tmp_path / "staged-again"))
  with pytest.raises(SystemExit) as exit_:
    main(["data", "score", *score_flags, "--input", url(gcs, "mined"), "--output", url(gcs, "scored")])
  assert f"--output {url(gcs, 'scored')}: already exists" in str(exit_.value)
  assert not (tmp_path / "staged-again").exists()  # refused before the input was staged
