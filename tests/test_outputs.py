"""The rules for what the tools write and what they run (sr_models.files, export/runtime.py): never destroy an input or
an existing file, complete-or-absent files with the user's umask, ONNX files checked against what their graph does,
and a warning where a model's output is noise."""

import os
import stat

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export.convert import export_fp32, set_metadata
from export.runtime import OnnxModelError, OnnxUpscaler
from export.upscale import main as upscale_main
from sr_models import create_model
from sr_models.files import OutputError, atomic_write, atomic_write_text, claim_output
from sr_models.images import load_rgb, save_rgb
from sr_models.weights import save_weights


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1).eval()
    path = tmp_path_factory.mktemp("onnx") / "pan_x2.onnx"
    export_fp32(model, path)
    return path


def photo(path, seed=0, size=(12, 10)):
    save_rgb(path, np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))
    return path


def upscale(*argv):
    """export/upscale.py's main: (exit code, what it said on stderr's last line)."""
    try:
        upscale_main([str(a) for a in argv])
    except SystemExit as exit:
        return exit.code
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The rule itself


def check_output(path, **options):
    claim_output(path, lock=False, **options)


def check_output_folder(folder, *, input_folder=None):
    claim_output(folder, inputs=[input_folder] if input_folder else [], kind="folder", lock=False)


def test_check_output_refuses_inputs_existing_files_folders_and_paths_under_a_file(tmp_path):
    source = photo(tmp_path / "in.png")
    with pytest.raises(OutputError, match="in.png: is an input"):
        check_output(source, inputs=[source], overwrite=True)  # not even with --overwrite
    with pytest.raises(OutputError, match="is an input"):  # the same file by another spelling
        check_output(tmp_path / "." / "in.png", inputs=[source], overwrite=True)
    os.link(source, tmp_path / "hardlink.png")
    with pytest.raises(OutputError, match="is an input"):
        check_output(tmp_path / "hardlink.png", inputs=[source], overwrite=True)
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        check_output(source)
    check_output(source, overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path)
    with pytest.raises(OutputError, match="in.png is a file, not a folder"):
        check_output(source / "out.png")
    check_output(tmp_path / "new" / "deeper" / "out.png")  # missing folders are made when written


def test_an_output_folder_is_never_the_input_folder_or_inside_it(tmp_path):
    (tmp_path / "photos").mkdir()
    for target in ("photos", "photos/x4", "photos/./"):
        with pytest.raises(OutputError, match="inside\\) the input folder"):
            check_output_folder(tmp_path / target, input_folder=tmp_path / "photos")
    check_output_folder(tmp_path / "photos_x4", input_folder=tmp_path / "photos")  # a sibling with a shared prefix
    photo(tmp_path / "file.png")
    with pytest.raises(OutputError, match="is a file"):
        check_output_folder(tmp_path / "file.png")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_rgb(tmp_path / "image.png", np.zeros((4, 4, 3), np.uint8))
        save_weights(
            create_model("pan", scale=2, channels=4, upsample_channels=4, num_blocks=1), tmp_path / "w.safetensors"
        )
        atomic_write_text(tmp_path / "report.json", "{}\n")
    finally:
        os.umask(old)
    for name in ("image.png", "w.safetensors", "report.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_failed_write_leaves_nothing_and_the_old_file_whole(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old\n")

    def half_then_fail(partial):
        partial.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="report.json: cannot write \\(.*No space left on device"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]

    def interrupted(partial):
        partial.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.json", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_an_unwritable_folder_is_named_and_nothing_is_left(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; a folder under a file stands in below")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    with pytest.raises(OutputError, match="locked/out.png: cannot write"):
        save_rgb(folder / "out.png", np.zeros((2, 2, 3), np.uint8))


def test_writing_under_a_file_names_the_path(tmp_path):
    photo(tmp_path / "file.png")
    with pytest.raises(OutputError, match="file.png/out.png: cannot write"):
        save_rgb(tmp_path / "file.png" / "out.png", np.zeros((2, 2, 3), np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# Through export/upscale.py


def test_upscale_never_replaces_its_input(tmp_path, model_path, capsys):
    source = photo(tmp_path / "in.png")
    before = source.read_bytes()
    assert "is an input" in str(upscale(model_path, source, source))
    assert "is an input" in str(upscale(model_path, source, source, "--overwrite"))
    assert source.read_bytes() == before


def test_upscale_refuses_the_input_folder_as_output_and_leaves_every_photo(tmp_path, model_path):
    folder = tmp_path / "photos"
    originals = {p.name: p.read_bytes() for p in (photo(folder / f"{i}.png", seed=i) for i in range(3))}
    for target in (folder, folder / "x2"):
        assert "input folder" in str(upscale(model_path, folder, target))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals


def test_upscale_replaces_an_existing_output_only_with_overwrite(tmp_path, model_path):
    source = photo(tmp_path / "in.png")
    target = photo(tmp_path / "out.png", seed=3)  # an earlier output of ours (save_rgb marks it)
    before = target.read_bytes()
    assert "already exists; pass --overwrite" in str(upscale(model_path, source, target))
    assert target.read_bytes() == before
    # A folder run checks every output before the first image is run: nothing is written when one exists.
    folder, out = tmp_path / "photos", tmp_path / "out"
    photo(folder / "a.png"), photo(folder / "b.png", seed=1)
    photo(out / "b.png", seed=4)
    assert "b.png: already exists" in str(upscale(model_path, folder, out))
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert upscale(model_path, source, target, "--overwrite") == 0
    assert load_rgb(target).shape == (24, 20, 3)
    assert upscale(model_path, folder, out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


# ---------------------------------------------------------------------------------------------------------------
# ONNX files are checked against what their graph does


def relabelled(model_path, tmp_path, **props):
    path = tmp_path / "relabelled.onnx"
    graph = onnx.load(str(model_path))
    path.write_bytes(graph.SerializeToString())
    set_metadata(path, props)
    return path


@pytest.mark.parametrize("claimed", ["4", "1", "0", "-2", "two", "2.0"])
def test_onnx_metadata_claiming_another_scale_than_the_graph_is_refused(tmp_path, model_path, claimed):
    path = relabelled(model_path, tmp_path, scale=claimed)
    with pytest.raises(OnnxModelError, match=f"metadata says scale '{claimed}', but the graph upscales by 2"):
        OnnxUpscaler(path)
    source = photo(tmp_path / "in.png")
    assert "graph upscales by 2" in str(upscale(path, source, tmp_path / "out.png"))
    assert not (tmp_path / "out.png").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_a_static_shape_onnx_model_is_refused_with_how_to_fix_it(tmp_path):
    model = create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1).eval()
    path = tmp_path / "static.onnx"
    torch.onnx.export(
        model, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, input_names=["lr"], output_names=["sr"]
    )  # no dynamic_axes: every size fixed
    with pytest.raises(OnnxModelError, match="static.onnx: the model does not run on a 1x3x9x7 input .* dynamic"):
        OnnxUpscaler(path)


class WildWhereBright(nn.Module):
    """x2 nearest upscaling whose output explodes (x1e4) where the input is near white: a model failing locally."""

    def forward(self, x):
        up = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return up * (1 + 1e4 * (up > 0.99).float())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_upscale_warns_naming_the_image_and_region_where_the_output_is_noise(tmp_path, capsys):
    path = tmp_path / "wild.onnx"
    torch.onnx.export(
        WildWhereBright(),
        (torch.rand(2, 3, 8, 8),),
        str(path),
        dynamo=False,
        input_names=["lr"],
        output_names=["sr"],
        dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "h", 3: "w"}},
    )
    image = np.full((20, 30, 3), 100, np.uint8)
    image[4:8, 10:15] = 255  # output rows 8-16, columns 20-30
    save_rgb(tmp_path / "calm.png", np.full((20, 30, 3), 100, np.uint8))
    save_rgb(tmp_path / "wild.png", image)
    assert upscale(path, tmp_path / "calm.png", tmp_path / "calm_x2.png") == 0
    assert "warning" not in capsys.readouterr().err
    # Tiles of 8 px: the bad region spans several tiles, and is still reported as one box in output pixels.
    assert upscale(path, tmp_path / "wild.png", tmp_path / "wild_x2.png", "--tile", "8", "--tile-pad", "2") == 0
    err = capsys.readouterr().err
    assert "wild.png: model output far outside [0, 1]" in err
    assert "region x 20-30, y 8-16" in err and "3.33% of pixels" in err


# ---------------------------------------------------------------------------------------------------------------
# Inputs: LR/HR pairing by literal name, pixel formats


def test_lr_files_pair_by_literal_name_never_as_a_glob(tmp_path):
    from sr_models.evaluation.samples import find_lr_file, load_benchmark

    hr, lr = tmp_path / "HR", tmp_path / "LR"
    photo(hr / "img[1].png", size=(8, 8))
    photo(lr / "img1x2.png", seed=1, size=(4, 4))  # what the glob `img[1]x2.*` would match
    with pytest.raises(ValueError, match=r"no LR image for 'img\[1\]'"):
        load_benchmark(hr, scale=2, lr_dir=lr)
    photo(lr / "img[1]x2.png", seed=2, size=(4, 4))
    assert find_lr_file(lr, "img[1]", 2).name == "img[1]x2.png"
    for name in ("a*b", "c?", "d[!x]"):
        photo(lr / f"{name}.png", size=(4, 4))
        assert find_lr_file(lr, name, 2).name == f"{name}.png"


@pytest.mark.parametrize(
    "mode, values, expected",
    [
        ("F", np.full((4, 4), 0.5, np.float32), "unsupported pixel mode F"),  # a 0-1 float TIFF: was silently black
        ("F", np.full((4, 4), 200.0, np.float32), "unsupported pixel mode F"),
        ("I", np.full((4, 4), 70000, np.int32), "32-bit integer pixels"),
        ("I", np.full((4, 4), -5, np.int32), "32-bit integer pixels"),
    ],
)
def test_pixel_formats_without_a_defined_8bit_mapping_are_refused_naming_the_mode(tmp_path, mode, values, expected):
    from PIL import Image

    path = tmp_path / "odd.tif"
    Image.fromarray(values, mode=mode).save(path)
    with pytest.raises(ValueError, match=f"odd.tif: {expected}"):
        load_rgb(path)


def test_lab_images_are_refused_not_read_as_rgb(tmp_path):
    from PIL import Image

    path = tmp_path / "lab.tif"
    Image.new("LAB", (4, 4), (50, 10, 10)).save(path)
    with pytest.raises(ValueError, match="lab.tif: unsupported pixel mode LAB"):
        load_rgb(path)


def test_16_bit_grayscale_in_mode_I_is_still_read(tmp_path):
    from PIL import Image

    path = tmp_path / "gray16.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    assert (load_rgb(path) == 255).all()
