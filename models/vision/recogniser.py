"""An ONNX recogniser: one onnxruntime session, created once, fed batches of preprocessed crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class ModelError(RuntimeError):
    """The model file is missing or does not match what the code expects."""


def cpu_session_options(threads: int = 1) -> ort.SessionOptions:
    """onnxruntime options for one sequential CPU session on `threads` intra-op threads (at least one)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class Recogniser:
    """A CRNN exported by models/training: (N, 1, 32, W) → (N, W/4, classes) probabilities."""

    def __init__(self, path: str | Path, charset: str, width: int, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file missing; retrain it with `python -m models.training."
                             f"{'plates' if 'plate' in path.name else 'containers'} --out {path}`")
        try:
            self.session = ort.InferenceSession(str(path), cpu_session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own errors name neither the fix nor, always, the file
            raise ModelError(f"{path}: not a loadable ONNX model ({error}); restore it from git or retrain it "
                             f"with `python -m models.training.{'plates' if 'plate' in path.name else 'containers'}"
                             f" --out {path}`") from error
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("charset", charset) != charset or int(meta.get("input_width", width)) != width:
            raise ModelError(f"{path}: the model's charset or input width differs from models/vision; retrain it")
        self.path, self.charset, self.width, self.threads = path, charset, width, threads
        self.metadata: dict[str, str] = dict(meta)
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Per-step class probabilities for a list of (1, 32, W) inputs, as one batch."""
        batch = np.stack(inputs).astype(np.float32, copy=False)
        return self.session.run(None, {self.input_name: batch})[0]
