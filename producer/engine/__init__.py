"""The engine service: one RunEngine on its own thread, fed plans over HTTP.

Every document goes to the injected subscribers (in production the
`producer.KafkaPublisher`); the queue and the task history live in SQLite so a
restart loses neither.
"""

from .queue import ControlError, Engine
from .registry import PlanRegistry, RequestError
from .settings import EngineSettings
from .store import TaskStore

__all__ = ["ControlError", "Engine", "EngineSettings", "PlanRegistry", "RequestError", "TaskStore"]
