"""Ray Data LLM processors built from a backend block, and the answers of many units' requests streamed back.

    kind="openai"  HttpRequestProcessorConfig per server (several `base_url`s: request rows dealt out i % N);
                   `ray.replicas.NAME` HTTP actors per server; statuses read as the local backend does
                   (synth.raydata.http_session)
    kind="vllm"    vLLMEngineProcessorConfig: `ray.replicas.NAME` engine replicas, each with `engine_args`
                   (tensor / pipeline parallel sizes set its GPUs)
    kind="sglang"  SGLangEngineProcessorConfig, the same way
Rows carry (unit, call, pos): the driver regroups answers per unit as they stream in, in whatever order Ray
finishes them. The engine processors need `ray[llm]` (vLLM or SGLang, GPUs): imported only when built.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterator, Mapping, Sequence

from synth.backends import resolve_model
from synth.backends.base import BackendError, Messages, Sampling
from synth.backends.openai_http import chat_payload, chat_urls
from synth.raydata.http_session import read_answer, session_factory
from synth.report import say


@dataclasses.dataclass(frozen=True)
class Ask:
  """One unit's chat call the driver must have answered: backend name, requests, sampling."""

  backend: str
  requests: Sequence[Messages]
  sampling: Sampling


def processor_config(block: Mapping, replicas: int, batch_size: int, url: str = ""):
  """The ray.data.llm processor config of a backend block (for kind="openai", the server `url`)."""
  kind = block["kind"]
  if kind == "openai":
    from ray.data.llm import HttpRequestProcessorConfig

    return HttpRequestProcessorConfig(
      url=url, batch_size=batch_size, concurrency=replicas, max_retries=block.get("max_retries", 5),
      base_retry_wait_time_in_s=block.get("backoff_s", 1.0),
      session_factory=session_factory(block.get("api_key_env", "OPENAI_API_KEY"), block.get("timeout_s", 600.0)))
  if kind == "vllm":
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(model_source=resolve_model(block["model"]),
                                     engine_kwargs=dict(block.get("engine_args") or {}), concurrency=replicas,
                                     batch_size=batch_size)
  if kind == "sglang":
    from ray.data.llm import SGLangEngineProcessorConfig

    return SGLangEngineProcessorConfig(model_source=resolve_model(block["model"]),
                                       engine_kwargs=dict(block.get("engine_args") or {}), concurrency=replicas,
                                       batch_size=batch_size)
  raise ValueError(f"kind={kind!r}: the ray engine runs openai, vllm and sglang backends (not {kind})")


def request_row(block: Mapping, messages: Messages, sampling: Sampling) -> dict:
  """What one request row carries into the processor: the HTTP body, or messages and sampling parameters."""
  if block["kind"] == "openai":
    return {"payload": chat_payload(block["model"], messages, sampling, dict(block.get("extra_body") or {}))}
  params = {"temperature": sampling.temperature, "top_p": sampling.top_p}
  if block["kind"] == "vllm":
    params.update(max_tokens=sampling.max_tokens, seed=sampling.seed)
  else:  # SGLang's names; it takes no per-request seed
    params.update(max_new_tokens=sampling.max_tokens)
  return {"messages": [dict(m) for m in messages], "sampling_params": params}


def _postprocess(url: str, api_key_env: str):
  def http(row: dict) -> dict:
    answer, refused = read_answer(url, row["http_response"], api_key_env)
    return {"unit": row["unit"], "pos": row["pos"], "answer": answer, "refused": refused}
  return http


def _engine_postprocess(row: dict) -> dict:
  return {"unit": row["unit"], "pos": row["pos"], "answer": row["generated_text"],
          "refused": ""}


def answered_rows(block: Mapping, rows: list[dict], replicas: int, batch_size: int):
  """The Ray dataset of `rows` run through the block's processor(s): rows of (unit, call, pos, answer, refused)."""
  import ray.data
  from ray.data.llm import build_processor

  if block["kind"] != "openai":
    processor = build_processor(processor_config(block, replicas, batch_size), postprocess=_engine_postprocess)
    return processor(ray.data.from_items(rows))
  urls = chat_urls(block["base_url"])
  parts = []
  for i, url in enumerate(urls):
    # Arrow gives every row of a block the keys of all: keep rows of one payload shape together.
    shapes = collections.defaultdict(list)
    for row in rows[i :: len(urls)]:
      shapes[tuple(row["payload"])].append(row)
    processor = build_processor(processor_config(block, replicas, batch_size, url),
                                postprocess=_postprocess(url, block.get("api_key_env", "OPENAI_API_KEY")))
    parts += [processor(ray.data.from_items(shape)) for shape in shapes.values()]
  return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def stream_answers(backends: Mapping[str, Mapping], asks: Mapping[int, Ask], replicas: Mapping[str, int],
                   batch_size: int) -> Iterator[tuple[int, list[str | None]]]:
  """(unit, its answers in request order) for each unit of `asks`, as soon as all of its requests are answered.

  BackendError naming `backends.NAME` when the backend fails (the stream stops there) or refuses every request
  of a unit, as the local engine does.
  """
  by_backend = collections.defaultdict(list)
  for unit, ask in asks.items():
    by_backend[ask.backend] += [{"unit": unit, "pos": pos, **request_row(backends[ask.backend], m, ask.sampling)}
                                for pos, m in enumerate(ask.requests)]
  datasets = {name: answered_rows(backends[name], rows, replicas.get(name, 1), batch_size)
              for name, rows in by_backend.items()}
  for name, dataset in datasets.items():
    got: dict[int, dict[int, tuple]] = collections.defaultdict(dict)
    try:
      for row in dataset.iter_rows():
        unit, pos = int(row["unit"]), int(row["pos"])
        got[unit][pos] = (row["answer"], row["refused"])
        if len(got[unit]) == len(asks[unit].requests):
          yield unit, _answers(name, got.pop(unit))
    except Exception as e:  # our BackendError inside a Ray task error, or Ray's own HTTP stage giving up
      raise stage_error(name, e) from None


def _answers(name: str, got: dict[int, tuple]) -> list[str | None]:
  refused = [(pos, why) for pos, (_, why) in sorted(got.items()) if why]
  if refused and len(refused) == len(got):
    raise BackendError(f"the server refused all {len(got)} requests of a unit; first: "
                       f"{refused[0][1]}")
  for pos, why in refused:
    say(f"backends.{name}: request {pos} refused: {why}")
  return [answer for _, (answer, _) in sorted(got.items())]


def stage_error(name: str, error: BaseException) -> BackendError:
  """One line for a failure Ray reports: our BackendError inside it, or Ray's HTTP stage out of retries."""
  seen, todo = set(), [error]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    text = str(e)
    if "BackendError: " in text:  # a Ray task error (an instance of its cause, too) tells it after the traceback
      return BackendError(f"backends.{name}: " + text.rsplit("BackendError: ", 1)[1].splitlines()[0])
    if isinstance(e, BackendError):
      return BackendError(f"backends.{name}: {e}")
    if "Reached maximum retries of" in text:
      retries = text.split("Reached maximum retries of", 1)[1].split()[0]
      last = text.split("Previous Exception:", 1)[1].split(".")[0].strip() if "Previous Exception:" in text else "?"
      return BackendError(f"backends.{name}: a request failed after {int(retries) + 1} attempts; last: {last}")
    todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
  return BackendError(f"backends.{name}: the Ray job failed: {type(error).__name__}: "
                      f"{' '.join(str(error).split())[:300]}")
