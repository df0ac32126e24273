"""Start a recogniser from another recogniser's ONNX file (e.g. the container reader from the plate reader).

The exported files hold each convolution with its batch norm folded in. Loading one back puts the
folded weights in the convolution and sets each batch norm to the statistics its input has on a
sample of the new task's crops, with scale and shift chosen so that the norm passes its input
through unchanged: the network starts out computing exactly what the source model computed.
The output head keeps the rows of the characters both alphabets share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.training.net import CRNN


def _folded_convs(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Every convolution's (weight, bias) in graph order (the head last) and the model's charset.

    Read from the Conv nodes' inputs, not from initialiser names: the exporter shares equal
    initialisers between nodes, so the names do not follow one per convolution. In a quantised
    file (`models.training.quantize`) the weights are read back to floats.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    charset = {p.key: p.value for p in model.metadata_props}["charset"]
    values = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            values[node.output[0]] = _dequantised(node, values)
    convs = [(values[node.input[1]], values[node.input[2]]) for node in model.graph.node if node.op_type == "Conv"]
    return convs, charset


def _dequantised(node, values: dict[str, np.ndarray]) -> np.ndarray:
    """The float tensor a DequantizeLinear node makes of an integer initialiser: (q - zero) * scale,
    per channel along the node's axis where the scale has one value a channel."""
    quantised = values[node.input[0]].astype(np.float32)
    scale = values[node.input[1]].astype(np.float32)
    zero = values[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.float32(0)
    if scale.ndim == 1 and quantised.ndim > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * quantised.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
    return (quantised - zero) * scale


def parameter_count(path: Path) -> int:
    """The network's parameters (batch norms folded in), whether the file holds them in float or 8-bit."""
    return sum(weight.size + bias.size for weight, bias in _folded_convs(path)[0])


def onnx_widths(path: Path) -> tuple[int, ...]:
    """The channel widths (`net.CRNN` widths) of the network in a recogniser's ONNX file."""
    convs, _charset = _folded_convs(path)
    return tuple(int(weight.shape[0]) for weight, _bias in convs[:5])


def init_from_onnx(net: CRNN, path: Path, charset: str, sample: np.ndarray) -> int:
    """Load `path`'s weights into `net` (whose alphabet is `charset`); returns the shared characters.

    `sample` is a batch of the new task's inputs (uint8, N x 32 x W) used to set the norms.
    """
    convs_in_file, source_charset = _folded_convs(path)
    *folded, (head_w, head_b) = convs_in_file
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d | nn.Conv2d) and m is not net.head]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    if len(folded) != len(convs):
        raise ValueError(f"{path}: {len(folded)} convolutions, the network has {len(convs)}")
    with torch.no_grad():
        for conv, (weight, _bias) in zip(convs, folded, strict=True):
            conv.weight.copy_(torch.from_numpy(weight))
        shared = 0
        net.head.weight.zero_()
        net.head.bias.fill_(-10.0)
        source_rows = {c: i + 1 for i, c in enumerate(source_charset)}
        for row, char in [(0, None), *((i + 1, c) for i, c in enumerate(charset))]:
            source = 0 if char is None else source_rows.get(char)
            if source is None:
                continue
            net.head.weight[row].copy_(torch.from_numpy(head_w[source]))
            net.head.bias[row] = float(head_b[source])
            shared += char is not None
        biases = iter(b for _w, b in folded)
        hooks = [norm.register_forward_pre_hook(_pass_through(norm, next(biases))) for norm in norms]
        net.eval()
        net(torch.from_numpy(sample).float().div_(127.5).sub_(1.0).unsqueeze(1))
        for hook in hooks:
            hook.remove()
    return shared


def _pass_through(norm: nn.BatchNorm1d | nn.BatchNorm2d, bias: np.ndarray):
    def hook(_module, inputs):
        x = inputs[0]
        dims = [0, 2] if x.dim() == 3 else [0, 2, 3]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.copy_(torch.sqrt(var + norm.eps))
        norm.bias.copy_(mean + torch.from_numpy(bias))
    return hook
