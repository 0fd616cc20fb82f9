"""Load (issue 10, item 10): 200 busy clients and 16 slow-header clients against the real
daemon (``imgsearchd serve`` as a process); ``/health`` must answer within 1 s throughout."""

from __future__ import annotations

import signal
import subprocess

from helpers import cli_command, free_port, server_config, wait_healthy
from http_load import run_load


def test_health_answers_within_a_second_under_hostile_load(tmp_path):
    port = free_port()
    config = server_config(tmp_path, server={"port": port})
    proc = subprocess.Popen(cli_command("serve", "--config", str(config)), stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)
        counts, probe = run_load("127.0.0.1", port, clients=200, slow=16, seconds=8)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(probe.latencies) >= 20 and set(probe.statuses) == {200}, probe
    assert probe.worst < 1.0, f"/health took {probe.worst:.2f} s under load (p50 {probe.percentile(0.5):.3f} s)"
    answered = counts.get("200", 0)
    failed = {k: v for k, v in counts.items() if not k.isdigit() and not k.startswith("slow")}
    assert answered >= 200 and not failed, counts  # every busy client got answers, none timed out
    assert counts.get("slow_held", 0) + counts.get("slow_dropped", 0) >= 16, counts
