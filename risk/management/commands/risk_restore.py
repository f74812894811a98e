from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from risk.models import RiskSnapshot
from risk.services import RiskStateUnavailable, risk_snapshot_restore
from tradingsite.guard import ProdWriteRefused, check_command_write, guard_context


class Command(BaseCommand):
    help = "Replace the live risk state with a snapshot (the newest valid one by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--snapshot", type=int, help="Snapshot id (default: newest valid).")
        parser.add_argument("--reason", required=True, help="Why (recorded with the restore).")
        parser.add_argument(
            "--allow-prod", action="store_true", help="Required (with ALLOW_PROD_WRITES=1) in prod."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_command_write(
                guard_context(), command="risk_restore", allow_prod_flag=options["allow_prod"]
            )
            row = risk_snapshot_restore(
                snapshot_id=options["snapshot"], actor="risk_restore", note=options["reason"]
            )
        except RiskSnapshot.DoesNotExist:
            raise CommandError(f"no snapshot #{options['snapshot']}") from None
        except (ProdWriteRefused, RiskStateUnavailable, ValueError) as error:
            raise CommandError(str(error)) from None
        state = "HALTED: " + row.halt_reason if row.halted else "trading"
        self.stdout.write(f"restored: state version {row.version}, NAV {row.nav}, {state}")
