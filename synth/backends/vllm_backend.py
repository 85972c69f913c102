"""Generation with vLLM's offline engine (optional extra `vllm`, imported only when this backend is built)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from synth.backends.base import Messages, Sampling, continues


class VLLMBackend:
  """A `vllm.LLM` answering whole batches at once; parallelism settings go to the engine unchanged.

  `tensor_parallel_size`, `data_parallel_size`, `pipeline_parallel_size`, `gpu_memory_utilization`,
  `max_model_len` and any other vLLM engine argument are passed through in `engine_args`.
  """

  def __init__(self, model: str, *, engine_args: Mapping[str, Any] | None = None):
    try:
      import vllm
    except ImportError as e:
      raise ImportError("the vllm backend needs vLLM: pip install -e '.[synth,vllm]' (CUDA only)") from e
    self._vllm = vllm
    self.llm = vllm.LLM(model=model, **dict(engine_args or {}))

  def chat(self, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """One completion per request, in order; continuation and new-turn requests go as two engine calls."""
    params = self._vllm.SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                       max_tokens=sampling.max_tokens, seed=sampling.seed)
    out: list[str | None] = [None] * len(requests)
    for cont in (False, True):
      rows = [i for i, m in enumerate(requests) if continues(m) == cont]
      if not rows:
        continue
      results = self.llm.chat([list(requests[i]) for i in rows], params, use_tqdm=False,
                              add_generation_prompt=not cont, continue_final_message=cont)
      for i, result in zip(rows, results):
        out[i] = result.outputs[0].text if result.outputs else None
    return out

  def close(self) -> None:
    """Drops the engine; vLLM frees its GPU memory when the process ends (run big stages as separate commands)."""
    del self.llm
