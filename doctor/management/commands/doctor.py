from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from doctor.checks import CHECK_NAMES, CHECKS, STATUS_RANK
from doctor.snapshots import doctor_report

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


class Command(BaseCommand):
    help = (
        "Run every health check now and print a table (or --json). Read-only: nothing is "
        "stored. Exits non-zero when a check is at or above --fail-on (default: fail)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--fail-on",
            choices=["warn", "fail"],
            default="fail",
            help="Exit non-zero when any check is at this level or worse (default: fail).",
        )
        parser.add_argument(
            "--check",
            action="append",
            default=[],
            metavar="NAME",
            help=f"Run only this check (repeatable): {', '.join(CHECK_NAMES)}.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        unknown = sorted(set(options["check"]) - set(CHECK_NAMES))
        if unknown:
            raise CommandError(
                f"unknown check(s): {', '.join(unknown)}; choose from {', '.join(CHECK_NAMES)}"
            )
        chosen = tuple(c for c in CHECKS if not options["check"] or c.name in options["check"])
        report = doctor_report(checks=chosen)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self._table(report.results)
            self.stdout.write(
                f"\noverall: {report.status}, confidence {report.confidence:.2f} "
                f"({report.duration_ms:.0f} ms)"
            )
        threshold = STATUS_RANK[options["fail_on"]]
        bad = [r.name for r in report.results if STATUS_RANK[r.status] >= threshold]
        if bad:
            raise CommandError(
                f"{len(bad)} check(s) at {options['fail_on']} or worse: {', '.join(bad)}"
            )

    def _table(self, results: list[Any]) -> None:
        width = max(len(r.label) for r in results)
        self.stdout.write(f"{'check':<{width}}  status  conf   latency  detail")
        for r in results:
            line = (
                f"{r.label:<{width}}  {MARKS[r.status]}    {r.confidence:4.2f}  "
                f"{r.latency_ms:6.0f} ms  {r.detail}"
            )
            style = {"ok": self.style.SUCCESS, "warn": self.style.WARNING}.get(
                r.status, self.style.ERROR
            )
            self.stdout.write(style(line))
