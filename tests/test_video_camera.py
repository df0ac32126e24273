"""The video camera driver against the MJPEG camera simulator, with the committed models: newest
frame only, readings agreed over frames, one reading per truck, faults when the stream is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from devices.readings import ContainerRead, DeviceFault, PlateRead
from devices.transports.video import LatestFrameSource
from devices.video_camera import VideoCameraDriver
from models import load_plate_reader
from simulators.video_camera import VideoCameraSimulator
from tests.conftest import wait_until


@pytest.fixture
def camera() -> Iterator[VideoCameraSimulator]:
    simulator = VideoCameraSimulator(fps=20).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@asynccontextmanager
async def running(driver: VideoCameraDriver) -> AsyncIterator[asyncio.Task]:
    """The driver's loop as a task for the length of the block."""
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _driver(url: str, events: list, **kwargs) -> VideoCameraDriver:
    source = LatestFrameSource(url, max_fps=20, retry_s=0.2)
    options = {"interval_s": 0.05, "repeat_s": 60, "vote_frames": 2, "vote_window_s": 1.0, "min_confidence": 0.5}
    options.update(kwargs)
    return VideoCameraDriver("IMP-1-cam", source, events.append, reader=load_plate_reader(), **options)


def test_a_truck_on_the_stream_is_read_once_and_the_next_truck_too(camera):
    async def scenario():
        events: list = []
        driver = _driver(camera.url, events)
        async with running(driver):
            await wait_until(lambda: driver.frames_recognised >= 5, what="empty-lane frames recognised")
            assert not [e for e in events if isinstance(e, PlateRead)]  # the empty lane has no plate
            camera.show_truck("29C-123.45")
            await wait_until(lambda: any(isinstance(e, PlateRead) for e in events), timeout_s=15, what="first plate")
            seen = driver.frames_recognised
            await wait_until(lambda: driver.frames_recognised >= seen + 10, what="more frames of the same truck")
            camera.show_truck("桂F·12345")
            await wait_until(lambda: len([e for e in events if isinstance(e, PlateRead)]) >= 2, timeout_s=15,
                             what="second plate")
            reads = [e for e in events if isinstance(e, PlateRead)]
            assert [r.plate for r in reads] == ["29C12345", "桂F12345"]  # each truck once
            assert all(r.device_id == "IMP-1-cam" and 0.5 <= r.confidence <= 1 for r in reads)
            assert all(r.observed_at < r.received_at for r in reads)  # seen in its first frame, reported later
            assert driver.health.connected and driver.health.frames_good > 0

    asyncio.run(scenario())


def test_a_truck_that_stays_in_view_is_reported_once_and_again_only_after_it_left_the_view(camera):
    # A held truck may wait minutes in front of the camera: one reading, not one every repeat_s (the last of
    # which could land after it left, where the lane would take it for the next truck's).
    async def scenario():
        events: list = []
        driver = _driver(camera.url, events, repeat_s=0.5, vote_window_s=0.3)
        plates = lambda: [e for e in events if isinstance(e, PlateRead)]  # noqa: E731
        async with running(driver):
            camera.show_truck("29C-123.45")
            await wait_until(lambda: plates(), timeout_s=15, what="the plate")
            seen = driver.frames_recognised
            # Many windows of frames and several repeat_s later, the truck still in view: still one reading.
            await wait_until(lambda: driver.frames_recognised >= seen + 30, timeout_s=30, what="frames in view")
            assert len(plates()) == 1
            camera.clear()  # it leaves the view ...
            cleared = driver.frames_recognised
            await wait_until(lambda: driver.frames_recognised >= cleared + 20, timeout_s=30, what="empty-lane frames")
            camera.show_truck("29C-123.45")  # ... and comes back: a new stay, reported again
            await wait_until(lambda: len(plates()) == 2, timeout_s=15, what="the plate of its second stay")
            assert plates()[1].observed_at > plates()[0].received_at

    asyncio.run(scenario())


def test_a_rear_camera_reads_the_container_number_painted_on_the_doors(camera):
    async def scenario():
        events: list = []
        driver = _driver(camera.url, events, reads=("containers",))
        async with running(driver):
            camera.show_container("CSQU3054383", layout="v")
            await wait_until(lambda: any(isinstance(e, ContainerRead) for e in events), timeout_s=15,
                             what="container number")
            camera.show_container("MSKU 907032 3", layout="h2")
            await wait_until(lambda: len([e for e in events if isinstance(e, ContainerRead)]) >= 2, timeout_s=15,
                             what="second container number")
            reads = [e for e in events if isinstance(e, ContainerRead)]
            assert [r.container for r in reads] == ["CSQU3054383", "MSKU9070323"]
            assert not [e for e in events if isinstance(e, PlateRead)]  # this camera reads codes only

    asyncio.run(scenario())


def test_a_camera_that_drops_off_is_a_device_fault_and_comes_back(camera):
    async def scenario():
        events: list = []
        driver = _driver(camera.url, events)
        async with running(driver):
            await wait_until(lambda: driver.health.connected, what="stream up")
            await camera.fault_disconnect()
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), timeout_s=15, what="fault")
            assert not driver.health.connected
            await camera.recover_disconnect()
            camera.show_truck("51D-678.90")
            await wait_until(lambda: any(isinstance(e, PlateRead) for e in events), timeout_s=20,
                             what="plate after recovery")
            assert driver.health.connected

    asyncio.run(scenario())


class _BrokenReader:
    def __init__(self):
        self.calls = 0

    def read_plates(self, frame: np.ndarray):
        self.calls += 1
        raise RuntimeError("model crashed")

    def read_container_codes(self, frame: np.ndarray):
        return []


def test_a_reader_that_fails_is_counted_and_the_driver_keeps_watching(camera):
    async def scenario():
        events: list = []
        reader = _BrokenReader()
        source = LatestFrameSource(camera.url, max_fps=20)
        driver = VideoCameraDriver("IMP-1-cam", source, events.append, reader=reader, interval_s=0.05)
        async with running(driver) as task:
            await wait_until(lambda: driver.read_errors >= 3, what="failed reads counted")
            assert driver.health.connected and not task.done()
            assert not [e for e in events if isinstance(e, PlateRead | ContainerRead)]

    asyncio.run(scenario())


def test_missing_stream_is_a_device_fault(tmp_path):
    async def scenario():
        events: list = []
        source = LatestFrameSource(str(tmp_path / "nothing.avi"), retry_s=0.1)
        driver = VideoCameraDriver("IMP-1-cam", source, events.append, reader=None, interval_s=0.05)
        async with running(driver):
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            assert "cannot open video source" in driver.health.last_error

    asyncio.run(scenario())


def test_without_models_the_camera_says_it_cannot_read(tmp_path):
    source = LatestFrameSource(str(tmp_path / "cam.avi"))
    driver = VideoCameraDriver("IMP-1-cam", source, lambda e: None, reader=None)
    assert "no recognition models" in driver.health.detail
    assert load_plate_reader() is not None  # the committed models are installed
