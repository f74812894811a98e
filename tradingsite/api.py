"""What the apps' endpoints share (the cursor pagination of long lists) and the endpoint of
the project package: the status of a task an operation started."""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class NewestFirst(CursorPagination):
    """Stable pages over a growing table: a cursor, not an offset, so rows added meanwhile
    never shift a page."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


# DRF pops declared fields off the class, so a field may share a Field attribute's name.


def task_accepted(task_id: str) -> Response:
    """202 for an operation that runs as a task: its id and where to poll it."""
    return Response(
        {"task_id": task_id, "status_url": f"/api/v1/tasks/{task_id}/"},
        status=status.HTTP_202_ACCEPTED,
    )


class TaskStatus(APIView):
    """The state of a task an operation started (doctor run, flatten): PENDING (queued, or
    unknown), STARTED, RETRY, SUCCESS (with its result) or FAILURE (with the error)."""

    @extend_schema(operation_id="task_status", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, task_id: str) -> Response:
        result: AsyncResult[Any] = AsyncResult(task_id)
        state = str(result.state)
        body: dict[str, Any] = {"task_id": task_id, "state": state}
        if state == "SUCCESS":
            body["result"] = result.result
        elif state == "FAILURE":
            body["error"] = f"{type(result.result).__name__}: {result.result}"
        return Response(body)
