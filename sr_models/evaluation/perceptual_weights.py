"""The perceptual metrics' weight files: where each is looked up, its published hash, and its download.

Apart from the networks (sr_models/feature_nets.py) and the scorer (sr_models/evaluation/perceptual.py) so that
what touches the network and the user's folders sits in one small module. Order of the search: `weights_dir`
(--metrics-weights, or $SR_METRICS_WEIGHTS), torch's hub cache, an installed lpips or torchmetrics package, then a
download into the hub cache; whatever is still missing stops the command with one line per file.
"""

import hashlib
import importlib.util
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from sr_models.errors import UserError
from sr_models.weights import WeightsError

WEIGHTS_ENV = "SR_METRICS_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    names: tuple  # accepted file names, the first is the one to download and to tell the user
    url: str
    what: str
    sha256_prefix: str = ""  # torch.hub's convention: the hash prefix is part of the file name
    packaged: tuple = ()  # (package, path inside it) that ship this file


ALEXNET = WeightFile(
    ("alexnet-owt-7be5be79.pth",),
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "torchvision's ImageNet AlexNet, the LPIPS backbone",
    "7be5be79",
)
LPIPS_LINEAR = WeightFile(
    ("alex.pth",),
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    "LPIPS v0.1 linear layers for AlexNet (shipped in the [metrics] extra's torchmetrics)",
    "",
    (("torchmetrics", "functional/image/lpips_models/alex.pth"), ("lpips", "weights/v0.1/alex.pth")),
)
INCEPTION = WeightFile(
    ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "the FID/IS Inception-v3, the same file in pytorch-fid and torch-fidelity",
    "6726825d",
)
WEIGHTS_FOR = {"lpips": (ALEXNET, LPIPS_LINEAR), "fid": (INCEPTION,), "is": (INCEPTION,)}


class MissingWeightsError(UserError):
    """Weight files that are nowhere to be found; the message has one line per file."""


def hub_dir():
    return Path(torch.hub.get_dir()) / "checkpoints"


def _packaged(weight):
    for package, inner in weight.packaged:
        spec = importlib.util.find_spec(package)  # finds the package without importing it (no torchvision needed)
        if spec and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / inner
            if path.is_file():
                return path
    return None


def _download(weight, folder, timeout=20):
    """Fetch `weight` into `folder` (hash checked when the name carries one); None without a network."""
    target = folder / weight.names[0]
    chunks = []
    try:
        with urllib.request.urlopen(weight.url, timeout=timeout) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=f"downloading {target.name}", leave=False) as bar:
                while chunk := response.read(1 << 20):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except OSError:  # URLError, timeouts, refused connections: an air-gapped machine
        return None
    data = b"".join(chunks)
    if weight.sha256_prefix and not hashlib.sha256(data).hexdigest().startswith(weight.sha256_prefix):
        raise WeightsError(f"{weight.url}: downloaded file does not match its hash prefix {weight.sha256_prefix}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def check_published_hash(weight, path):
    """WeightsError unless the file's SHA-256 starts with the prefix published in its name (torch.hub's rule), for
    a file found in a folder as for one downloaded: a truncated copy, another release or another file under the
    name would give other figures without a word. (LPIPS's alex.pth has no published hash: it is checked by its
    strict load, names, shapes, finite values.) Costs one read of the file: 0.2-0.5 s for AlexNet's 233 MB."""
    if not weight.sha256_prefix:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(weight.sha256_prefix):
        raise WeightsError(
            f"{path}: SHA-256 {digest.hexdigest()[:8]}..., not the published {weight.sha256_prefix}... "
            f"of {weight.names[0]} ({weight.what}): a damaged or different file; get it again from "
            f"{weight.url}"
        )


def find_weights(metrics, weights_dir=None, *, download=True):
    """{WeightFile: path} for the metrics that need weights; MissingWeightsError lists every file not found."""
    weights_dir = weights_dir or os.environ.get(WEIGHTS_ENV)
    folders = [Path(weights_dir)] if weights_dir else []
    folders.append(hub_dir())
    needed = list(dict.fromkeys(w for metric in metrics for w in WEIGHTS_FOR.get(metric, ())))
    found, missing = {}, []
    for weight in needed:
        path = next((f / name for f in folders for name in weight.names if (f / name).is_file()), None)
        path = path or _packaged(weight) or (_download(weight, hub_dir()) if download else None)
        if path:
            check_published_hash(weight, path)
            found[weight] = path
        else:
            missing.append(weight)
    if missing:
        put = f"{weights_dir}" if weights_dir else f"a folder given by --metrics-weights DIR or ${WEIGHTS_ENV}"
        lines = [
            f"{w.names[0]} ({w.what}) not found and not downloadable here: get it from {w.url} and put it "
            f"in {put} (or in {hub_dir()})"
            for w in missing
        ]
        raise MissingWeightsError("\n".join(lines))
    return found
