"""Channels' own WebsocketCommunicator, importable without daphne.

`channels.testing/__init__` imports daphne for its live-server test case, and Berth does not install daphne (it is
served by uvicorn). The communicator itself needs only asgiref, so when daphne is missing the package is given a
bare module object and the submodule is imported from Channels' own files.
"""

import sys
import types
from pathlib import Path

import channels

try:
    from channels.testing import WebsocketCommunicator
except ModuleNotFoundError:
    package = types.ModuleType("channels.testing")
    package.__path__ = [str(Path(channels.__file__).parent / "testing")]
    sys.modules["channels.testing"] = package
    from channels.testing.websocket import WebsocketCommunicator

__all__ = ["WebsocketCommunicator"]
