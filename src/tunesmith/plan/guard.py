"""The plan inside `tunesmith train`: refuse a run that will not fit before anything loads, record the plan.

plan = check_plan(config, force)     # before the run directory, data splits or weights
...train...
record_plan(run_dir, plan)                  # plan.json next to manifest.json's measured numbers
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from tunesmith.errors import ConfigError

log = logging.getLogger(__name__)
PLAN_FILE = "plan.json"


class WillNotFit(ConfigError):
    """The plan says the run needs more memory than the device has."""


def check_plan(config, force: bool = False):
    """The run's plan; raises WillNotFit (exit 2, with the advice) unless it fits or `force`.

    A plan that cannot be made (an architecture the meta-device build does not know, a model or data problem)
    does not block training: it is logged and training goes on without one, reporting real problems in its
    own words.
    """
    if os.environ.get("TUNESMITH_NO_PLAN") == "1":
        return None
    from tunesmith.plan.build import plan_config
    from tunesmith.plan.report import size

    try:
        # training needs the fit verdict, not a time estimate: no calibration in front of every run
        plan = plan_config(config, calibrate_time=False)
    except Exception as exc:  # noqa: BLE001 - the estimate is advice; training itself reports real problems
        log.warning("no memory plan for this run (%s: %s); training without the fit check", type(exc).__name__, exc)
        return None
    if plan.fits or force:
        return plan
    raise WillNotFit(
        f"this run needs about {size(plan.peak)} at its peak but {plan.device} has {size(plan.capacity)} "
        f"({plan.capacity_note}); `tunesmith plan` shows the parts",
        [
            f"--set {' --set '.join(a['set'])}: peak {size(a['peak'])}{'' if a['fits'] else ' (still too much)'} ({a['why']})"
            for a in plan.advice
        ],
        hint="apply one of the changes above, or add --force to try anyway",
    )


def record_plan(run_dir: str | Path, plan) -> None:
    """Write plan.json into the run directory (what `tunesmith report` compares with the measured numbers)."""
    if plan is None:
        return
    path = Path(run_dir) / PLAN_FILE
    if path.parent.exists():
        path.write_text(json.dumps(plan_summary(plan), indent=2, default=str) + "\n", encoding="utf-8")


def plan_summary(plan) -> dict:
    """The numbers a run directory keeps: peak and parts (bytes), seconds per step, and the assumptions."""
    return {
        "device": plan.device,
        "precision": plan.precision,
        "peak": plan.peak,
        "capacity": plan.capacity,
        "fits": plan.fits,
        "parts": {p.name: p.bytes for p in plan.parts},
        "seconds_per_step": plan.seconds_per_step,
        "total_seconds": plan.total_seconds,
        "steps": plan.workload.steps,
        "assumptions": plan.assumptions,
        "calibration": plan.calibration,
    }
