"""Task traces: what each task attempt waited for, and how long its model took."""

from ._files import TRACE_FILE, write_trace
from ._spans import TRACE_SCHEMA, TaskSpan, TaskTracer

__all__ = ["TRACE_FILE", "TRACE_SCHEMA", "TaskSpan", "TaskTracer", "write_trace"]
