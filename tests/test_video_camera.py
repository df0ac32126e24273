"""The video camera driver: newest frame only, recogniser in a worker thread, one reading per truck."""

from __future__ import annotations

import asyncio

import numpy as np

from devices.readings import DeviceFault, PlateRead
from devices.transports.video import LatestFrameSource
from devices.video_camera import VideoCameraDriver
from models import load_plate_reader
from simulators.video_feed import write_video
from tests.conftest import wait_until


def yellow_plate_reader(image: np.ndarray) -> list[tuple[str, float]]:
    """Test recogniser: a yellow plate in the frame is the one truck this video shows."""
    yellow = np.where((image[:, :, 2] > 200) & (image[:, :, 1] > 180) & (image[:, :, 0] < 60))
    if not len(yellow[1]):
        return []
    return [("29C12345", 0.9)]


def test_frames_from_a_video_source_reach_the_recogniser_and_one_plate_is_read(tmp_path):
    video = write_video(tmp_path / "cam.avi", ["29C12345"], frames_per_plate=40)

    async def scenario():
        events: list = []
        calls: list[int] = []

        def recogniser(image):
            calls.append(image.shape[1])
            return yellow_plate_reader(image)

        source = LatestFrameSource(str(video), loop_file=True, max_fps=50)
        driver = VideoCameraDriver("IMP-1-cam", source, events.append, recogniser=recogniser, interval_s=0.05,
                                   repeat_s=60)
        task = asyncio.create_task(driver.run())
        try:
            await wait_until(lambda: len(calls) >= 5, what="several frames recognised")
            reads = [e for e in events if isinstance(e, PlateRead)]
            assert [r.plate for r in reads] == ["29C12345"]  # the same truck, read once
            assert calls[0] == 640 and driver.health.connected
            assert driver.frames_skipped > 0  # newest frame only: the reader outpaces the recogniser
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_missing_stream_is_a_device_fault(tmp_path):
    async def scenario():
        events: list = []
        source = LatestFrameSource(str(tmp_path / "nothing.avi"), retry_s=0.1)
        driver = VideoCameraDriver("IMP-1-cam", source, events.append, recogniser=None, interval_s=0.05)
        task = asyncio.create_task(driver.run())
        try:
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            assert "cannot open video source" in driver.health.last_error
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_without_a_model_the_camera_says_it_cannot_read_plates(tmp_path):
    video = write_video(tmp_path / "cam.avi", ["29C12345"], frames_per_plate=5)
    source = LatestFrameSource(str(video))
    driver = VideoCameraDriver("IMP-1-cam", source, lambda e: None, recogniser=load_plate_reader())
    assert load_plate_reader() is None
    assert "no plate recogniser" in driver.health.detail
