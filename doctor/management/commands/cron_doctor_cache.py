from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from doctor.alerts import alerts_deliver_due
from doctor.models import DoctorSnapshot
from doctor.snapshots import snapshot_take
from tradingsite.guard import ProdWriteRefused, check_command_write, guard_context


class Command(BaseCommand):
    help = (
        "Run the checks and cache the snapshot now (what the 'doctor: snapshot' schedule does): "
        "stored, mirrored, pushed to open pages; failing checks open incidents, and the "
        "alerts due are sent from here. Run it from the system's cron too: it needs neither "
        "beat nor the workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-prod", action="store_true", help="Required (with ALLOW_PROD_WRITES=1) in prod."
        )
        parser.add_argument(
            "--no-alerts",
            action="store_true",
            help="Leave pending alerts to the workers instead of sending them from here.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_command_write(
                guard_context(), command="cron_doctor_cache", allow_prod_flag=options["allow_prod"]
            )
        except ProdWriteRefused as error:
            raise CommandError(str(error)) from None
        try:
            snapshot = snapshot_take(trigger=DoctorSnapshot.Trigger.COMMAND)
            self.stdout.write(
                f"snapshot #{snapshot.pk}: {snapshot.status}, confidence {snapshot.confidence:.2f}"
            )
        finally:
            # Run from the system's cron, this is the watchdog that needs neither beat nor the
            # workers: the alerts raised (now or before) are sent from here, even when the
            # snapshot itself could not be taken.
            if not options["no_alerts"]:
                outcomes = alerts_deliver_due()
                if outcomes:
                    listed = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
                    self.stdout.write(f"alerts: {listed}")
