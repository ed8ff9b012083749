"""API error responses shared by every app: service errors become 400 or 409 naming the field."""

import traceback
from pathlib import Path

import rest_framework.parsers
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from labelling.leases import TaskConflict

PARSERS_FILE = str(Path(rest_framework.parsers.__file__))


def _while_parsing(exc: BaseException) -> bool:
    """Whether `exc` was raised while DRF parsed the request body."""
    return any(
        frame.f_code.co_filename == PARSERS_FILE
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def exception_handler(exc, context):
    if isinstance(exc, RecursionError) and _while_parsing(exc):
        # JSON nested thousands deep exhausts the decoder's recursion: the body is malformed.
        return Response(
            {"detail": "Malformed JSON: nested too deeply."}, status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            body = {
                field: [str(m) for m in messages] for field, messages in exc.message_dict.items()
            }
        else:
            body = {"non_field_errors": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TaskConflict):
        return Response({"detail": exc.message, "code": exc.code}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
