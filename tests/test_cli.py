"""The options the commands share (sr_models/cli.py): one definition each, the same meaning in every command."""

import argparse
from pathlib import Path

import pytest

from sr_models.cli import add_model_arguments


def test_model_help_lists_the_registry_and_an_unknown_name_is_left_to_the_one_line_error(monkeypatch, capsys):
    from sr_models import archs, registry

    monkeypatch.setitem(archs.ARCHITECTURES, "test_arch", archs.ARCHITECTURES["pan"])
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert vars(parser.parse_args(["--model", "test_arch", "--scale", "2"])) == {"model": "test_arch", "scale": 2}
    assert parser.parse_args(["--model", "nope"]).model == "nope"  # refused later: registry.architecture's UserError
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert all(name in said for name in registry.list_models())
    with pytest.raises(ValueError, match="unknown model 'nope'; valid models: .*imdn.*pan.*srresnet"):
        registry.architecture("nope")


def test_evaluate_export_and_upscale_read_the_shared_options_alike():
    from export.to_onnx import parse_args as export_args
    from export.upscale import parse_args as upscale_args
    from train.evaluate import parse_args as evaluate_args

    shared = ["--weights", "w.pth", "--model", "pan", "--scale", "3", "--overwrite"]
    for args in (evaluate_args([*shared, "--hr", "hr"]), export_args([*shared, "--output", "m.onnx"])):
        assert (args.weights, args.model, args.scale, args.overwrite) == (Path("w.pth"), "pan", 3, True)
    assert evaluate_args(["--weights", "w", "--hr", "hr"]).device == "auto" == upscale_args(["m.onnx", "a", "b"]).device
    upscaled = upscale_args(["m.onnx", "a", "b", "--device", "cpu"])
    assert (upscaled.device, upscaled.overwrite) == ("cpu", False)
