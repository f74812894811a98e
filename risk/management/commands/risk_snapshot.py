from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from risk.models import RiskSnapshot
from risk.services import RiskStateUnavailable, risk_snapshot_write


class Command(BaseCommand):
    help = "Write a snapshot of the live risk state now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--note", default="", help="Why (kept with the snapshot).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            snapshot = risk_snapshot_write(
                reason=RiskSnapshot.Reason.MANUAL, actor="risk_snapshot", note=options["note"]
            )
        except RiskStateUnavailable as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"snapshot #{snapshot.pk} of state version {snapshot.state_version}")
