"""Every periodic schedule, declared in one place and loaded into django-celery-beat.

``schedules_sync`` only adds the schedules that are missing: an operator's edits in the admin
(interval, enabled flag, queue) survive every later deployment. Each message expires after one
interval, so a backlog (beat running while the workers were down) never replays stale runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    every_seconds: int
    queue: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        name="executor: tick",
        task="routing.tasks.executor_tick_task",
        every_seconds=settings.EXECUTOR_INTERVAL_SECONDS,
        queue="executor",
        description="The executor tick (single-flight; a tick that finds the lock is skipped).",
    ),
    Schedule(
        name="heartbeat: worker",
        task="doctor.tasks.heartbeat_task",
        every_seconds=10,
        queue="default",
        kwargs={"component": "worker"},
        description="The executor/default worker proves it is alive (and beat with it).",
    ),
    Schedule(
        name="heartbeat: ml",
        task="doctor.tasks.heartbeat_task",
        every_seconds=10,
        queue="ml",
        kwargs={"component": "ml"},
        description="The ML worker proves it is alive.",
    ),
    Schedule(
        name="risk: periodic snapshot",
        task="risk.tasks.risk_snapshot_periodic_task",
        every_seconds=300,
        queue="default",
        description="Snapshot the risk state every 5 minutes (changes snapshot themselves).",
    ),
    Schedule(
        name="heartbeats: prune",
        task="doctor.tasks.heartbeats_prune_task",
        every_seconds=3600,
        queue="default",
        description="Drop heartbeats older than the retention window.",
    ),
    Schedule(
        name="routing: router health refresh",
        task="routing.tasks.router_health_refresh_task",
        every_seconds=60,
        queue="default",
        description=(
            "Router health aggregates brought up to date and pushed to open pages (fills also "
            "queue a refresh as they commit); hourly cells past the hourly windows dropped."
        ),
    ),
    Schedule(
        name="ml: outcomes, promotion and insights",
        task="mlinsights.tasks.ml_cycle_task",
        every_seconds=60,
        queue="ml",
        description=(
            "Predictions whose horizon passed get their outcome; a shadow model that beats the "
            "active one by the margin is promoted (when ML settings allow); insights cached "
            "and pushed to the ML Insights tab."
        ),
    ),
    Schedule(
        name="ml: daily retrain",
        task="mlinsights.tasks.model_retrain_task",
        every_seconds=24 * 3600,
        queue="ml",
        description="A new shadow model from the last training_days of bars (single-flight).",
    ),
    Schedule(
        name="doctor: snapshot",
        task="doctor.tasks.doctor_snapshot_task",
        every_seconds=60,
        queue="default",
        description=(
            "The seed's cron_doctor_cache: every check run, the snapshot cached for the Doctor "
            "tab and the confidence series; a failing check opens an incident (and alerts)."
        ),
    ),
    Schedule(
        name="alerts: sweep",
        task="doctor.tasks.alerts_sweep_task",
        every_seconds=60,
        queue="default",
        description=(
            "Pending alerts whose delivery task never came (lost between the commit and the "
            "broker, or killed mid-send) are queued again: a halt alert is never lost."
        ),
    ),
    Schedule(
        name="routing: reconcile",
        task="routing.tasks.reconcile_task",
        every_seconds=60,
        queue="default",
        description=(
            "Local orders, positions and balance against the venue's, repaired and reported "
            "(under the executor's lock; a position difference that persists halts the symbol)."
        ),
    ),
    Schedule(
        name="firestore: drain outbox",
        task="tradingsite.tasks.outbox_drain_task",
        every_seconds=5,
        queue="default",
        description=(
            "Waiting Firestore outbox rows sent in batches (single-flight; backs off while "
            "Firestore is down; does nothing while FIRESTORE_PROJECT is unset)."
        ),
    ),
)


def schedules_sync(*, schedules: tuple[Schedule, ...] = SCHEDULES) -> list[str]:
    """Create the declared schedules that do not exist yet; return the names created."""
    created: list[str] = []
    with transaction.atomic():
        existing = set(
            PeriodicTask.objects.filter(name__in=[s.name for s in schedules]).values_list(
                "name", flat=True
            )
        )
        for schedule in schedules:
            if schedule.name in existing:
                continue
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=schedule.every_seconds, period=IntervalSchedule.SECONDS
            )
            PeriodicTask.objects.create(
                name=schedule.name,
                task=schedule.task,
                interval=interval,
                queue=schedule.queue,
                kwargs=json.dumps(schedule.kwargs),
                expire_seconds=schedule.every_seconds,
                description=schedule.description,
            )
            created.append(schedule.name)
    if created:
        logger.info("schedules created: %s", ", ".join(created))
    return created


def schedules_sync_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    # post_migrate also runs for test databases; the plan is empty when nothing was applied.
    schedules_sync()
