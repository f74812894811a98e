from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tradingsite.celery import app
from tradingsite.schedules import SCHEDULES, schedules_sync

pytestmark = pytest.mark.django_db


def test_every_declared_schedule_exists_after_migrate() -> None:
    PeriodicTask.objects.all().delete()

    call_command("migrate", interactive=False, verbosity=0)

    for schedule in SCHEDULES:
        task = PeriodicTask.objects.get(name=schedule.name)
        assert task.task == schedule.task
        assert task.enabled
        assert task.queue == schedule.queue
        assert json.loads(task.kwargs) == schedule.kwargs
        assert (task.interval.every, task.interval.period) == (schedule.every_seconds, "seconds")
        # A message not picked up within one interval is dropped, never replayed late.
        assert task.expire_seconds == schedule.every_seconds


def test_every_scheduled_task_is_registered_with_the_celery_app() -> None:
    app.loader.import_default_modules()
    assert {s.task for s in SCHEDULES} <= set(app.tasks)


def test_an_operators_edit_survives_the_next_set_up() -> None:
    schedules_sync()
    edited = PeriodicTask.objects.get(name=SCHEDULES[0].name)
    slower, _ = IntervalSchedule.objects.get_or_create(every=300, period=IntervalSchedule.SECONDS)
    edited.interval = slower
    edited.enabled = False
    edited.queue = "default"
    edited.save()

    created = schedules_sync()

    assert created == []
    edited.refresh_from_db()
    assert (edited.interval.every, edited.enabled) == (300, False)
    assert PeriodicTask.objects.filter(name=SCHEDULES[0].name).count() == 1


def test_a_deleted_schedule_is_added_back_and_only_that_one() -> None:
    schedules_sync()
    PeriodicTask.objects.filter(name=SCHEDULES[1].name).delete()

    assert schedules_sync() == [SCHEDULES[1].name]
