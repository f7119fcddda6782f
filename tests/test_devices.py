"""``--device``: one setting for a command's torch work (loe_gym/devices.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from loe_gym.devices import current_device, resolve_device, using_device


def test_auto_is_the_gpu_where_there_is_one_and_cuda_is_refused_without() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"--device 'tpu': choose from auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"--device cuda:1: torch sees no CUDA device"):
            resolve_device("cuda:1")


def test_the_predictor_service_and_the_agents_follow_the_command_device() -> None:
    from agents.configs import TrainConfig, TrainRunConfig
    from agents.training import sb3_model
    from loe_gym.predictor import PredictorConfig, PredictorModel
    from loe_gym.predictor.serving import PredictorService

    model = PredictorModel(PredictorConfig.tiny(num_items=10, num_item_features=3))
    with using_device("cpu") as device:
        assert device == current_device() == "cpu"
        assert PredictorService(model).device == torch.device("cpu")
        agent = TrainConfig(encoder="none", num_users=2)
        assert sb3_model(TrainRunConfig(agent=agent), None).device == torch.device("cpu")
    assert PredictorService(model, device="cpu").device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there: cuda is valid")
def test_the_cli_refuses_a_gpu_it_cannot_see() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "simulate", "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "error: --device cuda: torch sees no CUDA device" in done.stderr
