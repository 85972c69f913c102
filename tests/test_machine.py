"""rejax.machine reads the machine's description from /proc/cpuinfo: here from two cores' blocks in the kernel's
layout, with the model name and vector flags the CPU-speed issue reports for an Intel machine of this project's
kind (family, model and cache are illustrative values)."""

from __future__ import annotations

from rejax.machine import cpu_model, vector_flags

CORE = """processor\t: {n}
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Intel(R) Xeon(R) Processor @ 2.60GHz
cache size\t: {cache}
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512ifma avx512vbmi
"""


def test_cpu_model_and_flags_come_from_the_first_core_block(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text(CORE.format(n=0, cache="55296 KB") + "\n" + CORE.format(n=1, cache="1 KB").replace("avx2 ", ""))
  assert cpu_model(info) == "Intel(R) Xeon(R) Processor @ 2.60GHz (family 6 model 85, cache 55296 KB)"
  assert vector_flags(info) == ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]


def test_without_cpuinfo_the_platform_names_the_processor(tmp_path):
  assert cpu_model(tmp_path / "absent") and vector_flags(tmp_path / "absent") == []
