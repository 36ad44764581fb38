"""The exceptions of the wire contract."""


class ContractError(ValueError):
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
