from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from doctor.models import DoctorSnapshot
from doctor.snapshots import snapshot_take
from tradingsite.guard import ProdWriteRefused, check_command_write, guard_context


class Command(BaseCommand):
    help = (
        "Run the checks and cache the snapshot now (what the 'doctor: snapshot' schedule does): "
        "stored, mirrored, pushed to open pages; failing checks open incidents (and alerts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-prod", action="store_true", help="Required (with ALLOW_PROD_WRITES=1) in prod."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_command_write(
                guard_context(), command="cron_doctor_cache", allow_prod_flag=options["allow_prod"]
            )
        except ProdWriteRefused as error:
            raise CommandError(str(error)) from None
        snapshot = snapshot_take(trigger=DoctorSnapshot.Trigger.COMMAND)
        self.stdout.write(
            f"snapshot #{snapshot.pk}: {snapshot.status}, confidence {snapshot.confidence:.2f}"
        )
