"""A device module for the engine panel's test: one ophyd-async motor whose PVs no IOC serves.

The engine cannot connect it (it waits ``RUNSTREAM_DEVICE_CONNECT_TIMEOUT``), lists it at
``GET /devices`` with the error and serves the other devices.
"""

from ophyd_async.epics.motor import Motor

missing = Motor("RUNSTREAM:TEST:NO-SUCH-IOC:M1")  # named "missing" by the engine
