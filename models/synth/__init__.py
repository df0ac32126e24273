"""The synthetic renderer: plates, container doors, gate scenes, camera damage and legibility, torch-free.

Needs only OpenCV, numpy and Pillow (`fonts.py` and `glyphs.py` letter text with Pillow's
FreeType fonts). The video camera simulator (`simulators/video_camera.py`) and the vision bench
draw their frames and held-out crops with it at run time; training (`models/training/`, torch)
renders its crops with it too. Nothing in the node itself imports it.
"""
