"""Run one drill in this process: ``python -m tests.drills.drill NAME [--bounded] [--verdict F]``.

The drill's stack is brought up first (its own Redis and database), then this process's
environment points at it and Django is set up and migrated; the drill module is imported only
then. The last line printed is the verdict; ``--verdict`` also writes it as JSON. Exit status 0
when the drill passed, 1 when it failed, 2 when the stack could not run it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from tests.drills.base import BY_NAME, Verdict
from tests.drills.stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(BY_NAME))
    parser.add_argument("--bounded", action="store_true", help="CI's minimum sizes")
    parser.add_argument("--verdict", type=Path, help="write the verdict here as JSON")
    args = parser.parse_args(argv)
    # SIGTERM (a stopped run) unwinds like Ctrl-C, so the stack below is closed and dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    drill = BY_NAME[args.name]
    started = time.monotonic()
    stack = Stack(drill.name, **drill.layout)
    status = 2
    try:
        with stack:
            os.environ.update(stack.env())
            import django
            from django.core.management import call_command

            django.setup()
            call_command("migrate", interactive=False, verbosity=0)
            module = importlib.import_module(drill.module)
            verdict: Verdict = module.run(stack, bounded=args.bounded)
            status = 0 if verdict.passed else 1
    except Exception as error:
        traceback.print_exc()
        print(stack.logs(), file=sys.stderr)
        verdict = Verdict(
            drill=drill.name,
            passed=False,
            line=f"FAIL {drill.name}: the drill could not run ({type(error).__name__}: {error})",
            bounded=args.bounded,
        )
    verdict.seconds = round(time.monotonic() - started, 1)
    verdict.bounded = args.bounded
    if args.verdict is not None:
        args.verdict.write_text(verdict.to_json())
    print(verdict.line, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
