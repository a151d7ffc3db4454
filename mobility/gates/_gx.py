"""Great Expectations plumbing shared by the landing and publish gates.

Both gates validate pandas frames (GX over SQLAlchemy + duckdb-engine returns empty results, see
DESIGN.md) in a short-lived ephemeral context. When a gates folder is given, the context keeps
its expectation suites and validation results on disk under ``<gates>/gx`` and both gates build
into one Data Docs site at ``<gates>/data_docs``: an in-memory store would make each build delete
the pages of every other run (GX cleans site pages whose source result it cannot find).

Everything here turns GX results into plain outcomes; an expectation that raised is a failure.
`collect_cycles` frees what a validation leaves in reference cycles (the callers' data with it).
"""

from __future__ import annotations

import functools
import gc
import importlib
import importlib.util
import logging
import math
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # GX takes ~8 s to import: only the functions that run it import it
    import pandas as pd
    from great_expectations.data_context import AbstractDataContext

log = logging.getLogger(__name__)

DOCS_SITE = "gates"
# the Data Docs index lists the newest results only, so rebuilding it stays cheap as results pile up
DOCS_INDEX_LIMIT = 200

# GX keeps a process-wide "current context"; gates running in threads (parallel ingest) take turns
GX_LOCK = threading.RLock()


# ---------------------------------------------------------------------------- GX's import

class DeferredModule(types.ModuleType):
    """A module imported on first use of one of its attributes, not when it is imported.

    GX imports altair and scipy.stats when it is imported, for its distribution expectations only
    (KL divergence, KS tests), which the gates never use: about 60 MB of each gate process's
    memory and 0.6 s of its start. Python's `importlib.util.LazyLoader` cannot defer them: the
    import system reads a module's `__spec__` on every import of it, which loads a lazy module.
    This one has its `__spec__`, `__file__` and `__loader__` from the start, so only another
    attribute loads it (`__path__` too: a submodule is never imported before its package).
    """

    def __getattr__(self, attr: str) -> Any:
        with _DEFER_LOCK:  # only the swap: a lock held through an import could deadlock with its locks
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


_DEFER_LOCK = threading.Lock()
GX_DEFERRED = ("altair", "scipy.stats")


def defer_imports(names: tuple[str, ...] = GX_DEFERRED) -> None:
    """Put a `DeferredModule` in place of each named module not imported yet."""
    with _DEFER_LOCK:
        for name in names:
            if name not in sys.modules:
                spec = importlib.util.find_spec(name)  # a submodule's package is imported here
                if spec is not None:
                    module = DeferredModule(name)
                    module.__spec__, module.__package__, module.__loader__ = spec, spec.parent, spec.loader
                    module.__file__ = spec.origin
                    sys.modules[name] = module


defer_imports()  # before either gate imports GX


class GateFailed(RuntimeError):
    """The gate failed; the message names each failed expectation."""

    def __init__(self, message: str, result: "GateResult"):
        super().__init__(message)
        self.result = result


@dataclass
class ExpectationOutcome:
    frame: str
    expectation_type: str
    column: str | None
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_examples: list = field(default_factory=list)
    exception: str | None = None
    rule: str | None = None  # the contract rule (or gate check) the expectation implements
    unexpected_index: list = field(default_factory=list)  # frame rows, for example rows in reports

    def describe(self) -> str:
        where = f"{self.frame}.{self.column}" if self.column else self.frame
        if self.exception:
            return f"{self.expectation_type} on {where}: GX error: {self.exception}"
        detail = f"observed {self.observed_value!r}" if self.observed_value is not None else ""
        if self.unexpected_count:
            detail = f"{self.unexpected_count} unexpected, e.g. {self.unexpected_examples[:5]!r}"
        return f"{self.expectation_type} on {where}: {detail}".rstrip(": ")


@dataclass
class GateResult:
    gate: str
    run_at: str
    k: int | None = None
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    result_path: Path | None = None
    data_docs: str | None = None
    notes: list[str] = field(default_factory=list)  # what the gate could not judge, and why

    @property
    def success(self) -> bool:
        # an empty gate proves nothing: no outcomes is a failure too
        return bool(self.outcomes) and all(o.success for o in self.outcomes)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def message(self) -> str:
        if self.success:
            return f"{self.gate} gate passed ({len(self.outcomes)} expectations)"
        if not self.outcomes:
            return f"{self.gate} gate failed: no expectation was evaluated"
        lines = [f"{self.gate} gate failed {len(self.failed)} of {len(self.outcomes)} expectations:"]
        return "\n".join(lines + [f"- {o.describe()}" for o in self.failed])

    def summary(self) -> dict:
        return {
            "gate": self.gate,
            "success": self.success,
            "run_at": self.run_at,
            "k": self.k,
            "expectations": len(self.outcomes),
            "failed": [o.describe() for o in self.failed],
            "notes": self.notes,
            "result_path": str(self.result_path) if self.result_path else None,
            "data_docs": self.data_docs,
        }


def gate_error(exc: BaseException, frame: str = "*") -> ExpectationOutcome:
    """The gate itself broke: recorded as a failed check, never a pass or a skip."""
    return ExpectationOutcome(
        frame=frame, expectation_type="gate_run", column=None, success=False,
        exception=f"{type(exc).__name__}: {exc}",
    )


def exception_text(info: Any) -> str | None:
    """GX reports errors either flat or keyed by metric id; find any raised exception in either."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        found = exception_text(value)
        if found:
            return found
    return None


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist") and getattr(value, "ndim", 0):  # numpy arrays (list columns)
        return json_safe(value.tolist())
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return value


def outcomes_from(result: Any, frame: str) -> list[ExpectationOutcome]:
    """One outcome per expectation of a GX suite validation result."""
    outcomes = []
    for r in result.results:
        exception = exception_text(r.exception_info)
        details = r.result or {}
        config = r.expectation_config
        outcomes.append(
            ExpectationOutcome(
                frame=frame,
                expectation_type=config.type,
                column=config.kwargs.get("column") or config.kwargs.get("column_A"),
                # an expectation that raised is a failure whatever GX put in `success`
                success=bool(r.success) and exception is None,
                observed_value=json_safe(details.get("observed_value")),
                unexpected_count=details.get("unexpected_count"),
                unexpected_examples=json_safe(details.get("partial_unexpected_list") or []),
                exception=exception,
                rule=(config.meta or {}).get("rule"),
                unexpected_index=json_safe(details.get("partial_unexpected_index_list") or []),
            )
        )
    return outcomes


# ---------------------------------------------------------------------------- context and docs

def new_context(gates_dir: Path | None) -> "AbstractDataContext":
    """An ephemeral GX context; with ``gates_dir``, suites and results persist there and Data Docs build."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    if gates_dir is not None:
        store = gates_dir / "gx"
        config.stores["expectations_store"] = {
            "class_name": "ExpectationsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(store / "expectations")},
        }
        config.stores["validation_results_store"] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(store / "validations")},
        }
        config.data_docs_sites = {
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(gates_dir / "data_docs"),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": DOCS_INDEX_LIMIT,
                },
            }
        }
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


_KEPT: "OrderedDict[str | None, AbstractDataContext]" = OrderedDict()
_KEPT_LOCK = threading.Lock()
KEPT_CONTEXTS = 4  # gates folders whose context a process keeps (one per workdir it lands into)


def kept_context(gates_dir: Path | None) -> "AbstractDataContext":
    """The process's context for `gates_dir`, made on first use and kept for the next batches.

    GX writes out a context's whole configuration as YAML each time a data source, asset or batch
    definition is added to it, which a new context per batch did three times for each of its two
    frames: 13% of a landing gate's fixed cost. What the gates keep in a context (the suites, the
    results Data Docs render) is keyed by suite and run, so batches can share it.
    """
    key = None if gates_dir is None else str(gates_dir)
    with _KEPT_LOCK:
        context = _KEPT.pop(key, None) or new_context(gates_dir)
        _KEPT[key] = context
        while len(_KEPT) > KEPT_CONTEXTS:
            _KEPT.popitem(last=False)
        return context


_FROZEN = False


def collect_cycles() -> None:
    """Free what a validation left in reference cycles now, not at Python's next full collection,
    which a process holding GX's ~400,000 long-lived objects seldom runs.

    GX parses suite parameters with pyparsing, which raises and catches exceptions as it goes; each
    caught exception's traceback holds its frames and, through `f_back`, their callers': the
    gate's and land_batch's frames, with the slice, the batch's bytes and the tables they hold,
    outlive the calls in cycles. A task-like process (one Arrow thread) landing five 100,000-trip
    pages so peaked at 704 to 710 MB, against 594 to 600 with this after each slice. The first call
    (a full collection, about 0.2 s) also freezes what lives then (imports, GX's context and
    caches) out of later collections, which then take about a millisecond.
    """
    global _FROZEN
    gc.collect()
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


def make_current(context: "AbstractDataContext") -> None:
    """Make `context` GX's process-wide current one again (a gate that keeps its context across
    several validations may have let another thread's gate take that place in between)."""
    from great_expectations.data_context.data_context.context_factory import project_manager

    project_manager.set_project(context)


def validate_frame(
    context: "AbstractDataContext",
    frame: "pd.DataFrame",
    suite: Any,
    *,
    asset: str,
    parameters: Mapping[str, Any] | None = None,
    result_format: Any = "SUMMARY",
) -> tuple[Any, str]:
    """Validate one pandas frame with a suite; returns the GX result and the batch id."""
    validator = frame_validator(context, frame, asset=asset)
    return validate_with(validator, suite, parameters=parameters, result_format=result_format)


def _spare_gx_needless_work() -> None:
    """GX fingerprints each pandas frame it is given (`hash_pandas_object` over every cell) only to
    label the result's batch markers, and skips it for frames over a size threshold. The gates name
    their batches themselves, and the fingerprint was half of a landing gate's time: skip it always.

    GX also rebuilds an expectation's configuration each time it reads one (see
    `_build_each_configuration_once_per_validation`), and each build turns the class name into the
    expectation type with two regexes (`camel_to_snake`): 15% of a landing gate's fixed cost per
    validation before those builds were cut. The function is pure, so its answers are kept."""
    from great_expectations.execution_engine import pandas_execution_engine
    from great_expectations.expectations import expectation

    pandas_execution_engine.HASH_THRESHOLD = 0
    if not hasattr(expectation.camel_to_snake, "cache_info"):
        expectation.camel_to_snake = functools.lru_cache(maxsize=1024)(expectation.camel_to_snake)
    _build_each_configuration_once_per_validation()


_VALIDATION = threading.local()  # .built: {id(expectation): (expectation, its configuration)}


def _build_each_configuration_once_per_validation() -> None:
    """GX reads an expectation's `configuration` once per keyword it looks up, and each read
    builds it anew from the pydantic model: about 110 builds per expectation and validation, a
    quarter to a third of a gate's fixed cost. While GX validates the configurations of a suite
    (`Validator.graph_validate`), the expectations it makes of them stay as they are, so each is
    built once there. Elsewhere every read builds anew, as before: GX puts suite parameters into
    the configurations it gets before that, in place.
    """
    from great_expectations.expectations.expectation import Expectation
    from great_expectations.validator.validator import Validator

    if getattr(Validator.graph_validate, "_builds_once", False):
        return
    build, graph_validate = Expectation.configuration.fget, Validator.graph_validate

    def configuration(self: Any) -> Any:
        built = getattr(_VALIDATION, "built", None)
        if built is None:
            return build(self)
        hit = built.get(id(self))
        if hit is None or hit[0] is not self:  # held until the validation ends: no id is reused
            hit = built[id(self)] = (self, build(self))
        return hit[1]

    @functools.wraps(graph_validate)
    def validate(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_VALIDATION, "built", None) is not None:
            return graph_validate(self, *args, **kwargs)
        _VALIDATION.built = {}
        try:
            return graph_validate(self, *args, **kwargs)
        finally:
            _VALIDATION.built = None

    validate._builds_once = True  # type: ignore[attr-defined]
    Expectation.configuration = property(configuration, doc=Expectation.configuration.__doc__)
    Validator.graph_validate = validate


def frame_validator(context: "AbstractDataContext", frame: "pd.DataFrame", *, asset: str) -> Any:
    """A GX validator on one pandas frame, to run one or more suite validations on it.

    GX's own `Batch.validate` builds the batch a second time (a new validator from the batch's
    request), and each build fingerprints the whole frame (`hash_pandas_object`): this validator
    builds it once, on first use, and keeps it (with GX's metric cache) for the next run.
    """
    from great_expectations.validator.v1_validator import Validator

    _spare_gx_needless_work()
    source = _pandas_source(context)
    try:
        asset_obj = source.get_asset(asset)
    except LookupError:
        asset_obj = source.add_dataframe_asset(asset)
    definition = next(iter(asset_obj.batch_definitions), None) or asset_obj.add_batch_definition_whole_dataframe("whole")
    return Validator(batch_definition=definition, batch_parameters={"dataframe": frame})


def validate_with(validator: Any, suite: Any, *, parameters: Mapping[str, Any] | None = None,
                  result_format: Any = "SUMMARY") -> tuple[Any, str]:
    """One suite validation with a `frame_validator`; returns the GX result and the batch id."""
    validator.result_format = result_format
    result = validator.validate_expectation_suite(suite, expectation_parameters=dict(parameters or {}))
    return result, validator.active_batch_id


def store_result(context: "AbstractDataContext", suite: Any, result: Any, *, batch_id: str, run_name: str) -> Any:
    """Keep a result (and its suite) in the context's stores so Data Docs can render it; returns its key."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(timezone.utc))
    result.meta["run_id"] = run_id
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
        run_id=run_id,
        batch_identifier=batch_id,
    )
    context.suites.add_or_update(suite)
    context.validation_results_store.set(key, result)
    return key


def _pandas_source(context: "AbstractDataContext") -> Any:
    try:
        return context.data_sources.get("frames")
    except (KeyError, ValueError, LookupError):
        return context.data_sources.add_pandas("frames")


def build_docs(context: "AbstractDataContext", keys: list[Any]) -> str | None:
    """Render the pages of these results (and their suites) into the shared site; rebuild its index."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    suites = {k.expectation_suite_identifier.name for k in keys}
    resources = [*keys, *(ExpectationSuiteIdentifier(name=s) for s in suites)]
    return context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=resources).get(DOCS_SITE)
