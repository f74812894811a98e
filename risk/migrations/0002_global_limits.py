"""Conservative global limits, so a fresh install trades small until an operator decides."""

from decimal import Decimal

from django.db import migrations

DEFAULTS = {
    "max_order_notional": Decimal("1000"),
    "max_position_notional": Decimal("5000"),
    "max_gross_exposure": Decimal("10000"),
    "max_leverage": Decimal("3"),
    "max_daily_loss": Decimal("0.03"),
    "max_drawdown": Decimal("0.10"),
    "max_open_orders": 20,
    "loss_streak_limit": 5,
    "loss_streak_cooldown_seconds": 3600,
    "min_liquidation_distance": Decimal("0.25"),
    "autotune_floor": Decimal("0.25"),
    "kill_switch": False,
}


def create_global_limits(apps, schema_editor):
    row, created = apps.get_model("risk", "RiskLimit").objects.get_or_create(
        symbol="", defaults=DEFAULTS
    )
    if created:
        # The first entry of the limits' history, so every later change shows old -> new.
        apps.get_model("risk", "HistoricalRiskLimit").objects.create(
            id=row.id,
            symbol="",
            updated_at=row.updated_at,
            history_date=row.updated_at,
            history_type="+",
            history_change_reason="default limits at install",
            **DEFAULTS,
        )


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_initial")]

    operations = [migrations.RunPython(create_global_limits, migrations.RunPython.noop)]
