"""Executors: run runs (locally in a pool of slots, or as Ray tasks), and return results to the single writer.

    executor = make_executor(config.executor, domain, config.domain, config.domain_options)
    executor.submit(domain_name, request)          # up to executor.slots at once
    for run_id, result in executor.wait(timeout):  # >= 1 pair when any run finished; [] on timeout / idle
        ...
    executor.shutdown()
"""

from __future__ import annotations

from typing import Any

from ledgerlab.core.config import ExecutorConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.protocols import Domain, Executor
from ledgerlab.core.registry import load_executor

__all__ = ["LocalExecutor", "make_executor"]


def make_executor(config: ExecutorConfig, domain: Domain, domain_name: str,
                  domain_options: dict[str, Any] | None = None, **extra: Any) -> Executor:
    """The executor `config.kind` names, with `config.workers` slots (core/registry.py's `load_executor`).

    `extra` goes to the executor's constructor (e.g. `gpus=[]` for local, `domain_ref=`/`num_cpus=` for ray).
    """
    return load_executor(config, domain, domain_name, domain_options, **extra)
