from __future__ import annotations

from django.apps import AppConfig


class DoctorConfig(AppConfig):
    name = "doctor"
    verbose_name = "Doctor"
