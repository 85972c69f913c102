"""Test-wide setup: 8 simulated CPU devices (before JAX is imported), absl flags for Grain workers,
and the session fixtures for real assets and tiny Hugging Face models."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

pytest_plugins = ["tests.assets_fixtures", "tests.tiny_models"]
