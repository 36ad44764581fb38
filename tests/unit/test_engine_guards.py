"""A dead IOC's failures, as aioca and ophyd-async report them, are rephrased naming the
device and the PV."""

from __future__ import annotations

import asyncio

import pytest
from aioca import CANothing
from bluesky.utils import FailedStatus, Msg
from epicscorelibs.ca import cadef
from ophyd_async.core import AsyncStatus

from runstream.producer.engine.guards import DeviceTimeoutError, _bounded, _rephrased


def _failed(exc: BaseException) -> FailedStatus:
    async def failing() -> None:
        raise exc

    async def settle() -> AsyncStatus:
        status = AsyncStatus(failing(), name="motor")  # ophyd-async keeps only the name
        with pytest.raises(type(exc)):
            await status
        return status

    return FailedStatus(asyncio.run(settle()))


@pytest.mark.parametrize(("exc", "said"), [
    (TimeoutError("ca://M:mtr1.VAL"), "device 'motor' timed out: no answer from ca://M:mtr1.VAL"),
    (CANothing("M:mtr1.VAL", cadef.ECA_DISCONN),  # falsy, as aioca makes it
     "device 'motor' lost its connection: M:mtr1.VAL: Virtual circuit disconnect"),
])  # fmt: skip
def test_an_ophyd_async_status_that_lost_its_ioc_names_device_and_pv(exc, said) -> None:
    rephrased = _rephrased(_failed(exc))
    assert isinstance(rephrased, DeviceTimeoutError) and str(rephrased) == said
    assert rephrased.devices == ["motor"]


def test_another_failure_of_a_status_is_left_as_it_is() -> None:
    failure = _failed(RuntimeError("motor was stopped"))
    assert _rephrased(failure) is failure


def test_a_call_on_a_disconnected_channel_fails_naming_the_device() -> None:
    class Motor:
        name = "motor"

    async def read(msg: Msg) -> None:
        raise CANothing("M:mtr1.RBV", cadef.ECA_DISCONN)

    with pytest.raises(DeviceTimeoutError, match="read of 'motor' lost its connection: M:mtr1"):
        asyncio.run(_bounded(read, 5, {})(Msg("read", Motor())))
