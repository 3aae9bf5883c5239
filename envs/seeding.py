"""Every env and sampling seed frontier derives, from (purpose, run seed, task, worker), in one place.

    base = stream_seed("expert", run_seed=1, task="CartPole-v1")   # episode j of it: env seed base + j
    base = stream_seed("explore", run_seed=0, worker=2)            # each env a worker builds: the next one

Env seeds below RESERVED are never derived: they are kept for measurements made once and
committed (the reference returns use 1000..1019, envs.references.REFERENCE_SEED), so no
training data, exploration or evaluation ever replays a reference episode. A stream's base is
a hash of its key into [RESERVED, 2**31 - STREAM), so the STREAM seeds after it stay below 2**31
(some simulators take 32-bit signed seeds). Keyed by task NAME, a task's expert data is the same
whatever other tasks share the run (a generalist and a specialist see the same episodes).
"""
from __future__ import annotations

import zlib

import numpy as np

RESERVED = 2**21  # env seeds [0, RESERVED) are for committed measurements only
STREAM = 2**20  # seeds a stream may use after its base (episodes, attempts, envs built)
PURPOSES = ("expert", "explore", "eval", "policy", "compare-data")


def stream_seed(purpose: str, run_seed: int, task: str = "", worker: int = 0) -> int:
    """First seed of the stream of (purpose, run seed, task, worker), in [RESERVED, 2**31 - STREAM)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r} (known: {', '.join(PURPOSES)})")
    if run_seed < 0 or worker < 0:
        raise ValueError(f"run seed and worker must be >= 0, got {run_seed}, {worker}")
    key = [PURPOSES.index(purpose), int(run_seed), zlib.crc32(task.encode()), int(worker)]
    word = int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0])
    return RESERVED + word % (2**31 - STREAM - RESERVED)
