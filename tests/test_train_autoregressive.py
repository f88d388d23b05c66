"""``fastgen train pixelcnn|wavenet``, ``fastgen sample`` (PNG / WAV) and ``fastgen evaluate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastgen.cli import main
from fastgen.data import read_wav, write_wav
from fastgen.models import WaveNet
from fastgen.train import checkpoint


def _tiny_wavenet_checkpoint(path, *, data=None, **config):
    """An untrained small WaveNet saved as a checkpoint at ``path``: what sample and resume read,
    without a training run. ``data`` replaces the recorded data facts (8 kHz notes by default)."""
    model = WaveNet(residual_channels=4, gate_channels=8, skip_channels=4, layers_per_stack=2, stacks=1,
                    sample_rate=8000, **config)
    facts = {"name": "notes", "shape": [1, 4000], "levels": 256, "sample_rate": 8000}
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "model": "wavenet", "config": model.config(),
                            "data": data or facts, "state_dict": model.state_dict()}, path)
    return path


def test_pixelcnn_train_sample_evaluate(tmp_path, capsys):
    run = tmp_path / "pixelcnn"
    assert main(["train", "pixelcnn", "--epochs", "2", "--out", str(run), "--no-progress", "--samples", "8"]) == 0
    for name in ("last.pt", "best.pt", "final_metrics.json", "samples.png", "samples-epoch002.png"):
        assert (run / name).is_file(), name
    final = json.loads((run / "final_metrics.json").read_text())
    assert 0 < final["bits_per_dim"] < 4.09  # below a uniform model over 17 levels after two epochs
    assert final["selected_epoch"] in (1, 2)
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--quick", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == "pixelcnn" and metrics["bits_per_dim"] == pytest.approx(final["bits_per_dim"])


@pytest.fixture()
def wav_folder(tmp_path):
    """Six 1-second clips at 8 kHz (resampled to 16 kHz by the loader): 12 half-second clips."""
    folder = tmp_path / "wavs"
    folder.mkdir()
    t = np.arange(8000) / 8000
    for i in range(6):
        write_wav(folder / f"tone{i}.wav", 0.5 * np.sin(2 * np.pi * (220 + 40 * i) * t), 8000)
    return folder


def test_wavenet_on_a_wav_folder_writes_wav_samples(tmp_path, capsys, wav_folder):
    run = tmp_path / "wavenet"
    assert main(["train", "wavenet", "--data", str(wav_folder), "--epochs", "1", "--batch-size", "4",
                 "--out", str(run), "--no-progress"]) == 0
    for name in ("last.pt", "final_metrics.json", "samples.wav", "samples-epoch001.wav"):
        assert (run / name).is_file(), name
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["data"] == str(wav_folder.resolve()) and 0 < final["bits_per_dim"] < 8.5
    out = tmp_path / "two.wav"
    assert main(["sample", str(run), "-n", "2", "-o", str(out)]) == 0
    audio, rate = read_wav(out)
    assert rate == 16000 and audio.shape == (2 * 8000 + 4000,)  # two 0.5 s clips and a 0.25 s gap
    assert np.all(audio[8000:12000] == 0) and np.abs(audio).max() > 0
    assert main(["sample", str(run), "-n", "1", "--seconds", "0.1", "-o", str(out)]) == 0
    assert read_wav(out)[0].shape == (1600,)  # 0.1 s at 16 kHz
    capsys.readouterr()
    assert main(["sample", str(run), "--seconds", "0", "-o", str(out)]) == 2
    assert "--seconds: expected a finite number > 0, got '0'" in capsys.readouterr().err
    assert main(["sample", str(run), "--temperature", "0.5", "-o", str(out)]) == 2
    assert "--temperature is for the flows (glow, realnvp), not wavenet" in capsys.readouterr().err
    assert main(["sample", str(run), "-n", "1", "-o", str(tmp_path / "s.png")]) == 2
    assert "written as .wav files" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--quick", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == "wavenet" and metrics["unigram_baseline_bits_per_dim"] > 0


def test_wavenet_trains_at_the_sample_rate_asked_for(tmp_path, capsys, wav_folder, monkeypatch):
    """--sample-rate 8000: the WAV files stay at their 8 kHz; the model, the checkpoint and the
    generated WAV use it, and evaluate reloads the data at it (from another working folder: a
    relative --data is recorded as an absolute path), as --resume does without --sample-rate."""
    run = tmp_path / "wavenet8k"
    monkeypatch.chdir(wav_folder.parent)
    assert main(["train", "wavenet", "--data", wav_folder.name, "--sample-rate", "8000", "--epochs", "1",
                 "--batch-size", "4", "--out", str(run), "--no-progress"]) == 0
    payload = torch.load(run / "last.pt", weights_only=False)
    assert payload["data"]["sample_rate"] == 8000 and payload["data"]["shape"][-1] == 4000
    assert payload["data"]["name"] == str(wav_folder.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "wavenet", "--data", str(wav_folder), "--epochs", "2", "--batch-size", "4",
                 "--out", str(run), "--no-progress", "--resume"]) == 0
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 2
    assert payload["config"]["sample_rate"] == 8000
    out = tmp_path / "one.wav"
    assert main(["sample", str(run), "-n", "1", "-o", str(out)]) == 0
    audio, rate = read_wav(out)
    assert rate == 8000 and audio.shape == (4000,)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--quick", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "wavenet"
    assert main(["train", "pixelcnn", "--sample-rate", "8000", "--out", str(tmp_path / "p")]) == 2
    assert "--sample-rate is for audio models" in capsys.readouterr().err


def test_train_list_names_the_autoregressive_models(capsys):
    assert main(["train", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert "pixelcnn" in names and "wavenet" in names


def test_wavenet_sample_creates_the_wav_folder_and_write_errors_are_one_line(tmp_path, capsys):
    """-o in a folder not made yet is created, as for PNG grids; a WAV file that cannot be
    written (here -o names a folder) is a one-line error, not a traceback after sampling."""
    run = _tiny_wavenet_checkpoint(tmp_path / "wn.pt")
    out = tmp_path / "nodir" / "x.wav"
    assert main(["sample", str(run), "-n", "1", "--seconds", "0.01", "-o", str(out)]) == 0
    assert read_wav(out)[0].shape == (80,)  # 0.01 s at 8 kHz
    blocked = tmp_path / "taken.wav"
    blocked.mkdir()
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "1", "--seconds", "0.01", "-o", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastgen: error: ") and len(err.strip().splitlines()) == 1, err
    assert f"{blocked}: cannot write the WAV file" in err


def test_the_command_prints_the_fallback_notes(tmp_path):
    """The samplers log at INFO why they fall back to slower ops; the command shows it on stderr."""
    run = _tiny_wavenet_checkpoint(tmp_path / "wn.pt")
    env = {**os.environ, "FASTGEN_FORCE_REFERENCE": "1"}  # no kernels: the fused decoder cannot run
    result = subprocess.run([sys.executable, "-m", "fastgen", "sample", str(run), "-n", "1", "--seconds", "0.01",
                             "-o", str(tmp_path / "x.wav")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert ("fastgen: WaveNet.sample: no fused decoder kernel for cpu; sampling with the per-layer step ops"
            in result.stderr.splitlines())


def test_resuming_at_another_sample_rate_names_it(tmp_path, capsys, wav_folder):
    """A run at 8 kHz resumed with --sample-rate 16000: the error is about --sample-rate, with
    both rates, not about --data (which the user did not change)."""
    run = tmp_path / "run"
    facts = {"name": str(wav_folder.resolve()), "shape": [1, 4000], "levels": 256, "sample_rate": 8000}
    _tiny_wavenet_checkpoint(run / "last.pt", data=facts)
    assert main(["train", "wavenet", "--resume", "--out", str(run), "--sample-rate", "16000", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--sample-rate 16000 differs from the 8000 Hz the checkpoint's run trained at" in err, err
    assert "--data" not in err and len(err.strip().splitlines()) == 1
