from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tradingsite.firestore import DrainReport, firestore_client, mirror_publish
from tradingsite.guard import (
    FirestoreNotConfigured,
    ProdWriteRefused,
    check_command_write,
    guard_context,
)

NOT_CONFIGURED = (
    "Firestore is not configured: set FIRESTORE_PROJECT (and FIRESTORE_EMULATOR_HOST=host:port "
    "to use the emulator)"
)


def drain_summary(drain: DrainReport) -> str:
    text = f"{drain.written} document(s) written, {drain.remaining} row(s) still waiting"
    if drain.parked:
        text += f", {drain.parked} parked (see the admin)"
    if drain.skipped:
        text += f"; drain skipped: {drain.skipped}"
    if drain.error:
        text += f"; drain stopped: {drain.error}"
    return text


class Command(BaseCommand):
    help = (
        "Publish the current state to Firestore now: every mirrored document is enqueued from "
        "the database and the outbox drained. Overwrites production data: in prod it needs "
        "ALLOW_PROD_WRITES=1 and --allow-prod."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-prod", action="store_true", help="Required (with ALLOW_PROD_WRITES=1) in prod."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Both guards before anything is enqueued: a refusal changes nothing.
        try:
            check_command_write(
                guard_context(), command="publish_state", allow_prod_flag=options["allow_prod"]
            )
            firestore_client()
        except FirestoreNotConfigured:
            raise CommandError(NOT_CONFIGURED) from None
        except ProdWriteRefused as error:
            raise CommandError(str(error)) from None
        report = mirror_publish()
        for collection, count in report.enqueued.items():
            self.stdout.write(f"{collection:<12} {count} document(s) enqueued")
        self.stdout.write(drain_summary(report.drain))
        if report.drain.error or report.drain.remaining or report.drain.parked:
            raise CommandError(
                "not everything reached Firestore; the periodic drain keeps trying (run "
                "fs_doctor to compare)"
            )
