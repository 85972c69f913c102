"""A lost process of a multi-process run stops the others with one line naming it (rejax.train.peers), before
JAX's own abort: two real processes joined by jax.distributed on 127.0.0.1, one killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.gcs_server import free_port

PROCESS = """
import sys, time
import jax
from jax.experimental import multihost_utils
from rejax.train import distributed, peers
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]), heartbeat_timeout=20)
watch = peers.watch_peers(20)
multihost_utils.sync_global_devices("started")
print("started", flush=True)
if jax.process_index() == 1:
  time.sleep(600)
try:  # as rejax.train.loop.train does: a collective that fails because the peer is gone waits for the watch
  multihost_utils.sync_global_devices("never: process 1 is killed first")
except Exception as e:
  watch.explain(e)
  raise
"""


def test_a_killed_process_stops_the_other_with_one_line_naming_it():
  coordinator = f"127.0.0.1:{free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  env.pop("PYTEST_XDIST_WORKER", None)
  procs = [subprocess.Popen([sys.executable, "-c", PROCESS, coordinator, str(i)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    while (line := procs[1].stdout.readline()) and line.strip() != "started":  # gloo prints to stdout too
      pass
    assert line.strip() == "started", procs[1].stderr.read()[-3000:]
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = procs[0].communicate(timeout=60)
    stopped_after = time.monotonic() - killed
  finally:
    for p in procs:
      p.kill()
      p.wait()
  assert procs[0].returncode == 1, err[-3000:]
  lines = [line for line in err.splitlines() if line.startswith("rejax train: error:")]
  assert len(lines) == 1 and lines[0].startswith("rejax train: error: process 1 of 2 (host "), err[-3000:]
  assert "stopped answering" in lines[0] and "Run the same command on every host" in lines[0]
  assert "Check failure stack trace" not in err  # JAX's own abort (at 20 s) did not come first
  assert stopped_after < 30, stopped_after
