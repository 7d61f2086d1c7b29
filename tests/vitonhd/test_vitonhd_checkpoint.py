"""Checkpoint loading: strict round trip, and typed errors naming the file for every way it can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from viton.vitonhd import (
    CHECKPOINT_FILES,
    NETWORK_NAMES,
    CheckpointError,
    load_engine,
    load_networks,
    read_state_dict,
    save_networks,
)
from viton.vitonhd.checkpoint import load_checkpoint


class NotATensor:
    """A pickled object of this class must not be loadable with weights_only=True."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_save_load_engine_round_trip_strict(nets: dict[str, nn.Module], tmp_path: Path) -> None:
    paths = save_networks(nets, tmp_path)
    assert {p.name for p in paths.values()} == set(CHECKPOINT_FILES.values())
    engine = load_engine(tmp_path, device="cpu")      # what the VITON service calls (via viton.make_engine)
    assert engine.name == "vitonhd" and engine.device == "cpu"
    loaded = engine.networks
    for name in NETWORK_NAMES:
        ours, theirs = nets[name].state_dict(), loaded[name].state_dict()
        assert list(ours) == list(theirs)
        for key, value in ours.items():
            assert torch.equal(value, theirs[key]), f"{name}.{key} differs after the round trip"
        assert not loaded[name].training


def test_missing_checkpoints_are_named(tmp_path: Path) -> None:
    (tmp_path / "seg_final.pth").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        load_networks(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "gmm_final.pth") in message and str(tmp_path / "alias_final.pth") in message
    assert str(tmp_path / "seg_final.pth") not in message   # the present file is not reported as missing
    assert "viton.engine = geometric" in message


def test_load_engine_refuses_without_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing VITON-HD checkpoint"):
        load_engine(tmp_path / "nowhere", device="cpu")


@pytest.mark.parametrize("content", [b"", b"not a zip or pickle at all", b"PK\x03\x04truncated zip"])
def test_corrupt_file_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "gmm_final.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert str(info.value).startswith(str(path))


def test_truncated_real_checkpoint_is_named(nets: dict[str, nn.Module], tmp_path: Path) -> None:
    path = tmp_path / "gmm_final.pth"
    torch.save(nets["gmm"].state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(nets["gmm"], path)
    assert str(path) in str(info.value)


def test_unsafe_pickle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "seg_final.pth"
    torch.save({"conv1.0.weight": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "alias_final.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="flat state_dict"):
        read_state_dict(path)


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "seg_final.pth"
    torch.save({"conv1.0.bias": torch.tensor([1.0, float("nan")])}, path)
    with pytest.raises(CheckpointError, match="'conv1.0.bias' holds NaN"):
        read_state_dict(path)


def test_wrong_network_in_file_lists_the_mismatch(nets: dict[str, nn.Module], tmp_path: Path) -> None:
    path = tmp_path / "seg_final.pth"
    torch.save(nets["gmm"].state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(nets["seg"], path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "missing keys 46: conv1.0.weight" in message and "unexpected keys 104: extractionA.model.0.weight" in message


def test_wrong_shape_is_listed(nets: dict[str, nn.Module], tmp_path: Path) -> None:
    state = dict(nets["seg"].state_dict())
    state["conv9.6.weight"] = torch.zeros(20, 64, 3, 3)   # a 20-class head instead of 13
    path = tmp_path / "seg_final.pth"
    torch.save(state, path)
    expected = r"wrong shapes 1: conv9.6.weight \(20, 64, 3, 3\) \(want \(13, 64, 3, 3\)\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(nets["seg"], path)
