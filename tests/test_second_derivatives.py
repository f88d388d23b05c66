"""Second derivatives: the fused backward kernels have none, so differentiating their gradients
again (after ``create_graph=True``) raises an error naming the op instead of silently giving
zeros; the first-order gradients themselves are unchanged by ``create_graph=True``."""

import pytest
import torch
from functional_calls import functional_calls

from fastgen import _ext, ops

pytestmark = pytest.mark.skipif(not _ext.has_op("masked_conv2d"), reason="needs the compiled extension")


# additive_coupling is left out: its backward is exact autograd (test below).
SECOND_ORDER_FREE = [name for name in functional_calls() if name != "additive_coupling"]


def _scalar(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.square() if i == 0 else o).sum() for i, o in enumerate(outs))


@pytest.mark.parametrize("name", SECOND_ORDER_FREE)
def test_second_derivative_raises_naming_the_op(name):
    fn, x = functional_calls(torch.float64, requires_grad=True)[name]
    first, = torch.autograd.grad(_scalar(fn()), x)
    graph, = torch.autograd.grad(_scalar(fn()), x, create_graph=True)
    assert torch.equal(graph.detach(), first)  # create_graph changes nothing in the first derivative
    with pytest.raises(RuntimeError, match=f"fastgen::{name} has no second derivative"):
        graph.square().sum().backward()


def test_additive_coupling_has_its_exact_second_derivative():
    x, shift = (torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradgradcheck(lambda a, b: ops.additive_coupling(a, b, reverse=True), (x, shift))
