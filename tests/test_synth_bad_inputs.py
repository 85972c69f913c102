"""`synth` on bad inputs: each fails with one line on stderr naming the thing, exit status 1, no traceback, and
leaves its inputs and earlier outputs byte-identical; a failed backend never marks work done, so a re-run
after the fix does it. Against the loopback chat server of test_synth_openai, with its scripted answers.

Classes: backend errors (HTTP 401/403/404/5xx, refusals, empty answers), connection and config errors,
secrets echoed by a server, and domain names that would leave the workdir.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import pytest

from synth.cli import main
from synth.units import read_jsonl
from tests.test_synth_openai import serve  # noqa: F401  (the loopback server fixture)
from tests.test_synth_stages import respond, write_corpus

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY_ENV = "SYNTH_TEST_KEY"
CONFIG = '''
import ml_collections
from synth.defaults import base_config, domain

def get_config(arg=""):
  c = base_config()
  c.workdir = {workdir!r}
  c.backends.generator = dict(kind="openai", base_url={url!r}, model="scripted", api_key_env={key_env!r},
                              concurrency=4, max_retries=1, backoff_s=0.01, timeout_s=10)
  c.annotate.backend = "generator"
  c.embedder = dict(kind="hashing", dim=128)
  c.domains = ml_collections.ConfigDict(allow_dotted_keys=True)
  c.domains[{domain!r}] = domain({corpus!r}, gold=({gold!r},), preset="pony")
  c.mine.top_k = 20
  c.mine.keep = 6
  c.sources.max_per_domain = 12
{extra}
  return c
'''
ANNOTATE = "Relevance means"  # in the annotator's prompt only


def write_config(tmp_path, url="http://127.0.0.1:9/v1", domain="pony", extra="") -> pathlib.Path:
  """A config over the small test corpus with one openai backend at `url` (few, fast retries)."""
  corpus, gold = write_corpus(tmp_path / "inputs")
  path = tmp_path / "inputs" / "config.py"
  path.write_text(CONFIG.format(workdir=str(tmp_path / "work"), url=url, key_env=KEY_ENV, domain=domain,
                                corpus=str(corpus), gold=str(gold), extra=extra))
  return path


class Breakable:
  """The scripted chat server's answers, or `failure` (status, text) for requests whose prompt holds `only`."""

  def __init__(self, failure=None, only=""):
    self.failure, self.only = failure, only

  def __call__(self, body):
    if self.failure and self.only in body["messages"][0]["content"]:
      return self.failure
    return 200, respond(body["messages"], None)


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_kept(before: dict[str, bytes], after: dict[str, bytes], new_plans: bool = False) -> None:
  """Every earlier file byte-identical and no new one, except (with new_plans) a unit plan (it marks nothing done)."""
  assert {k: after.get(k) for k in before} == before
  added = set(after) - set(before)
  assert all(k.endswith(".units/plan.json") for k in added) if new_plans else not added, sorted(added)


def run(capsys, *args: str) -> tuple[int, str]:
  """(exit status, stderr) of `synth ARGS` in this process."""
  rc = main([*args, "--no-progress"])
  out, err = capsys.readouterr()
  assert out == ""
  return rc, err


def error_line(err: str, command: str) -> str:
  """The one error line of stderr (all others are `[synth]` progress lines); no traceback."""
  assert "Traceback" not in err
  lines = err.splitlines()
  errors = [line for line in lines if not line.startswith("[synth] ")]
  assert len(errors) == 1 and errors[0] == lines[-1], err
  assert errors[0].startswith(f"synth {command}: error: "), errors[0]
  return errors[0]


@pytest.fixture
def api_key(monkeypatch, request):
  """A key only this test uses (so a redaction it sees is its own), in $SYNTH_TEST_KEY."""
  key = "sk-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:24]
  monkeypatch.setenv(KEY_ENV, key)
  return key


def records(tmp_path, stage="generate") -> list[dict]:
  return read_jsonl(tmp_path / "work" / stage / "pony.jsonl")


# Class 1: a backend error stops the stage and records nothing; the re-run after the fix does the work.

@pytest.mark.parametrize("failure, expected", [
  ((401, "invalid API key"), "HTTP 401 Unauthorized: {\"error\": {\"message\": \"invalid API key\"}} (the API key "
                             f"comes from ${KEY_ENV}, which is set)"),
  ((403, "model not allowed"), "HTTP 403 Forbidden"),
  ((503, "overloaded"), "failed after 2 attempts; last: HTTP 503 Service Unavailable"),
  ((400, "unsupported parameter"), "the server refused all 12 requests of the batch; first: HTTP 400 Bad Request"),
  ((200, None), "backends.generator (openai http://127.0.0.1:"),  # every answer empty
])
def test_a_failing_server_fails_the_stage_and_a_rerun_after_the_fix_does_the_work(serve, tmp_path, capsys, api_key,
                                                                                  failure, expected):
  server = serve(Breakable(failure))
  config = write_config(tmp_path, server.url)
  before = snapshot(tmp_path)
  rc, err = run(capsys, "generate", "--config", str(config))
  line = error_line(err, "generate")
  assert rc == 1 and expected in line and line.startswith("synth generate: error: backends.generator")
  assert server.url in line
  assert_kept(before, snapshot(tmp_path), new_plans=True)

  server.reply.failure = None  # the server is fixed
  rc, err = run(capsys, "generate", "--config", str(config))
  assert rc == 0 and "generate  pony: 27 in -> 12 out" in err
  assert len(records(tmp_path)) == 12


def test_a_wrong_base_url_fails_with_the_servers_404(serve, tmp_path, capsys, api_key):
  server = serve(Breakable())
  config = write_config(tmp_path, server.url.removesuffix("/v1"))  # the server answers 404 off /v1
  before = snapshot(tmp_path)
  rc, err = run(capsys, "generate", "--config", str(config))
  line = error_line(err, "generate")
  assert rc == 1 and f"{server.url.removesuffix('/v1')}/chat/completions: HTTP 404 Not Found" in line
  assert_kept(before, snapshot(tmp_path), new_plans=True)
  rc, _ = run(capsys, "generate", "--config", str(config), f"--config.backends.generator.base_url={server.url}")
  assert rc == 0 and records(tmp_path)


def test_synth_run_after_an_annotator_failure_resumes_to_records(serve, tmp_path, capsys, api_key):
  """The reported bug: a 401 once marked units done and `synth run` went on to no records."""
  server = serve(Breakable((401, "invalid API key"), only=ANNOTATE))
  config = write_config(tmp_path, server.url)
  assert run(capsys, "generate", "--config", str(config))[0] == 0
  assert run(capsys, "mine", "--config", str(config))[0] == 0
  before = snapshot(tmp_path)
  rc, err = run(capsys, "run", "--config", str(config), "--domain", "pony")
  assert rc == 1 and "HTTP 401 Unauthorized" in error_line(err, "run")
  assert_kept(before, snapshot(tmp_path), new_plans=True)
  assert not (tmp_path / "work" / "annotate" / "pony.summary.json").exists()

  server.reply.failure = None
  rc, err = run(capsys, "run", "--config", str(config), "--domain", "pony")
  assert rc == 0 and "generate  pony" in err and "[done earlier]" in err
  assert records(tmp_path, "annotate") and read_jsonl(tmp_path / "work" / "format" / "pony-formatted.jsonl")
  for name in ("generate/pony.jsonl", "mine/pony.jsonl"):
    assert (tmp_path / "work" / name).read_bytes() == before[f"work/{name}"]


def test_requests_the_server_refuses_one_by_one_are_dropped_and_the_rest_recorded(serve, tmp_path, capsys, api_key):
  def reply(body):
    if "On sorting" in body["messages"][0]["content"]:
      return 400, "prompt too long"
    return 200, respond(body["messages"], None)

  server = serve(reply)
  config = write_config(tmp_path, server.url)
  inputs = snapshot(tmp_path / "inputs")
  rc, err = run(capsys, "generate", "--config", str(config))
  assert rc == 0 and "Traceback" not in err and "refused: HTTP 400 Bad Request" in err
  assert snapshot(tmp_path / "inputs") == inputs
  summary = json.loads((tmp_path / "work" / "generate" / "pony.summary.json").read_text())
  assert summary["dropped"]["backend returned nothing"] >= 1 and summary["n_out"] > 5


# Class 2: no connection, and config keys that are missing or wrong: one line naming the URL or the key.

def test_connection_refused_names_the_url_and_a_rerun_against_a_server_does_the_work(serve, tmp_path, capsys,
                                                                                      api_key):
  config = write_config(tmp_path, "http://127.0.0.1:9/v1")
  before = snapshot(tmp_path)
  rc, err = run(capsys, "run", "--config", str(config))
  line = error_line(err, "run")
  assert rc == 1 and line == ("synth run: error: backends.generator: http://127.0.0.1:9/v1/chat/completions: "
                              "a request failed after 2 attempts; last: connection refused (is the server running?)")
  assert_kept(before, snapshot(tmp_path), new_plans=True)
  server = serve(Breakable())
  rc, _ = run(capsys, "generate", "--config", str(config), f"--config.backends.generator.base_url={server.url}")
  assert rc == 0 and records(tmp_path)


def test_connection_refused_from_the_command_line_is_one_line(tmp_path):
  config = write_config(tmp_path, "http://127.0.0.1:9/v1")
  before = snapshot(tmp_path)
  done = subprocess.run([sys.executable, "-m", "synth.cli", "generate", "--config", str(config), "--no-progress"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1 and done.stdout == ""
  assert "http://127.0.0.1:9/v1/chat/completions" in error_line(done.stderr, "generate")
  assert_kept(before, snapshot(tmp_path), new_plans=True)


@pytest.mark.parametrize("extra, expected", [
  ("  del c.mine", "missing key(s) mine (a synth config starts from synth.defaults.base_config()"),
  ("  del c.reason\n  c.reason = 5",
   "missing key(s) reason.backend, reason.enabled, reason.sampling, reason.unit_size"),
  ("  del c.generate.sampling['top_p']", "missing key(s) generate.sampling.top_p"),
  ("  del c.backends.generator['base_url']", "backends.generator.base_url: missing; the openai backend needs "
                                            "base_url, model"),
  ("  c.backends.generator.base_ur1 = 'http://x/v1'", "backends.generator.base_ur1: not a setting of the openai "
                                                      "backend (did you mean backends.generator.base_url?)"),
  ("  c.backends.generator.base_url = '127.0.0.1:8000/v1'", "backends.generator.base_url='127.0.0.1:8000/v1': "
                                                            "expected http://HOST:PORT/v1"),
  ("  c.backends.annotator = 'openai'", "backends.annotator='openai': expected a block of keys"),
  ("  c.embedder.dimm = 3", "embedder.dimm: not a setting of the hashing embedder (did you mean embedder.dim?)"),
  ("  c.domains.biology = 'corpus.jsonl'", "domains.biology='corpus.jsonl': expected a block of keys"),
])
def test_a_missing_or_wrong_config_key_is_named_before_any_work(tmp_path, capsys, extra, expected):
  config = write_config(tmp_path, extra=extra)
  before = snapshot(tmp_path)
  rc, err = run(capsys, "run", "--config", str(config))
  assert rc == 1 and expected in error_line(err, "run")
  assert_kept(before, snapshot(tmp_path))


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
  config = write_config(tmp_path, extra="  del c.mine")
  before = snapshot(tmp_path)
  rc, err = run(capsys, "generate", "--config", str(config), "--debug")
  assert rc == 1 and "Traceback" in err and err.splitlines()[-1].startswith("synth generate: error: --config ")
  monkeypatch.setenv("SYNTH_DEBUG", "1")
  rc, err = run(capsys, "generate", "--config", str(config))
  assert rc == 1 and "Traceback" in err and "missing key(s) mine" in err.splitlines()[-1]
  assert_kept(before, snapshot(tmp_path))


# Class 3: a server that echoes the Authorization header never gets the key printed or written.

def echo_key(server_box, status):
  """A reply that puts the request's Authorization header into an error body (or, for 200, into the answer)."""
  def reply(body):
    header = server_box[0].auth[-1]
    if status == 200:
      return 200, f"Query: which key is {header} here?" if "Requirements:" in body["messages"][0]["content"] \
        else respond(body["messages"], None)
    return status, f"invalid credentials: {header}"
  return reply


def assert_no_key(key: str, tmp_path: pathlib.Path, *texts: str) -> None:
  assert key not in "".join(texts)
  leaks = [name for name, data in snapshot(tmp_path).items() if key.encode() in data]
  assert not leaks


@pytest.mark.parametrize("status, expected", [
  (401, "HTTP 401 Unauthorized: {\"error\": {\"message\": \"invalid credentials: Bearer ***\"}}"),
  (403, "HTTP 403 Forbidden: {\"error\": {\"message\": \"invalid credentials: Bearer ***\"}}"),
  (503, "last: HTTP 503 Service Unavailable: {\"error\": {\"message\": \"invalid credentials: Bearer ***\"}}"),
  (400, "first: HTTP 400 Bad Request: {\"error\": {\"message\": \"invalid credentials: Bearer ***\"}}"),
])
def test_a_key_echoed_in_an_error_body_is_redacted(serve, tmp_path, capsys, api_key, status, expected):
  box = []
  box.append(serve(echo_key(box, status)))
  config = write_config(tmp_path, box[0].url)
  before = snapshot(tmp_path)
  rc, err = run(capsys, "generate", "--config", str(config))
  assert rc == 1 and expected in error_line(err, "generate")
  assert box[0].auth[0] == f"Bearer {api_key}"  # sent, in the header
  assert_no_key(api_key, tmp_path, err)
  assert_kept(before, snapshot(tmp_path), new_plans=True)


def test_a_key_echoed_in_answers_is_redacted_in_every_file_and_line(serve, tmp_path, capsys, api_key):
  box = []
  box.append(serve(echo_key(box, 200)))
  config = write_config(tmp_path, box[0].url)
  inputs = snapshot(tmp_path / "inputs")
  rc, err = run(capsys, "run", "--config", str(config), "--domain", "pony")
  assert rc == 0 and "Traceback" not in err and snapshot(tmp_path / "inputs") == inputs
  assert_no_key(api_key, tmp_path, err)
  assert all(r["query"] == "which key is Bearer *** here?" for r in records(tmp_path))
  assert "Bearer ***" in (tmp_path / "work" / "generate" / "pony.units" / "unit-000000.jsonl").read_text()


def test_a_key_in_a_refused_request_line_or_a_traceback_is_redacted(serve, tmp_path, capsys, api_key, monkeypatch):
  box = []
  refuse_sorting, refuse_all = echo_key(box, 400), echo_key(box, 401)
  mode = {"annotate": refuse_all}

  def reply(body):
    prompt = body["messages"][0]["content"]
    if ANNOTATE in prompt:
      return mode["annotate"](body)
    return refuse_sorting(body) if "On sorting" in prompt else (200, respond(body["messages"], None))

  box.append(serve(reply))
  config = write_config(tmp_path, box[0].url)
  rc, err = run(capsys, "generate", "--config", str(config))
  assert rc == 0 and "refused: HTTP 400 Bad Request" in err and "Bearer ***" in err
  assert_no_key(api_key, tmp_path, err)
  assert run(capsys, "mine", "--config", str(config))[0] == 0

  monkeypatch.setenv("SYNTH_DEBUG", "1")
  before = snapshot(tmp_path)
  rc, err = run(capsys, "annotate", "--config", str(config))
  assert rc == 1 and "Traceback" in err and "Bearer ***" in err
  assert err.splitlines()[-1].startswith("synth annotate: error: backends.generator: ")
  assert_no_key(api_key, tmp_path, err)
  assert_kept(before, snapshot(tmp_path), new_plans=True)


def test_short_placeholder_keys_are_not_treated_as_secrets():
  from synth.report import redact, register_secret

  register_secret("EMPTY")
  assert redact("EMPTY answers are kept") == "EMPTY answers are kept"


# Class 4: a domain name may not leave the workdir, from the config or from --domain.

@pytest.mark.parametrize("domain", ["../x", "/abs", "a/b", "a\\b", "Pony", "pony\n", ""])
def test_a_domain_name_that_could_leave_the_workdir_is_refused_before_any_work(tmp_path, capsys, domain):
  config = write_config(tmp_path, domain=domain)
  before = snapshot(tmp_path)
  rc, err = run(capsys, "run", "--config", str(config))
  line = error_line(err, "run")
  assert rc == 1 and line.startswith(f"synth run: error: domains: {domain!r} is not a domain name; a domain names "
                                     "files under the workdir")
  assert_kept(before, snapshot(tmp_path))
  assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("flag", ["../x", "/etc", "pony,../pony", "pony,a/b", "pony,"])
def test_a_domain_flag_that_could_leave_the_workdir_is_refused_before_any_work(tmp_path, capsys, flag):
  config = write_config(tmp_path)
  before = snapshot(tmp_path)
  rc, err = run(capsys, "generate", "--config", str(config), "--domain", flag)
  bad = flag.removeprefix("pony,")
  assert rc == 1 and error_line(err, "generate") == (
    f"synth generate: error: --domain: {bad!r} is not a domain name; a domain names files under the workdir, "
    "so use lowercase letters, digits and `_` (e.g. biology)")
  assert_kept(before, snapshot(tmp_path))


def test_an_unconfigured_domain_flag_is_refused_before_any_domain_runs(tmp_path, capsys):
  config = write_config(tmp_path)
  before = snapshot(tmp_path)
  rc, err = run(capsys, "run", "--config", str(config), "--domain", "pony,biology")
  assert rc == 1 and error_line(err, "run") == "synth run: error: --domain biology: not in the config's domains (pony)"
  assert_kept(before, snapshot(tmp_path))
