"""The consumer side of runstream: RunRouter over Kafka, and the services built on it.

from runstream.consumers import ConsumerSettings, Runtime
Runtime(ConsumerSettings(topics=[topic], group="mine"), [my_factory]).run()
"""

from .router import RoutingError
from .runtime import Runtime
from .services import ConsumerService, load_factory
from .settings import ConsumerSettings

__all__ = ["ConsumerService", "ConsumerSettings", "RoutingError", "Runtime", "load_factory"]
