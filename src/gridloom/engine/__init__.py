"""The engine: compile a pipeline into a graph, track completion, schedule cells on trio."""

from .graph import ExecutionGraph, Node, compile_pipeline
from .scheduler import RowGroupSpec, Scheduler, SchedulerStatistics
from .tracker import BatchTask, CellTask, CompletionTracker, Task, TrackerStatistics

__all__ = [
    "BatchTask",
    "CellTask",
    "CompletionTracker",
    "ExecutionGraph",
    "Node",
    "RowGroupSpec",
    "Scheduler",
    "SchedulerStatistics",
    "Task",
    "TrackerStatistics",
    "compile_pipeline",
]
