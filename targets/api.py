"""The export API (next to factory.api, which sits below targets/ and cannot import it): the
functions the CLI's `export` / `targets` commands, the chat assistant and the server call."""

from __future__ import annotations

from typing import Callable

from factory.api import Home, session
from factory.models import resolve_model
from targets.base import TARGETS
from targets.compress import CompressPlan
from targets.compress import compress as run_compress
from targets.driver import ExportJob, ExportPlan


def export(ref: str, target: str, *, precision: str = "fp32", max_drop: float = 1.0, device: str | None = None,
           calibration_size: int = 300, dynamic_batch: bool = False, keep_if_slower: bool = False,
           strategies: tuple[str, ...] | None = None, home: Home = None,
           log: Callable[[str], None] | None = None) -> dict:
    """Export model `NAME[:vN]` to `target` at `precision` with parity and re-evaluation.

    Returns: {artifact, path, size_mb, accuracy (re-evaluated with the target's runtime),
    reference_accuracy (PyTorch FP32), accuracy_drop_points, parity, compression, notes}.
    Raises: NotFoundError (unknown target / model, with a suggestion), UnsupportedSpecError (every
    violation of the target's capabilities at once), ParityError, BudgetError (over max_drop, or
    INT8 not faster than FP32), DatasetError (no calibration data). Nothing is written on failure.
    `strategies` restricts the INT8 strategies tried (default: the target's own list, in its order).
    """
    plan = ExportPlan(target=target, precision=precision, device=device, max_drop=max_drop,
                      calibration_size=calibration_size, dynamic_batch=dynamic_batch, keep_if_slower=keep_if_slower,
                      options={"strategies": tuple(strategies)} if strategies else {})
    with session(home) as (ws, catalog):
        return ExportJob(ws, catalog, ref, plan, log=log).run()


def compress(ref: str, target: str, *, prune: float | None = None, target_latency_ms: float | None = None,
             max_drop: float = 1.0, precision: str = "fp32", finetune_epochs: int = 15, keep_if_slower: bool = False,
             home: Home = None, log: Callable[[str], None] | None = None) -> dict:
    """Prune model `NAME[:vN]` (structured channels) toward `prune` (fraction of MACs to remove) or
    `target_latency_ms` (measured with `target`'s runtime), fine-tune it, register it as a new version
    and export that to `target` at `precision`, all within `max_drop` points of the original.

    Returns: {model, version (the new one), artifact, path, size_mb, accuracy, reference_accuracy,
    parity, compression, pruning: {before, after (params, MACs, latency_ms, accuracy), ...}}.
    Raises: BudgetError (nothing registered), UnsupportedSpecError, ConfigError, NotFoundError.
    """
    plan = CompressPlan(target=target, prune=prune, target_latency_ms=target_latency_ms, max_drop=max_drop,
                        precision=precision, finetune_epochs=finetune_epochs, keep_if_slower=keep_if_slower)
    with session(home) as (ws, catalog):
        return run_compress(ws, catalog, ref, plan, log=log)


def list_targets() -> list[dict]:
    """Every registered target with its capabilities and what is missing to export / run it here."""
    out = []
    for name in TARGETS.names():
        caps = TARGETS.get(name).capabilities
        out.append({"target": name, **caps.to_dict(), "missing_for_export": caps.missing_modules("export"),
                    "missing_for_runtime": caps.missing_modules("runtime")})
    return out


def list_artifacts(ref: str | None = None, *, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        if ref is None:
            return catalog.artifacts()
        row = resolve_model(catalog, ref)
        return catalog.artifacts(row["name"], row["version"])
