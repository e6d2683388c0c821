"""One self-describing checkpoint file: weights + optimizer + configs + scalers + metrics.

Layout: ``torch.save({"format", "version", "sha256", "payload"})`` where ``payload`` is the bytes of a
second ``torch.save`` of the bundle dict. Both levels load with ``torch.load(weights_only=True)``, so a
file whose pickle would run code is refused before anything runs; the SHA-256 of the payload catches a
tampered or corrupted file. The model is rebuilt from the stored ModelConfig, never unpickled.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnn_core.config import DataConfig, ModelConfig, TrainConfig, target_outputs
from rnn_core.errors import UserError, first_line
from rnn_core.data import (WindowData, FeatureScaler, TargetScaler, features_for, make_windows, origin_series,
                           origin_values)
from rnn_core.model import RNNForecaster
from rnn_core.train import predict

FORMAT = "rnn-search-bundle"
ENSEMBLE_FORMAT = "rnn-search-ensemble"  # rnn_core.ensemble: the same envelope around several members
VERSION = 2
"""2: a file's post-processing is a list of steps (``"steps"``, rnn_core.postprocess); 1 had loose keys for it,
converted on reading by :func:`_from_version_1`."""
BUNDLE_FILE = "model.pt"  # the file name inside a Tune checkpoint directory


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, foreign, tampered or unsafe."""


def save_bundle(
    path: str | os.PathLike[str],
    state: dict[str, Any],
    data: WindowData,
    model_config: ModelConfig,
    train_config: TrainConfig,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``state`` (from ``train.fit``) with everything needed to rebuild the model, atomically.

    From ``data`` it keeps what turns hours into the model's inputs and its outputs into the target's units:
    the data config, the fitted scalers and the feature names.
    """
    bundle = dict(state)
    bundle.update(
        model_config=model_config.to_dict(),
        train_config=train_config.to_dict(),
        data_config=data.config.to_dict(),
        feature_scaler=data.feature_scaler.to_dict(),
        target_scaler=data.target_scaler.to_dict(),
        feature_names=list(data.feature_names),
        meta=dict(meta or {}),
    )
    return write_bundle(path, bundle)


def write_bundle(path: str | os.PathLike[str], bundle: dict[str, Any], fmt: str = FORMAT) -> Path:
    """Serialise a bundle dict with its checksum header, atomically (temp file + rename)."""
    buf = io.BytesIO()
    torch.save(bundle, buf)
    payload = buf.getvalue()
    outer = {
        "format": fmt,
        "version": VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(outer, f)
        os.replace(tmp, path)  # readers never see a half-written file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _kind(head: bytes) -> str:
    """What a file's first bytes say it is."""
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch file"
    if head[:1] == b"\x80":
        return "a pickle"
    if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head):
        return "a text file"
    return "not a PyTorch file"


def _safe_load(src: Any, what: str) -> Any:
    """torch.load with weights_only=True; every failure is a CheckpointError that never suggests loading unsafely."""
    head = src.getvalue()[:64] if isinstance(src, io.BytesIO) else Path(src).open("rb").read(64)
    kind = _kind(head)
    if kind in ("a text file", "not a PyTorch file"):
        raise CheckpointError(f"{what}: not a model file ({kind}); expected a model.pt written by rnn-search "
                              "(train, export or a trial checkpoint)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on the way to refusing
            return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{what}: refused to load: {kind} that holds objects other than tensors and plain data, which could "
            "run code when loaded. Only rnn-search model files are accepted."
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (zip, struct, EOF, ...)
        raise CheckpointError(f"{what}: not a readable model file (truncated or corrupted?): {first_line(exc)}") from None



def read_verified(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """Read any rnn-search file (a model bundle or an ensemble): check its header, version and checksum.

    Returns (format, payload dict). Raises :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        path = path / BUNDLE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    outer = _safe_load(str(path), str(path))
    fmt = outer.get("format") if isinstance(outer, dict) else None
    if fmt not in (FORMAT, ENSEMBLE_FORMAT):
        raise CheckpointError(f"{path}: not an rnn-search checkpoint (no '{FORMAT}' header); a foreign file?")
    version = outer.get("version")
    if version not in (1, VERSION):
        raise CheckpointError(f"{path}: checkpoint version {version!r}; this rnn-search reads versions 1 and {VERSION}")
    payload = outer.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"{path}: checkpoint payload is missing or malformed")
    raw = payload.numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"{path}: checksum mismatch: the checkpoint was modified or corrupted after it was saved")
    inner = _safe_load(io.BytesIO(raw), str(path))
    if not isinstance(inner, dict):
        raise CheckpointError(f"{path}: checkpoint payload is not a mapping")
    return fmt, (_from_version_1(fmt, inner) if version == 1 else inner)


def _from_version_1(fmt: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A version-1 payload in version 2's layout: its calibration factor, rolling level window, residual
    correction and intervals (loose keys, the loss in ``meta["metric"]``) become the chain they meant."""
    out = {k: v for k, v in payload.items()
           if k not in ("scale", "level_window", "correction_window", "correction_lags", "intervals")}
    steps: list[Any] = []
    if fmt == ENSEMBLE_FORMAT:
        meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
        steps.append({"kind": "calibration", "factor": payload.get("scale", 1.0), "window": payload.get("level_window", 0),
                      "loss": meta.get("metric", "mae")})
        if payload.get("correction_window"):
            steps += [{"kind": "residual_correction", "window": payload["correction_window"],
                       "lags": payload.get("correction_lags") or []}, {"kind": "non_negative"}]
    if payload.get("intervals"):  # tables from before rolling intervals have no window: the validation offsets
        steps.append({"kind": "conformal_intervals", "window": 0, **payload["intervals"]}
                     if isinstance(payload["intervals"], dict) else {"kind": "conformal_intervals", "intervals": payload["intervals"]})
    out["steps"] = steps
    return out


#: What every model bundle holds (an ensemble's members included).
REQUIRED = ("best_model", "model_config", "data_config", "train_config", "target_scaler", "feature_scaler")


def check_bundle(bundle: dict[str, Any], what: str) -> dict[str, Any]:
    """Refuse a bundle that lacks a part :func:`model_from_bundle` needs."""
    missing = [k for k in REQUIRED if k not in bundle]
    if missing:
        raise CheckpointError(f"{what}: checkpoint lacks {', '.join(missing)}")
    return bundle


def load_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and verify a bundle written by :func:`save_bundle`. Raises :class:`CheckpointError`."""
    fmt, bundle = read_verified(path)
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: an ensemble of models, not a single model's checkpoint "
                              "(rnn_core.load_model reads both; `rnn-search export --single` writes one model)")
    return check_bundle(bundle, str(path))


@dataclass
class LoadedModel:
    """A ready model (best weights, eval mode) and what it needs to turn data into the target's units."""

    model: RNNForecaster
    model_config: ModelConfig
    data_config: DataConfig
    feature_scaler: FeatureScaler
    target_scaler: TargetScaler
    bundle: dict[str, Any]
    source: str = ""
    """Where it was loaded from (for messages)."""

    @property
    def first_origin(self) -> int:
        """The earliest forecast origin (an index into the hourly frame) with a full input window."""
        return self.data_config.sequence_size - 1

    def forecast(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """Forecasts in the target's units [N, H] from consecutive origins [N] (indices of the last input hour)."""
        origins = np.asarray(origins)
        if len(origins) and (origins[0] < self.first_origin or origins[-1] >= len(frame)):
            raise ValueError(f"{self.source}: forecast origins {origins[0]}..{origins[-1]} outside "
                             f"{self.first_origin}..{len(frame) - 1} (a window needs {self.first_origin + 1} hours of history)")
        feats = features_for(frame, self.data_config, self.feature_scaler, self.target_scaler.history)  # [T, F]
        from rnn_core.series import check_future_known

        check_future_known(frame, self.data_config, feats, origins, self.source)
        X = make_windows(feats, origins, self.data_config.sequence_size)  # [N, L, F]
        out = predict(self.model, X).double()  # [N, H] model space
        cfg = self.data_config
        return self.target_scaler.inverse(out, origin_values(frame, cfg, origins), origin_series(frame, cfg, origins)).numpy()


def model_from_bundle(bundle: dict[str, Any], source: str, device: str | torch.device = "cpu") -> LoadedModel:
    """A verified bundle (from :func:`load_bundle`) -> a ready model; ``source`` names it in errors."""
    def rebuild(what: str, fn, *args):  # noqa: ANN001, ANN202
        try:
            return fn(*args)
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{source}: {what}: {exc}") from None

    mcfg = rebuild("its model config cannot be rebuilt", ModelConfig.from_dict, bundle["model_config"])
    dcfg = rebuild("its data config cannot be rebuilt", DataConfig.from_dict, bundle["data_config"])
    model = RNNForecaster(mcfg)
    # "weights": the weights validated at the checkpoint's epoch (a trial checkpoint picked as the best epoch);
    # a bundle without them serves the best weights so far.
    rebuild("its weights do not fit its model config", model.load_state_dict, bundle.get("weights") or bundle["best_model"])
    model.to(device).eval()
    tscaler = rebuild("its field target_scaler cannot be read", TargetScaler.from_dict, bundle["target_scaler"])
    if tscaler.form != dcfg.target_form or mcfg.targets != target_outputs(dcfg.target_form):
        raise CheckpointError(f"{source}: its target scaler ({tscaler.form}), model ({mcfg.targets} output(s) per hour) "
                              f"and data config (target_form {dcfg.target_form}) do not match: the file is damaged")
    return LoadedModel(
        model=model,
        model_config=mcfg,
        data_config=dcfg,
        feature_scaler=rebuild("its field feature_scaler cannot be read", FeatureScaler.stored, bundle),
        target_scaler=tscaler,
        bundle=bundle,
        source=source,
    )
