"""The suite's own guard: a test that leaves a thread or a process running fails."""

from __future__ import annotations

import pytest

from helpers import REPO

pytest_plugins = ["pytester"]

LEAKY = """
import subprocess, threading, time

def test_leaks_a_thread():
    threading.Thread(target=time.sleep, args=(30,), daemon=True, name="leaky").start()

def test_leaks_a_process():
    subprocess.Popen(["sleep", "30"])

def test_a_thread_that_ends_by_itself_is_fine():
    threading.Thread(target=time.sleep, args=(0.3,)).start()
"""


@pytest.mark.process
def test_leaked_threads_and_processes_fail_the_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))  # the conftest imports helpers
    monkeypatch.setenv("IMGSEARCHD_TEST_LEAK_GRACE", "1")
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:timeout")
    result.assert_outcomes(passed=3, errors=3)  # two tests, then the module, at teardown
    result.stdout.fnmatch_lines(["*the test left running: thread leaky*", "*the test left running: process *sleep 30*"])
