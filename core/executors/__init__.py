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
from ledgerlab.errors import ExecutorError

__all__ = ["LocalExecutor", "make_executor"]


def make_executor(config: ExecutorConfig, domain: Domain, domain_name: str,
                  domain_options: dict[str, Any] | None = None, **extra: Any) -> Executor:
    """The executor `config.kind` names, with `config.workers` slots.

    `extra` goes to the executor's constructor (e.g. `gpus=[]` for local, `domain_ref=`/`num_cpus=` for ray).
    """
    if config.kind == "local":
        return LocalExecutor(domain, config.workers, **extra)
    if config.kind == "ray":
        try:
            import ray  # noqa: F401 - only to tell a missing extra apart from other failures
        except ImportError:
            raise ExecutorError("the ray executor needs the extra: pip install 'ledgerlab[ray]'") from None
        from ledgerlab.core.executors.ray import RayExecutor

        address = None if config.ray_address in (None, "", "local") else config.ray_address
        return RayExecutor(domain_name, domain_options or {}, config.workers, address, **extra)
    raise ExecutorError(f"unknown executor {config.kind!r}; use local or ray")
