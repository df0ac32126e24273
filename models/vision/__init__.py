"""Run-time vision: plate and container-code reading from camera frames with onnxruntime.

Needs only onnxruntime, OpenCV and numpy. Training code lives in `models/training/` and is never
imported from here.
"""
