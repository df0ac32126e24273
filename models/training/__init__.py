"""Training-time code for the recognition models: synthetic data, augmentations, training, export.

Optional extra (`pip install -e '.[train]'`): needs torch and Pillow. Nothing under `models/vision/`
or the node imports this package at run time.
"""
