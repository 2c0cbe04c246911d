"""The report stage: RUN/report/index.html (barrier). Its token is what it shows: the manifest's digest
and the written shards' state, so every command that changes either rebuilds it."""

from __future__ import annotations

from datapruner.steps.contract import Context, Step, barrier_digest, one_part, token_of


def report_token(ctx: Context, part: str) -> str:
    from datapruner.report.facts import write_state
    from datapruner.report.html import LAYOUT

    return token_of(barrier_digest(ctx, "select", "manifest"), write_state(ctx.run), LAYOUT)


def run_report(ctx: Context, part: str) -> dict:
    from datapruner.report.html import build_report

    return {"report": build_report(ctx.run, ctx.cfg.seed, ctx.cfg.max_image_pixels)}


STEPS = [
    Step("report", "barrier", "report", one_part("report"), report_token, lambda rd, part: [rd.report_html],
         run_report, after=("select",), also_in=("select", "write"),
         untokened={"seed": "which samples the galleries and the map show, not what the run selected",
                    "max_image_pixels": "which thumbnails are drawn (the run's validity is embed's)"}),
]
