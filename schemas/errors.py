"""The root of runstream's exceptions, and those of the wire contract.

Every exception runstream raises on purpose derives from `RunstreamError`, so the
command line can print any of them as one line with an exit code, never a traceback.
"""


class RunstreamError(Exception):
    """Base of every error runstream raises on purpose; its message says what to do."""

    exit_code = 1


class CommandError(RunstreamError):
    """A failure the user can act on (bad settings, a service not reachable)."""


class ContractError(RunstreamError, ValueError):
    """Base of every error raised by `schemas`."""


class DecodeError(ContractError):
    """Bytes or headers that are not a valid runstream message (undecodable input)."""


class EncodeError(ContractError):
    """A document that cannot be put on the wire (an object msgpack cannot carry)."""


class ValidationError(ContractError):
    """A document that does not match event-model's schema for its name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"invalid {name} document: {message}")
        self.name = name
        self.message = message
