"""A DARA worker process that a test kills with SIGKILL (tests/test_faults.py).

    python -m tests.sigkill_worker      # python -m app, plus the pipeline below

``blocks_in_a_step(marker)`` runs one step that appends its process's pid to ``marker``
and then, where ``DARA_TEST_BLOCK_STEP=1`` (the process the test kills), blocks until the
process dies: the test knows the step is running once the pid is in the file. A worker
that takes the run over executes the step again -- it was never recorded -- and it
returns that worker's pid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from app.durable import Context, pipeline

#: Set in the environment of the process whose step blocks.
BLOCK = "DARA_TEST_BLOCK_STEP"


def records_its_pid(marker: str) -> int:
    with Path(marker).open("a") as file:
        file.write(f"{os.getpid()}\n")
    if os.environ.get(BLOCK) == "1":
        time.sleep(600)  # until SIGKILL
    return os.getpid()


@pipeline
def blocks_in_a_step(ctx: Context, marker: str) -> Generator[Any, Any, int]:
    """One step, ``records_its_pid``; returns the pid of the process that completed it."""
    return (yield ctx.run(records_its_pid, marker))


if __name__ == "__main__":
    from app.__main__ import main

    main()
