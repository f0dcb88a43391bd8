"""LPIPS and FID/IS plumbing through small networks of known weights, weight lookup, and the real weights.

The real-weight tests run where the files are (--metrics-weights folder in $SR_METRICS_WEIGHTS, or torch's hub
cache) and are skipped with the reason elsewhere: this project's machines cannot download them.
"""

import dataclasses
import hashlib
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from sr_models.evaluation import perceptual_weights
from sr_models.evaluation.perceptual import PerceptualScorer, inception_score, load_lpips, patches
from sr_models.evaluation.perceptual_weights import ALEXNET, INCEPTION, LPIPS_LINEAR, MissingWeightsError, find_weights
from sr_models.evaluation.samples import load_benchmark
from sr_models.evaluation.scoring import score
from sr_models.feature_nets import LPIPS_CHANNELS, FidInceptionV3, Lpips
from tests.conftest import SHARED, needs_shared
from train.evaluate import load_upscaler, main

SHIFT, SCALE = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])


class TwoLayers(nn.Module):
    """A known 'backbone': the scaled image itself, and its first two channels doubled."""

    def forward(self, x):
        return [x, 2 * x[:, :2]]


def lpips_by_hand(a, b, weights):
    """LPIPS's definition in numpy for the TwoLayers backbone: (H, W, 3) floats in [0, 1]."""
    total = 0.0
    scaled = [((2 * x - 1) - SHIFT) / SCALE for x in (a, b)]
    for layer, w in enumerate(weights):
        fa, fb = (s if layer == 0 else 2 * s[..., :2] for s in scaled)
        fa, fb = (f / (np.sqrt((f**2).sum(-1, keepdims=True)) + 1e-10) for f in (fa, fb))
        total += (((fa - fb) ** 2) @ w).mean()
    return total


def test_lpips_plumbing_matches_its_definition():
    weights = [np.array([1.0, 2.0, 0.5]), np.array([0.25, 3.0])]
    model = Lpips(TwoLayers(), channels=(3, 2)).eval()
    for lin, w in zip(model.lins, weights):
        lin.model[1].weight.data = torch.tensor(w, dtype=torch.float32).view(1, -1, 1, 1)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 9, 7, 3))
    to_tensor = lambda x: torch.tensor(x, dtype=torch.float32).permute(2, 0, 1)[None]  # noqa: E731
    with torch.no_grad():
        ours = model(to_tensor(a), to_tensor(b)).item()
        assert model(to_tensor(a), to_tensor(a)).item() == 0
    assert ours == pytest.approx(lpips_by_hand(a, b, weights), rel=1e-5)


@pytest.fixture
def fake_weights(tmp_path, monkeypatch):
    """Weight files with the real names, keys and shapes but seeded random values, in an empty weights folder."""
    monkeypatch.setattr(perceptual_weights, "hub_dir", lambda: tmp_path / "hub")  # the user's real cache must not count
    monkeypatch.setattr(perceptual_weights, "_download", lambda weight, folder: None)  # as offline as this machine
    # Seeded stand-ins cannot have the published hash (test_metric_weights_with_a_wrong_hash_are_refused tests it)
    monkeypatch.setattr(perceptual_weights, "check_published_hash", lambda weight, path: None)
    gen = torch.Generator().manual_seed(0)
    alexnet = {}
    for index, (cin, cout, k) in zip(
        (0, 3, 6, 8, 10), [(3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)]
    ):
        alexnet[f"features.{index}.weight"] = torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5
        alexnet[f"features.{index}.bias"] = torch.randn(cout, generator=gen) * 0.1
    alexnet["classifier.1.weight"] = torch.zeros(4, 9216)  # torchvision's file has the classifier too: ignored
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate(LPIPS_CHANNELS)}
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(alexnet, folder / ALEXNET.names[0])
    torch.save(lin, folder / LPIPS_LINEAR.names[0])
    return folder, alexnet, lin


def test_lpips_loads_the_files_and_taps_alexnet_after_each_relu(fake_weights):
    folder, alexnet, lin = fake_weights
    model = load_lpips(find_weights(["lpips"], folder))
    rng = np.random.default_rng(1)
    a, b = (torch.tensor(rng.random((1, 3, 70, 90)), dtype=torch.float32) for _ in range(2))

    def taps(x):  # AlexNet written out with the file's tensors: conv, relu, (pool) ... as torchvision's
        x = (2 * x - 1 - torch.tensor(SHIFT).float().view(1, 3, 1, 1)) / torch.tensor(SCALE).float().view(1, 3, 1, 1)
        out = []
        for index, stride, pad, pool in (
            (0, 4, 2, False),
            (3, 1, 2, True),
            (6, 1, 1, True),
            (8, 1, 1, False),
            (10, 1, 1, False),
        ):
            x = F.max_pool2d(x, 3, 2) if pool else x
            x = F.relu(F.conv2d(x, alexnet[f"features.{index}.weight"], alexnet[f"features.{index}.bias"], stride, pad))
            out.append(x)
        return out

    expected = 0
    for i, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        fa, fb = (f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in (fa, fb))
        expected += ((fa - fb) ** 2 * lin[f"lin{i}.model.1.weight"]).sum(1).mean()
    with torch.no_grad():
        assert model(a, b).item() == pytest.approx(expected.item(), rel=1e-5)


def test_missing_weights_name_each_file_where_to_get_it_and_where_to_put_it(fake_weights, monkeypatch):
    folder, _, _ = fake_weights
    empty = folder.parent / "empty"
    monkeypatch.setattr(perceptual_weights, "_packaged", lambda weight: None)  # as without the [metrics] extra
    with pytest.raises(MissingWeightsError) as caught:
        find_weights(["lpips", "fid", "is"], empty)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3  # AlexNet, LPIPS linear, Inception (once for FID and IS)
    for line, weight in zip(lines, (ALEXNET, LPIPS_LINEAR, INCEPTION)):
        assert line.startswith(weight.names[0]) and weight.url in line and str(empty) in line


def test_evaluate_stops_with_one_line_per_missing_file(fake_weights, monkeypatch, tmp_path, capsys):
    from sr_models import create_model, save_weights

    folder, _, _ = fake_weights
    monkeypatch.delenv(perceptual_weights.WEIGHTS_ENV, raising=False)
    save_weights(create_model("srresnet", scale=2, channels=8, num_blocks=1), tmp_path / "m.safetensors")
    hr = tmp_path / "HR"
    hr.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(hr / "a.png")
    with pytest.raises(SystemExit) as caught:  # LPIPS files are in `folder`; the Inception file is nowhere
        main(
            [
                "--weights",
                str(tmp_path / "m.safetensors"),
                "--hr",
                str(hr),
                "--metrics",
                "psnr,lpips,fid",
                "--metrics-weights",
                str(folder),
                "--device",
                "cpu",
            ]
        )
    message = str(caught.value.code)
    assert message.startswith("error: pt_inception-2015-12-05-6726825d.pth (") and message.count("\n") == 0
    assert INCEPTION.url in message and str(folder) in message
    with pytest.raises(SystemExit):  # argparse's usage error, not a traceback
        main(["--weights", "x", "--hr", str(hr), "--metrics", "psnr,niqe"])
    assert "--metrics: unknown metric(s) niqe; choose from psnr,ssim,lpips,fid,is" in capsys.readouterr().err


class TinyInception(nn.Module):
    """A known stand-in for the Inception: 'pool3' = per-channel mean and max, 'logits' = a fixed linear map."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.linspace(-3, 3, 6 * 5).view(6, 5))

    def forward(self, x):  # (N, 3, h, w) in [0, 1]
        pool3 = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], 1)  # (N, 6)
        return pool3, pool3 @ self.w


def test_fid_and_is_plumbing_over_patches(odd_images):
    """The scorer's set figures equal FID/IS computed here by hand (scipy sqrtm) from the same patches."""
    tiny = TinyInception()
    scorer = PerceptualScorer(("fid", "is"), inception=tiny, patch=16, batch_size=3)  # batches split images
    for sr, bicubic, hr in odd_images:
        assert scorer.image(sr, bicubic, hr, crop=2) == {}
    figures = scorer.finish()

    def features(column):
        cut = np.concatenate([patches(images[column][2:-2, 2:-2], 16) for images in odd_images])
        with torch.no_grad():
            return [t.double().numpy() for t in tiny(torch.tensor(cut).permute(0, 3, 1, 2).float() / 255)]

    def fid(a, b):
        mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        return ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)

    hr_pool, hr_logits = features(2)
    assert figures["patches"] == len(hr_pool) == 3 * 4 + 2 * 2
    assert figures["fid"] == pytest.approx(fid(features(0)[0], hr_pool), rel=1e-6)
    assert figures["bicubic_fid"] == pytest.approx(fid(features(1)[0], hr_pool), rel=1e-6)
    assert figures["hr_is"] == pytest.approx(inception_score(hr_logits)[0], rel=1e-9)
    assert figures["is"] == pytest.approx(inception_score(features(0)[1])[0], rel=1e-9)
    assert scorer.gaussians["hr"].count == 0 and not scorer.logits["hr"]  # finish() started a new set


@pytest.fixture
def odd_images():
    """(sr, bicubic, hr) triples of two sizes; after a 2 px crop, 3 x 4 and 2 x 2 patches of 16 px."""
    rng = np.random.default_rng(3)
    return [
        tuple(rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)) for shape in ((52, 68, 3), (37, 40, 3))
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("torch_fidelity") is None,
    reason="torch-fidelity is not installed (it needs torchvision, which this torch build lacks)",
)
def test_inception_equals_torch_fidelity_with_the_same_weights(tmp_path):  # pragma: no cover - needs torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    ours = FidInceptionV3().eval()
    torch.save(ours.state_dict(), tmp_path / "w.pth")
    theirs = FeatureExtractorInceptionV3(
        "x", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(tmp_path / "w.pth")
    )
    x = torch.randint(0, 256, (2, 3, 64, 80), dtype=torch.uint8)
    with torch.no_grad():
        for a, b in zip(theirs(x), ours(x.float() / 255)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- real weights, where present


def real_weights(metrics):
    try:
        return find_weights(metrics, download=False)
    except MissingWeightsError as error:
        pytest.skip(f"real weights absent (this machine cannot download them): {error}".replace("\n", "; "))


@needs_shared
def test_real_lpips_and_fid_rank_pan_above_bicubic_on_set5():
    found = real_weights(["lpips", "fid", "is"])
    scorer = PerceptualScorer(("lpips", "fid", "is"))
    assert set(found) == {ALEXNET, LPIPS_LINEAR, INCEPTION}
    upscaler = load_upscaler(SHARED / "weights" / "PANx4_DF2K.pth", model="pan", scale=4)
    samples = load_benchmark(SHARED / "Set5" / "HR", scale=4, lr_dir=SHARED / "Set5" / "LR_bicubic" / "X4")
    report = score(upscaler, samples, scale=4, progress=False, perceptual=scorer)
    assert 0 < report["mean"]["lpips"] < report["mean"]["bicubic_lpips"] < 1
    assert 0 < report["set"]["fid"] < report["set"]["bicubic_fid"]
    hr = samples[0].hr
    with torch.no_grad():
        assert scorer.lpips(scorer._tensor(hr[None]), scorer._tensor(hr[None])).item() == 0


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None,
    reason="torchvision (which torchmetrics' LPIPS needs) is not installed",
)
def test_real_lpips_equals_torchmetrics():  # pragma: no cover - needs torchvision and the real weights
    real_weights(["lpips"])
    from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity as reference

    a, b = torch.rand(2, 1, 3, 64, 64)
    with torch.no_grad():
        ours = PerceptualScorer(("lpips",)).lpips(a, b).item()
    assert ours == pytest.approx(reference(a, b, net_type="alex", normalize=True).item(), rel=1e-4)


def test_report_and_table_carry_every_metric(tmp_path):
    from sr_models import create_model
    from sr_models.evaluation.samples import Sample
    from sr_models.evaluation.scoring import TorchUpscaler, format_table

    rng = np.random.default_rng(4)
    samples = [
        Sample(
            f"im{i}",
            rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
            rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
        )
        for i in range(2)
    ]
    scorer = PerceptualScorer(
        ("psnr", "lpips", "fid", "is"), lpips=Lpips(TwoLayers(), channels=(3, 2)), inception=TinyInception(), patch=16
    )
    upscaler = TorchUpscaler(create_model("srresnet", scale=2, channels=8, num_blocks=1).eval())
    report = score(upscaler, samples, scale=2, progress=False, metrics=scorer.metrics, perceptual=scorer)
    assert report["mean"]["lpips"] == pytest.approx(np.mean([row["lpips"] for row in report["images"]]))
    assert report["set"]["patches"] == 2 * 2 * 2 and {"fid", "bicubic_fid", "is", "hr_is"} <= set(report["set"])
    table = format_table(report).splitlines()
    assert table[1].split() == ["image", "PSNR_Y", "PSNR_RGB", "bicubic", "PSNR_Y", "LPIPS", "bicubic", "LPIPS"]
    assert "8 patches of 16x16" in table[-4] and "fewer patches than the 2048" in table[-3]
    fid, bicubic_fid = (f"{report['set'][key]:.4f}" for key in ("fid", "bicubic_fid"))
    assert table[-2].split()[-5:] == [fid, "/", bicubic_fid, "/", "0"]


def test_download_checks_the_hash_prefix_and_writes_the_file(tmp_path):
    """Where there is a network: the file is fetched (here from a local HTTP server) and its hash prefix checked."""
    import functools
    import hashlib
    import http.server
    import threading

    from sr_models.weights import WeightsError

    data = np.random.default_rng(5).bytes(3_000_000)
    (tmp_path / "w.pth").write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/w.pth"
        good = perceptual_weights.WeightFile(("w-good.pth",), url, "test", hashlib.sha256(data).hexdigest()[:8])
        assert perceptual_weights._download(good, tmp_path / "hub").read_bytes() == data
        with pytest.raises(WeightsError, match="does not match its hash prefix 00000000"):
            perceptual_weights._download(
                perceptual_weights.WeightFile(("w-bad.pth",), url, "test", "00000000"), tmp_path / "hub"
            )
        assert not (tmp_path / "hub" / "w-bad.pth").exists()
        missing = perceptual_weights.WeightFile(("x.pth",), url.replace("w.pth", "none.pth"), "test")
        assert perceptual_weights._download(missing, tmp_path / "hub") is None  # HTTP 404 counts as "not downloadable"
    finally:
        server.shutdown()


def test_metric_weights_with_a_wrong_hash_are_refused(tmp_path, monkeypatch):
    """A local file under a published name (alexnet-owt-7be5be79.pth) whose SHA-256 does not start with that prefix
    is refused in one line naming it; one whose hash does start with it is taken."""
    monkeypatch.setattr(perceptual_weights, "hub_dir", lambda: tmp_path / "hub")
    monkeypatch.setattr(perceptual_weights, "_download", lambda weight, folder: None)
    monkeypatch.setattr(perceptual_weights, "_packaged", lambda weight: None)
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(FidInceptionV3().state_dict(), folder / INCEPTION.names[0])  # the right layout, other values
    with pytest.raises(perceptual_weights.WeightsError) as caught:
        find_weights(["fid"], folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / INCEPTION.names[0]}: SHA-256 ") and "6726825d" in message
    assert "\n" not in message
    digest = hashlib.sha256((folder / INCEPTION.names[0]).read_bytes()).hexdigest()
    monkeypatch.setattr(
        perceptual_weights, "WEIGHTS_FOR", {"fid": (dataclasses.replace(INCEPTION, sha256_prefix=digest[:8]),)}
    )
    assert list(find_weights(["fid"], folder).values()) == [folder / INCEPTION.names[0]]
