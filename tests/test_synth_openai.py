"""The OpenAI-compatible backend against a loopback server speaking /v1/chat/completions, and `synth run`
through it end to end (CLI, config file, ArrayRecord read back with the rejax record reader)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from synth.backends import Sampling
from synth.backends.openai_http import OpenAIBackend
from synth.backends.base import BackendError
from tests.test_synth_stages import respond, write_corpus

SECRET = "sk-test-0123456789abcdef"


class ChatServer:
  """A threaded loopback server answering chat completions with a Python function of the request body.

  `reply(body) -> (status, content)`; it records every body and Authorization header, and the most
  requests it ever had in flight at once.
  """

  def __init__(self, reply, delay_s: float = 0.0):
    self.reply, self.delay_s = reply, delay_s
    self.bodies, self.auth = [], []
    self.in_flight = self.max_in_flight = 0
    self.lock = threading.Condition()
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
          server.bodies.append(body)
          server.auth.append(self.headers.get("Authorization"))
          server.in_flight += 1
          server.max_in_flight = max(server.max_in_flight, server.in_flight)
          server.lock.notify_all()
          if server.delay_s:  # hold the first request until a second overlaps it, so overlap never depends on timing
            server.lock.wait_for(lambda: server.max_in_flight > 1, timeout=10)
        time.sleep(server.delay_s)
        try:
          if self.path != "/v1/chat/completions":
            status, payload = 404, {"error": "not found"}
          else:
            status, content = server.reply(body)
            payload = ({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                       if status == 200 else {"error": {"message": content}})
        finally:
          # Counted out before the answer is sent: once the client has it, it may send its next request at once,
          # and that one must not be counted beside this finished one.
          with server.lock:
            server.in_flight -= 1
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def serve():
  servers = []

  def start(reply, delay_s=0.0):
    servers.append(ChatServer(reply, delay_s))
    return servers[-1]

  yield start
  for s in servers:
    s.close()


def user(text):
  return [{"role": "user", "content": text}]


def test_answers_in_request_order_with_bounded_concurrency(serve):
  server = serve(lambda body: (200, body["messages"][0]["content"].upper()), delay_s=0.05)
  backend = OpenAIBackend(server.url, "m", concurrency=4, api_key_env="")
  answers = backend.chat([user(f"q{i}") for i in range(16)], Sampling(temperature=0.7, top_p=0.9, max_tokens=7, seed=3))
  assert answers == [f"Q{i}" for i in range(16)]
  assert 1 < server.max_in_flight <= 4
  body = server.bodies[0]
  assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == ("m", 0.7, 0.9, 7, 3)
  assert "continue_final_message" not in body and server.auth[0] is None
  backend.close()


def test_retries_transient_errors_and_drops_rejected_requests(serve):
  seen = {}

  def reply(body):
    text = body["messages"][0]["content"]
    seen[text] = seen.get(text, 0) + 1
    if text == "flaky" and seen[text] <= 2:
      return 503, "busy"
    if text == "bad":
      return 400, "context too long"
    return 200, f"ok {text}"

  server = serve(reply)
  backend = OpenAIBackend(server.url, "m", concurrency=2, backoff_s=0.01, max_retries=3, api_key_env="")
  assert backend.chat([user("flaky"), user("bad"), user("fine")], Sampling()) == ["ok flaky", None, "ok fine"]
  assert seen == {"flaky": 3, "bad": 1, "fine": 1}


def test_exhausted_retries_fail_the_batch_and_never_show_the_key(serve, monkeypatch, capsys):
  monkeypatch.setenv("SYNTH_TEST_KEY", SECRET)
  server = serve(lambda body: (503, "overloaded"))
  backend = OpenAIBackend(server.url, "m", api_key_env="SYNTH_TEST_KEY", backoff_s=0.01, max_retries=2)
  with pytest.raises(BackendError, match="after 3 attempts; last: HTTP 503") as error:
    backend.chat([user("x")], Sampling())
  assert server.auth == [f"Bearer {SECRET}"] * 3  # sent, in the header only
  assert SECRET not in str(error.value) and SECRET not in repr(backend)
  assert "$SYNTH_TEST_KEY set" in repr(backend)
  unreachable = OpenAIBackend("http://127.0.0.1:9/v1", "m", api_key_env="SYNTH_TEST_KEY", backoff_s=0.01,
                              max_retries=1, timeout_s=2)
  with pytest.raises(BackendError) as error:
    unreachable.chat([user("x")], Sampling())
  captured = capsys.readouterr()
  assert SECRET not in str(error.value) + captured.out + captured.err


def test_a_final_assistant_message_is_continued(serve):
  server = serve(lambda body: (200, "3</score>"))
  backend = OpenAIBackend(server.url, "m", api_key_env="",
                          extra_body={"chat_template_kwargs": {"enable_thinking": False}})
  messages = [*user("judge"), {"role": "assistant", "content": "Analysis.\n\n<score>"}]
  assert backend.chat([messages], Sampling()) == ["3</score>"]
  body = server.bodies[0]
  assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
  assert body["messages"] == messages and body["chat_template_kwargs"] == {"enable_thinking": False}


CONFIG = '''
from synth.defaults import base_config, domain

def get_config(arg=""):
  c = base_config()
  c.workdir = {workdir!r}
  c.backends.generator = dict(kind="openai", base_url={url!r}, model="scripted", api_key_env="", concurrency=4)
  c.annotate.backend = "generator"
  c.embedder = dict(kind="hashing", dim=128)
  c.domains.pony = domain({corpus!r}, gold=({gold!r},), preset="pony")
  c.mine.top_k = 20
  c.mine.keep = 6
  return c
'''


def test_synth_run_cli_over_an_http_server_writes_arrayrecord(serve, tmp_path):
  import tensorflow_datasets as tfds

  from rejax.data.records import from_example
  from synth.cli import main
  from synth.units import read_jsonl

  server = serve(lambda body: (200, respond(body["messages"], None)))
  corpus, gold = write_corpus(tmp_path)
  config = tmp_path / "scripted.py"
  config.write_text(CONFIG.format(workdir=str(tmp_path / "work"), url=server.url, corpus=str(corpus), gold=str(gold)))
  assert main(["run", "--config", str(config), "--no-progress", "--config.sources.max_per_domain=12"]) == 0
  records = read_jsonl(tmp_path / "work" / "format" / "pony-formatted.jsonl")
  assert records and all(r["prompt"] == "Given a Pony question, retrieve relevant passages that help answer the "
                                        "question." and r["train_group_size"] == 64 for r in records)
  source = tfds.builder_from_directory(str(tmp_path / "work" / "arrayrecord")).as_data_source()["pony"]
  assert [from_example(source[i]) for i in range(len(source))] == records
  assert main(["run", "--config", str(config), "--no-progress", "--config.mine.kep=3"]) == 1  # a typo'd key
