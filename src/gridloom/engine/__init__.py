"""The engine: compile a pipeline into a graph, track completion, and schedule cells on trio.

It knows only the config, the errors, the generators, the storage and the trace: the run
(:mod:`gridloom.run`) opens the models and hands the scheduler their handles.
"""

from .generator_health import GeneratorHealth
from .graph import ExecutionGraph, Node, compile_pipeline
from .health import ShutdownReason
from .scheduler import NodeProgress, RowGroupSpec, Scheduler, SchedulerStatistics
from .tracker import BatchTask, CellTask, CompletionTracker, Task, TrackerStatistics

__all__ = [
    "BatchTask",
    "CellTask",
    "CompletionTracker",
    "ExecutionGraph",
    "GeneratorHealth",
    "Node",
    "NodeProgress",
    "RowGroupSpec",
    "Scheduler",
    "SchedulerStatistics",
    "ShutdownReason",
    "Task",
    "TrackerStatistics",
    "compile_pipeline",
]
