"""Training-time code for the recognition models: networks, training, export, quantising, calibration, cards.

Optional extra (`pip install -e '.[train]'`): needs torch and onnx. Nothing under `models/vision/`
or the node imports this package at run time, and it is not in the wheel. The synthetic crops it
trains on come from `models/synth/` (torch-free); the modules here named like the renderer's are
aliases of `models/synth/` kept for the tests and scripts that import them from here.
"""
