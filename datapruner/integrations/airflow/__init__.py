"""Airflow integration (the `airflow` extra): DataprunerOperator and the provider metadata.

The operator is imported on first use, so `get_provider_info` loads without touching airflow.sdk.
"""

from __future__ import annotations

from datapruner.integrations.airflow.provider import get_provider_info

__all__ = ["DataprunerOperator", "get_provider_info"]


def __getattr__(name: str):
    if name == "DataprunerOperator":
        from datapruner.integrations.airflow.operator import DataprunerOperator

        return DataprunerOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
