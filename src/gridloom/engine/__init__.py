"""The engine: compile a pipeline into a graph, track completion, schedule cells on trio, and
watch the models' health."""

from .generator_health import GeneratorHealth
from .graph import ExecutionGraph, Node, compile_pipeline
from .health import HealthMonitor, ShutdownReason
from .scheduler import NodeProgress, RowGroupSpec, Scheduler, SchedulerStatistics
from .tracker import BatchTask, CellTask, CompletionTracker, Task, TrackerStatistics

__all__ = [
    "BatchTask",
    "CellTask",
    "CompletionTracker",
    "ExecutionGraph",
    "GeneratorHealth",
    "HealthMonitor",
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
