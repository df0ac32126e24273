"""Fold PP-OCRv4's recogniser and detector into fewer operators: the same numbers, a quarter less time.

    python -m models.training.fold_strong          # writes models/ch_PP-OCRv4_{rec,det}_folded.onnx

PaddlePaddle's export of PP-OCRv4's PPLCNetV3 backbone leaves each block as a chain of small
element-wise operators that onnxruntime does not fuse: a convolution, then a learnable scalar
scale and shift (`mobile_one_block_*`), a hard-swish spelt out as Add, Clip, Mul and Div, another
scalar scale and shift (`whswish_b_*`), then the next convolution. On one CPU thread those passes
over the feature maps cost about a third of the recogniser's time. This rewrites them, exactly:

- a scale and shift after a convolution go into its weights and bias;
- `x * clip(x + 3, 0, 6) / 6` becomes one HardSwish (opset 14; the model is converted to it first);
- a scale and shift before a 1x1 convolution without padding go into its weights and bias; before a
  padded (depthwise) one they cannot (the zero padding would be shifted too), and become one 1x1
  depthwise convolution instead of two element-wise passes.

Nothing is retrained or approximated beyond float rounding: the folded files' outputs are checked
against the originals' on random inputs of several sizes (largest difference under 1e-4, 1e-6 seen)
before they are written. Needs the `train` extra's onnx package; the folded files run on onnxruntime
alone. See `models/strong_reader.md`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.vision.strong import DET_NAME, FOLDED, MODELS_DIR, REC_NAME, find_model, verified

TOLERANCE = 1e-4  # largest output difference accepted between the folded and the original model
OPSET = 14  # HardSwish's first opset


def _constants(graph) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph (initializers and Constant nodes) by name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


class _Folder:
    """One graph being rewritten: its constants, who consumes what, and the nodes to drop."""

    def __init__(self, model):
        self.model, self.graph = model, model.graph
        self.constants = _constants(self.graph)
        self.dropped: set[int] = set()
        self.counts = {"conv_affine": 0, "hard_swish": 0, "affine_conv": 0, "affine_depthwise": 0}

    def consumers(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                out.setdefault(name, []).append(node)
        return out

    def producers(self) -> dict:
        return {name: node for node in self.graph.node for name in node.output}

    def scalar_operand(self, node) -> tuple[float | None, str | None]:
        """(the scalar constant, the other input) of a binary node with one scalar constant operand."""
        values = [self.constants.get(name) for name in node.input]
        known = [k for k, value in enumerate(values) if value is not None]
        if len(node.input) != 2 or len(known) != 1 or values[known[0]].size != 1:
            return None, None
        return float(values[known[0]].reshape(-1)[0]), node.input[1 - known[0]]

    def add_constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        while name in self.constants:  # a convolution folded twice (a scale after it and one before it)
            name += "'"
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name

    def set_conv(self, conv, weight: np.ndarray, bias: np.ndarray) -> None:
        conv.input[1] = self.add_constant(conv.name + "/folded_w", weight.astype(np.float32))
        bias_name = self.add_constant(conv.name + "/folded_b", bias.astype(np.float32))
        if len(conv.input) > 2:
            conv.input[2] = bias_name
        else:
            conv.input.append(bias_name)

    def conv_parts(self, conv) -> tuple[np.ndarray, np.ndarray] | None:
        if conv.op_type != "Conv" or conv.input[1] not in self.constants:
            return None
        weight = self.constants[conv.input[1]]
        bias = self.constants[conv.input[2]] if len(conv.input) > 2 else np.zeros(weight.shape[0], np.float32)
        return weight, bias

    def settle(self) -> None:
        """Drop the folded nodes."""
        kept = [node for node in self.graph.node if id(node) not in self.dropped]
        del self.graph.node[:]
        self.graph.node.extend(kept)
        self.dropped.clear()

    def fold_conv_affine(self) -> None:
        """Conv -> Mul(scalar) [-> Add(scalar)]: the scale and shift into the convolution."""
        consumers = self.consumers()
        for conv in list(self.graph.node):
            parts = self.conv_parts(conv)
            after = consumers.get(conv.output[0], [])
            if parts is None or len(after) != 1 or after[0].op_type != "Mul":
                continue
            scale, _ = self.scalar_operand(after[0])
            if scale is None:
                continue
            last, shift = after[0], 0.0
            following = consumers.get(after[0].output[0], [])
            if len(following) == 1 and following[0].op_type == "Add":
                value, _ = self.scalar_operand(following[0])
                if value is not None:
                    last, shift = following[0], value
                    self.dropped.add(id(following[0]))
            weight, bias = parts
            self.set_conv(conv, weight * scale, bias * scale + shift)
            conv.output[0] = last.output[0]
            self.dropped.add(id(after[0]))
            self.counts["conv_affine"] += 1
        self.settle()

    def fold_hard_swish(self) -> None:
        """x -> Add(3) -> Clip(0, 6) -> Mul(x, .) -> Div(6): one HardSwish."""
        from onnx import helper

        consumers, producers = self.consumers(), self.producers()
        for div in list(self.graph.node):
            if div.op_type != "Div":
                continue
            six, product = self.scalar_operand(div)
            mul = producers.get(product)
            if six != 6.0 or mul is None or mul.op_type != "Mul":
                continue
            clip = next((producers[name] for name in mul.input
                         if name in producers and producers[name].op_type == "Clip"), None)
            add = producers.get(clip.input[0]) if clip is not None else None
            if add is None or add.op_type != "Add":
                continue
            x = next(name for name in mul.input if name != clip.output[0])
            three, added_to = self.scalar_operand(add)
            low, high = (self.constants.get(name) for name in clip.input[1:3])
            if (three != 3.0 or added_to != x or low is None or high is None or float(low) != 0.0
                    or float(high) != 6.0 or any(len(consumers[n.output[0]]) != 1 for n in (add, clip, mul))):
                continue
            div.CopyFrom(helper.make_node("HardSwish", [x], [div.output[0]], name=div.name + "/hard_swish"))
            self.dropped.update(id(n) for n in (add, clip, mul))
            self.counts["hard_swish"] += 1
        self.settle()

    def fold_affine_conv(self) -> None:
        """Mul(scalar) -> Add(scalar) -> Conv: into an unpadded 1x1 convolution, or one 1x1 depthwise
        convolution before a padded depthwise one (its zero padding must stay unshifted)."""
        from onnx import helper

        consumers, producers = self.consumers(), self.producers()
        for conv in list(self.graph.node):
            parts = self.conv_parts(conv)
            add = producers.get(conv.input[0]) if parts is not None else None
            if add is None or add.op_type != "Add" or len(consumers[add.output[0]]) != 1:
                continue
            shift, scaled = self.scalar_operand(add)
            mul = producers.get(scaled)
            if shift is None or mul is None or mul.op_type != "Mul" or len(consumers[mul.output[0]]) != 1:
                continue
            scale, source = self.scalar_operand(mul)
            if scale is None:
                continue
            weight, bias = parts
            pads = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
            group = next((a.i for a in conv.attribute if a.name == "group"), 1)
            if weight.shape[2:] == (1, 1) and not any(pads):
                self.set_conv(conv, weight * scale, bias + shift * weight.sum(axis=(1, 2, 3)))
                conv.input[0] = source
                self.dropped.update((id(mul), id(add)))
                self.counts["affine_conv"] += 1
            elif group == weight.shape[0] and weight.shape[1] == 1:
                channels = weight.shape[0]
                w = self.add_constant(conv.name + "/affine_w", np.full((channels, 1, 1, 1), scale, np.float32))
                b = self.add_constant(conv.name + "/affine_b", np.full(channels, shift, np.float32))
                add.CopyFrom(helper.make_node("Conv", [source, w, b], [add.output[0]], group=channels,
                                              kernel_shape=[1, 1], name=conv.name + "/affine"))
                self.dropped.add(id(mul))
                self.counts["affine_depthwise"] += 1
        self.settle()

    def tidy(self) -> None:
        """Nodes in dependency order; unused constants dropped."""
        graph = self.graph
        ready = {i.name for i in graph.input} | set(self.constants) | {""}
        ordered, pending = [], list(graph.node)
        while pending:
            waiting = []
            for node in pending:
                if all(name in ready for name in node.input):
                    ordered.append(node)
                    ready.update(node.output)
                else:
                    waiting.append(node)
            if len(waiting) == len(pending):
                raise ValueError("fold_strong: the rewritten graph has a cycle or a missing input")
            pending = waiting
        used = {name for node in ordered for name in node.input} | {o.name for o in graph.output}
        ordered = [n for n in ordered if n.op_type != "Constant" or n.output[0] in used]
        del graph.node[:]
        graph.node.extend(ordered)
        used = {name for node in ordered for name in node.input}
        kept = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)


def fold(source: Path, out: Path, probe_shapes: list[tuple[int, int]]) -> dict[str, int]:
    """Write the folded form of the PP-OCR model `source` to `out` after checking its outputs against
    the original's on random inputs of `probe_shapes` (height, width); returns what was folded."""
    import onnx
    import onnxruntime as ort
    from onnx import version_converter

    model = version_converter.convert_version(onnx.load(str(source)), OPSET)
    folder = _Folder(model)
    folder.fold_conv_affine()
    folder.fold_hard_swish()
    folder.fold_affine_conv()
    folder.tidy()
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    original = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    folded = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    name = original.get_inputs()[0].name
    for height, width in probe_shapes:
        probe = (rng.random((1, 3, height, width), np.float32) * 2 - 1).astype(np.float32)
        gap = float(np.abs(original.run(None, {name: probe})[0] - folded.run(None, {name: probe})[0]).max())
        if gap > TOLERANCE:
            raise ValueError(f"fold_strong: {source.name} folded differs from the original by {gap} at "
                             f"{height}x{width}; not written")
    out.write_bytes(data)
    return folder.counts


def main() -> None:
    """The command: fold the recogniser and the detector the wheel ships into models/."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR, help="where to write the folded files")
    args = parser.parse_args()
    probes = {REC_NAME: [(48, 64), (48, 184), (48, 320)], DET_NAME: [(352, 640), (544, 960)]}
    for name, shapes in probes.items():
        source = find_model(name)
        if source is None:
            parser.error(f"{name} not found: pip install --no-deps rapidocr_onnxruntime==1.4.4")
        verified(source)
        out = args.out_dir / FOLDED[name]
        print(out, fold(source, out, shapes))


if __name__ == "__main__":
    main()
