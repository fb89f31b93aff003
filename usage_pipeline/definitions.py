"""The usage_pipeline code location: every asset, check, schedule, sensor and resource."""

import dagster as dg

from usage_pipeline import http, models, settings
from usage_pipeline.landing import LandingStore
from usage_pipeline.sources import enabled_sources, ensure_all_staging
from usage_pipeline.warehouse import Warehouse


def build(config: settings.Settings) -> dg.Definitions:
    """Definitions for a given configuration (tests build them from a fake environment)."""
    http.install_log_redaction()
    sources = enabled_sources(config)
    warehouse = Warehouse(url=config.warehouse_url)
    shared = dg.Definitions(
        resources={
            "warehouse": warehouse,
            "landing": LandingStore(root=str(config.landing_dir)),
        }
    )
    return dg.Definitions.merge(
        *(source.definitions(config) for source in sources),
        models.build_definitions(
            config.models_dir, vars={"at_risk_share": config.at_risk_share}, dialect=warehouse.dialect,
            prepare=ensure_all_staging,
        ),
        _marts_definitions(config),
        shared,
    )


def _marts_definitions(config: settings.Settings) -> dg.Definitions:
    """Cross-vendor alerts, report and the marts job (see usage_pipeline/marts.py)."""
    from usage_pipeline import marts

    return marts.definitions(config)


@dg.definitions
def defs() -> dg.Definitions:
    return build(settings.load())  # a half-made configuration fails here, naming the variable
