"""The Ray executor: each run is a Ray task, on this machine or on a cluster (`pip install 'ledgerlab[ray]'`).

- Each task loads the domain on its worker with `load_domain(name, options)` (the `ledgerlab.domains` entry
  point), or from `domain_ref` ("package.module:factory" or "/path/file.py:factory", called with the options)
  for domains that are not registered, such as test domains; one instance per worker process and (name, ref,
  options) is kept.
- Resources per run: `num_cpus` = the request's `threads`, else the executor's `num_cpus`, else 1 (and the
  request's `threads` is filled with it so the run uses what Ray reserved); `num_gpus` = the executor's
  `num_gpus`, else 1 when the cluster has GPUs, else 0. On the worker, `device` is filled with `cuda:<id>`
  from the GPU Ray assigned (`ray.get_gpu_ids()`), so a domain's child sees exactly that GPU.
- A worker lost mid-run (process killed, node gone) is a system failure: Ray re-runs the task, up to
  `max_retries` times. The task's result is one object, so a re-run never gives two results; when the retries
  run out, the run comes back as `crashed` with the reason. Results are keyed by run_id and each submitted run
  gives exactly one (the first; anything later for the same run is dropped).
- The campaign process stays the only writer: tasks return RunResults and `wait` hands them to it.

`workdir` paths are the driver's: on a multi-node cluster they must be on storage every node can write.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from ledgerlab.core.executors.inflight import InFlight
from ledgerlab.core.protocols import Domain, RunRequest, RunResult
from ledgerlab.errors import ExecutorError

if TYPE_CHECKING:
    from ledgerlab.core.config import ExecutorConfig

try:
    import ray
except ImportError:  # the optional extra is not installed
    ray = None  # type: ignore[assignment]

INSTALL_HINT = "the ray executor needs the extra: pip install 'ledgerlab[ray]'"
CANCEL_GRACE_S = 5.0


# --------------------------------------------------------------------------------- on the worker


_DOMAINS: dict[tuple[str, str | None, str], Domain] = {}
_DOMAINS_LOCK = threading.Lock()


def resolve_ref(ref: str) -> Any:
    """'package.module:attr', or '/path/to/file.py:attr' (a file every worker can read), -> the object."""
    if ".py:" in ref:
        path, _, attr = ref.rpartition(":")
        module_name = "_ledgerlab_ref_" + hashlib.sha256(path.encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ExecutorError(f"domain_ref: cannot load {path!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        obj: Any = module
    else:
        module_name, sep, attr = ref.partition(":")
        if not sep:
            module_name, _, attr = ref.rpartition(".")
        if not module_name or not attr:
            raise ExecutorError(f"domain_ref must look like 'package.module:factory' or 'file.py:factory', "
                                f"not {ref!r}")
        obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def worker_domain(domain_name: str, domain_ref: str | None, options: dict[str, Any]) -> Domain:
    """The domain instance of this worker process (made once per name, ref and options)."""
    key = (domain_name, domain_ref, json.dumps(options, sort_keys=True, default=str))
    with _DOMAINS_LOCK:
        domain = _DOMAINS.get(key)
        if domain is None:
            if domain_ref:
                domain = resolve_ref(domain_ref)(**options)
            else:
                from ledgerlab.core.registry import load_domain

                domain = load_domain(domain_name, options)
            _DOMAINS[key] = domain
        return domain


def run_task(domain_name: str, domain_ref: str | None, options: dict[str, Any],
             request: RunRequest) -> RunResult:
    """The body of a run's Ray task: load the domain here, fill the GPU Ray assigned, run."""
    from ledgerlab.core.executors.local import safe_run

    try:
        domain = worker_domain(domain_name, domain_ref, options)
    except Exception as exc:  # noqa: BLE001 - a domain that cannot load is reported with the run
        tail = "".join(traceback.format_exception(exc)[-5:])
        return RunResult(status="crashed", error=f"the worker could not load domain {domain_name!r}: "
                                                  f"{type(exc).__name__}: {exc}", log_tail=tail)
    if request.device is None and ray is not None:
        gpu_ids = ray.get_gpu_ids()
        if gpu_ids:
            request = request.model_copy(update={"device": f"cuda:{gpu_ids[0]}"})
    return safe_run(domain, request)


# --------------------------------------------------------------------------------- on the driver


class RayExecutor:
    """Runs each run as a Ray task; `workers` is how many the campaign keeps in flight."""

    name = "ray"

    def __init__(self, domain_name: str, domain_options: dict[str, Any] | None = None, workers: int = 1,
                 address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
                 domain_ref: str | None = None, max_retries: int = 3, local_cpus: int | None = None,
                 init_options: dict[str, Any] | None = None) -> None:
        if ray is None:
            raise ExecutorError(INSTALL_HINT)
        self.domain_name = domain_name
        self.domain_options = dict(domain_options or {})
        self.domain_ref = domain_ref
        self.slots = max(1, int(workers))
        self.address = address or None
        self.num_cpus = num_cpus
        self.max_retries = max(0, int(max_retries))
        self._started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(address=self.address, include_dashboard=False, log_to_driver=False,
                                          ignore_reinit_error=True, **(init_options or {}))
            if self.address is None and local_cpus is not None:
                kwargs["num_cpus"] = int(local_cpus)  # only a new local instance takes a size
            try:
                ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, auth, bad address...
                where = self.address or "a new local instance"
                raise ExecutorError(f"could not start or reach Ray at {where}: {type(exc).__name__}: {exc}") \
                    from None
            self._started_ray = True
        if num_gpus is None:
            num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        self.num_gpus = float(num_gpus)
        self._task = ray.remote(run_task)
        self._runs: InFlight[Any] = InFlight("ray")  # ObjectRef -> run_id

    def resources_for(self, request: RunRequest) -> tuple[float, float]:
        """(num_cpus, num_gpus) Ray reserves for `request`."""
        cpus = request.threads or self.num_cpus or 1
        return float(cpus), self.num_gpus

    def submit(self, domain_name: str, request: RunRequest) -> None:
        """Start `request` as a Ray task (Ray queues it until its resources are free)."""
        if domain_name and domain_name != self.domain_name:
            raise ExecutorError(f"this executor runs domain {self.domain_name!r}, not {domain_name!r}")
        cpus, gpus = self.resources_for(request)
        if request.threads is None:
            request = request.model_copy(update={"threads": max(1, int(cpus))})
        task = self._task.options(num_cpus=cpus, num_gpus=gpus, max_retries=self.max_retries,
                                  retry_exceptions=False, name=f"ledgerlab-run-{request.run_id}")
        self._runs.add(request.run_id,
                       lambda: task.remote(self.domain_name, self.domain_ref, self.domain_options, request))

    def in_flight(self) -> int:
        """Runs submitted whose results `wait` has not returned yet."""
        return len(self._runs)

    def wait(self, timeout: float | None = None) -> list[tuple[str, RunResult]]:
        """Block until at least one run is done (or `timeout`); return every finished one, each exactly once.

        Returns [] on timeout or when nothing is in flight.
        """
        pending = self._runs.handles()
        if not pending:
            return []
        ready, _ = ray.wait(pending, num_returns=1, timeout=timeout, fetch_local=True)
        if not ready:
            return []
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0, fetch_local=True)
        results: list[tuple[str, RunResult]] = []
        seen: set[str] = set()
        for ref in ready:
            run_id = self._runs.pop(ref)
            if run_id is None or run_id in seen:
                continue
            seen.add(run_id)
            results.append((run_id, self._fetch(ref)))
        return results

    def shutdown(self) -> None:
        """Cancel runs in flight (politely, then by force); stop Ray if this executor started it."""
        refs = self._runs.close()
        if ray is None or not ray.is_initialized():
            return
        if refs:
            # A polite cancel raises KeyboardInterrupt in the task: a domain's sandbox kills its child group.
            for ref in refs:
                _quiet(ray.cancel, ref, force=False, recursive=True)
            deadline = time.monotonic() + CANCEL_GRACE_S
            left = refs
            while left and time.monotonic() < deadline:
                _, left = ray.wait(left, num_returns=len(left), timeout=0.2, fetch_local=False)
            for ref in left:
                _quiet(ray.cancel, ref, force=True, recursive=True)
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    @staticmethod
    def _fetch(ref: Any) -> RunResult:
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:
            kind = type(exc).__name__
            lost = isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                                    ray.exceptions.ObjectLostError))
            reason = "the worker was lost and the retries ran out" if lost else "the task failed"
            return RunResult(status="crashed", error=f"{reason} ({kind}): {str(exc)[:500]}",
                             log_tail=str(exc)[-4000:])
        if not isinstance(result, RunResult):
            return RunResult(status="crashed",
                             error=f"the task returned {type(result).__name__}, not a RunResult")
        return result


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - best effort while stopping
        pass


def from_config(config: ExecutorConfig, domain: Domain | None, domain_name: str, domain_options: dict[str, Any],
                **extra: Any) -> RayExecutor:
    """The `ray` entry of the `ledgerlab.executors` group: Ray tasks that rebuild the domain by name."""
    try:
        import ray as _ray  # noqa: F401 - imported afresh: tells a missing extra apart from other failures
    except ImportError:
        raise ExecutorError(INSTALL_HINT) from None
    address = None if config.ray_address in (None, "", "local") else config.ray_address
    return RayExecutor(domain_name, domain_options, config.workers, address, **extra)
