"""fastgen's flow layers are drop-ins for normflows' and nflows': with the peer's weights copied in,
they give the same outputs and log-determinants, both directions, per layer type and for a Glow.

The copying and the checks live in ``benchmarks/flows_vs_peers.py`` (which also times the models);
this test loads that file by path (``benchmarks/`` is not a package). Skipped without the peers:
``pip install --no-deps normflows==1.7.3 nflows==0.14``.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("normflows")
pytest.importorskip("nflows")

# The peers call the deprecated torch.lu / torch.triangular_solve; that is theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:torch\\.(lu|triangular_solve) is deprecated")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "flows_vs_peers.py"


def _load_benchmark():
    name = "fastgen_benchmarks_flows_vs_peers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
PEERS = bench.load_peers()
DTYPES = [torch.float32, torch.float64]
# A small Glow keeps the test fast; the benchmark checks the full-size one.
SMALL_GLOW = dict(num_levels=2, steps_per_level=2, hidden=16, batch=4)


def _assert_equivalent(result) -> None:
    tolerance = bench.TOLERANCE[result.dtype]
    assert result.worst_relative() <= tolerance, (
        f"{result.name} vs {result.peer} ({result.dtype}): dy={result.y:.2e} dlogdet={result.logdet:.2e} "
        f"back dx={result.x_back:.2e} dlogdet={result.logdet_back:.2e}")


def _ids(pairs):
    return [f"{p.peer}-{p.name}" for p in pairs]


with warnings.catch_warnings():  # collection time: pytestmark's filter does not apply yet
    warnings.filterwarnings("ignore", message=r"torch\.(lu|triangular_solve) is deprecated")
    _LAYERS = bench.layer_pairs(PEERS, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("index", range(len(_LAYERS)), ids=_ids(_LAYERS))
def test_layer_with_copied_weights_matches_the_peer(index, dtype):
    pair = bench.layer_pairs(PEERS, dtype)[index]
    _assert_equivalent(bench.check_pair(pair))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("peer", ["normflows", "nflows"])
def test_glow_with_copied_weights_matches_the_peer(peer, dtype):
    pair = next(p for p in bench.glow_pairs(PEERS, dtype, **SMALL_GLOW) if p.peer == peer)
    result = bench.check_pair(pair)
    _assert_equivalent(result)
    assert result.logdet_size > 1.0  # the weights were perturbed: the check is not of an identity map


def test_squeeze_channel_order_is_exactly_the_peers():
    for pair in bench.layer_pairs(PEERS, torch.float32):
        if pair.name == "Squeeze":
            result = bench.check_pair(pair)
            assert result.y == 0 and result.x_back == 0


def test_nflows_conv_with_a_bias_is_refused():
    conv = PEERS.nflows.transforms.OneByOneConvolution(4)
    with torch.no_grad():
        conv.bias.fill_(0.5)
    with pytest.raises(ValueError, match="bias"):
        bench.invconv_from_nflows(conv, lu=False)


def test_missing_peers_exit_with_the_install_line(monkeypatch, capsys):
    def missing():
        raise bench.PeersMissing(f"missing peer library: nflows. Install them with `{bench.INSTALL}`.")

    monkeypatch.setattr(bench, "load_peers", missing)
    assert bench.main(["--quick"]) == 2
    assert "pip install --no-deps normflows==1.7.3 nflows==0.14" in capsys.readouterr().err
