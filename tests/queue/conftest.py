"""Fixtures of the queue tests."""
import signal

import pytest


@pytest.fixture
def stop_processes():
    """Processes a test registers here are killed at its end, whatever happens."""
    processes = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
