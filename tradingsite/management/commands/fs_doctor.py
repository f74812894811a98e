from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from google.api_core.exceptions import GoogleAPICallError

from tradingsite.firestore import (
    MirrorDiff,
    firestore_client,
    mirror_compare,
    mirror_repair,
)
from tradingsite.guard import (
    FirestoreNotConfigured,
    ProdWriteRefused,
    check_command_write,
    guard_context,
)
from tradingsite.management.commands.publish_state import NOT_CONFIGURED, drain_summary

SHOWN_IDS = 10
EXTRA_ADVICE = (
    "extra documents are in Firestore but not in the database (a row deleted or pruned here, "
    "or another deployment writing to the same project): fs_doctor never deletes them; delete "
    "them in the Firestore console once you know where they came from"
)


def _ids(ids: tuple[str, ...]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f", … ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")


class Command(BaseCommand):
    help = (
        "Compare the database with Firestore: documents missing, stale (different) or extra "
        "per mirrored collection. Exits non-zero when they differ. --repair enqueues and sends "
        "the database's version of the missing and stale ones (prod: ALLOW_PROD_WRITES=1 and "
        "--allow-prod)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Write the database's version of missing and stale documents.",
        )
        parser.add_argument(
            "--allow-prod", action="store_true", help="Required with --repair in prod."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["repair"]:
                check_command_write(
                    guard_context(),
                    command="fs_doctor --repair",
                    allow_prod_flag=options["allow_prod"],
                )
            client = firestore_client()
        except FirestoreNotConfigured:
            raise CommandError(NOT_CONFIGURED) from None
        except ProdWriteRefused as error:
            raise CommandError(str(error)) from None
        try:
            self._run(client, options)
        except GoogleAPICallError as error:
            raise CommandError(f"Firestore could not be read: {error}") from None

    def _run(self, client: Any, options: dict[str, Any]) -> None:
        if options["repair"]:
            repair = mirror_repair(client=client)
            result = repair.after
            if options["json"]:
                self.stdout.write(
                    json.dumps(
                        {
                            "before": repair.before.as_dict(),
                            "enqueued": repair.enqueued,
                            "after": repair.after.as_dict(),
                        },
                        indent=2,
                    )
                )
            else:
                self._table(repair.before, title="before repair")
                drain = drain_summary(repair.drain) if repair.drain else "nothing to send"
                self.stdout.write(f"\nrepair: {repair.enqueued} document(s) enqueued; {drain}\n")
                self._table(repair.after, title="after repair")
        else:
            result, _ = mirror_compare(client=client)
            if options["json"]:
                self.stdout.write(json.dumps(result.as_dict(), indent=2))
            else:
                self._table(result, title="database vs Firestore")
        if not result.in_sync:
            counts = [
                sum(len(getattr(c, kind)) for c in result.collections)
                for kind in ("missing", "stale", "extra")
            ]
            hint = "" if options["repair"] else "; fs_doctor --repair writes the database's version"
            raise CommandError(
                f"Firestore differs from the database: {counts[0]} missing, {counts[1]} stale, "
                f"{counts[2]} extra{hint}"
            )

    def _table(self, diff: MirrorDiff, *, title: str) -> None:
        self.stdout.write(title)
        self.stdout.write(
            f"{'collection':<12} {'expected':>8} {'found':>6} {'missing':>8} {'stale':>6} "
            f"{'extra':>6} {'in flight':>10}"
        )
        for c in diff.collections:
            line = (
                f"{c.name:<12} {c.expected:>8} {c.found:>6} {len(c.missing):>8} "
                f"{len(c.stale):>6} {len(c.extra):>6} {len(c.in_flight):>10}"
            )
            self.stdout.write(self.style.SUCCESS(line) if c.in_sync else self.style.ERROR(line))
            for kind in ("missing", "stale", "extra"):
                ids: tuple[str, ...] = getattr(c, kind)
                if ids:
                    self.stdout.write(f"    {kind}: {_ids(ids)}")
        if any(c.extra for c in diff.collections):
            self.stdout.write(self.style.WARNING(EXTRA_ADVICE))
