"""Airflow provider metadata, found through the `apache_airflow_provider` entry point (pyproject.toml)."""

from __future__ import annotations


def get_provider_info() -> dict:
    from datapruner import __version__

    return {
        "package-name": "datapruner",
        "name": "datapruner",
        "description": "Prune image-text WebDataset datasets (embed, cluster, score, select, write) as Airflow tasks.",
        "versions": [__version__],
        "integrations": [{"integration-name": "datapruner", "tags": ["software"]}],
        "operators": [{"integration-name": "datapruner",
                       "python-modules": ["datapruner.integrations.airflow.operator"]}],
    }
