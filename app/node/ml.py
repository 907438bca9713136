"""onnxruntime sessions for the node's small models (traffic shaper, anomaly detector).

onnxruntime writes a device id and phones home unless ``ORT_DISABLE_TELEMETRY=1`` is in
the environment before its first import, so this module sets it before importing it and
every other module reaches onnxruntime only through here. Models live in
``resources/models/`` (a checkout) or the bundle of a frozen app (``sys._MEIPASS``).

Sessions run on one thread with every graph optimisation on: the models are tiny and
are called from the event loop's thread between frames, where a thread pool would cost
more than the inference (FACTS.md: ~5 µs per row for a small MLP or one tree ensemble).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import numpy as np
import onnxruntime as ort


class ModelError(Exception):
    """A shipped model is missing, unreadable or has the wrong shape."""


def models_dir() -> Path:
    """The folder of the shipped ``*.onnx`` files and their model cards."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources" / "models"
    return Path(__file__).resolve().parents[2] / "resources" / "models"


class OnnxModel:
    """One loaded model: float32 rows in, its named outputs back as numpy arrays."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"the model {path.name} can't be loaded: {exc}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"the model {path.name} must have exactly one input")
        self.path = path
        self.input_name: str = inputs[0].name
        shape = inputs[0].shape
        self.n_features: int | None = shape[-1] if isinstance(shape[-1], int) else None
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        """The model's own key/value metadata (e.g. calibrated thresholds)."""

    def run(self, rows: Any) -> dict[str, Any]:
        """Run the model on a 2-D float32 batch; outputs by name."""
        batch = np.asarray(rows, dtype=np.float32)
        if batch.ndim == 1:
            batch = batch.reshape(1, -1)
        if self.n_features is not None and batch.shape[1] != self.n_features:
            raise ModelError(
                f"the model {self.path.name} takes {self.n_features} features, not {batch.shape[1]}"
            )
        outputs = self._session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, outputs, strict=True))


class RowRunner:
    """Repeated one-row inference with buffers bound once (IOBinding, no allocation per
    call): ~13 µs per call here against ~17 µs for `OnnxModel.run`, for per-window
    decisions that must stay within a few tens of µs."""

    def __init__(
        self, model: OnnxModel, output: str, output_shape: tuple[int, ...], dtype: Any
    ) -> None:
        if model.n_features is None:
            raise ModelError(f"the model {model.path.name} has no fixed feature count")
        session = model._session
        self._row = np.zeros((1, model.n_features), dtype=np.float32)
        self.output = np.zeros(output_shape, dtype=dtype)
        self._binding = session.io_binding()
        self._binding.bind_cpu_input(model.input_name, self._row)
        self._binding.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_numpy(self.output))
        for other in model.output_names:
            if other != output:
                self._binding.bind_output(other)
        self._session = session

    def __call__(self, features: Any) -> Any:
        """Run on one row of features; returns the bound output array (reused)."""
        self._row[0, :] = features
        self._session.run_with_iobinding(self._binding)
        return self.output


def load_model(name: str, folder: Path | None = None) -> OnnxModel:
    """Load ``name`` (e.g. ``"shaper.onnx"``) from the shipped models folder."""
    path = (folder or models_dir()) / name
    if not path.is_file():
        raise ModelError(f"the model {name} is missing from {path.parent}")
    return OnnxModel(path)
