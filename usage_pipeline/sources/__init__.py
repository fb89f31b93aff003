"""The source registry: source key → package. Adding a vendor is one line here.

Each source package (`usage_pipeline/sources/<key>/__init__.py`) exposes the same names:

    KEY: str                      the source key, used everywhere (asset group, vendor column)
    BACKFILLABLE: bool            True only for windowed APIs (Workato); others refuse past ticks
    partitions_def                the Dagster partitions of its raw and staging assets
    definitions(settings)         -> dg.Definitions: raw + staging assets, checks, jobs, schedules, resources
    tick_partition_keys(now)      -> list[str]: the partitions one scheduled tick pulls at `now`
    stage(warehouse, landing, partition_key) -> StageReport: parse raw → staging (no network)
    check_credentials(settings)   -> str: one cheap authenticated call, in plain words (doctor)
    ensure_staging(warehouse)     create its staging tables if missing (models read them even when disabled)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from usage_pipeline.settings import SOURCE_KEYS, Settings

SOURCES = {key: f"usage_pipeline.sources.{key}" for key in SOURCE_KEYS}


def source_module(key: str) -> ModuleType:
    if key not in SOURCES:
        raise KeyError(f"unknown source {key!r}; known sources: {', '.join(SOURCES)}")
    return importlib.import_module(SOURCES[key])


def enabled_sources(settings: Settings) -> list[ModuleType]:
    return [source_module(key) for key in settings.enabled()]


def all_sources() -> list[ModuleType]:
    return [source_module(key) for key in SOURCES]


_staging_ensured: set[str] = set()


def ensure_all_staging(warehouse) -> None:
    """Create every source's staging tables (once per process and warehouse), so the models
    run whichever sources are enabled."""
    if warehouse.url in _staging_ensured:
        return
    for source in all_sources():
        source.ensure_staging(warehouse)
    _staging_ensured.add(warehouse.url)
