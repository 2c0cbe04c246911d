"""Loaded by every Python process started with this folder on PYTHONPATH (a Ray worker given it through the run's
runtime_env): each SemDeDup group takes DATAPRUNER_TEST_DEDUP_DELAY_S longer, so a test can kill a node while
the dedup step is under way. Test scaffolding only: nothing in datapruner reads the variable."""

import os
import time

DELAY_S = float(os.environ.get("DATAPRUNER_TEST_DEDUP_DELAY_S", "0"))

if DELAY_S > 0:
    from datapruner.metrics import semdedup

    _score_group = semdedup.score_group

    def slow_score_group(*args, **kwargs):
        time.sleep(DELAY_S)
        return _score_group(*args, **kwargs)

    semdedup.score_group = slow_score_group
