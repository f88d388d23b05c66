"""The benchmark harness: timer, correctness gate, compile fallback, report writers.

Fast (no torch.compile: the "compiled" implementation is skipped or faked).
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from fastgen.bench import harness, registry, report
from fastgen.bench.harness import (
    COMPILED,
    EAGER,
    FASTGEN,
    FORWARD,
    FORWARD_BACKWARD,
    BenchCase,
    CaseSpec,
    collect_cases,
    measure,
    run_cases,
)


def _axpy_inputs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(64, 32, device=device), torch.randn(64, 32, device=device)


def _eager_axpy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 2 * x + y


def _fast_axpy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.add(y, x, alpha=2)


def _axpy_case(mode: str = FORWARD, fast=_fast_axpy, **overrides) -> BenchCase:
    fields = dict(op="axpy", shape="64x32", dtype=torch.float32, mode=mode,
                  make_inputs=_axpy_inputs,
                  implementations={EAGER: _eager_axpy, FASTGEN: fast},
                  bytes_moved=3 * 64 * 32 * 4, family="tiny")
    fields.update(overrides)
    return BenchCase(**fields)


def _rows_by_impl(run: harness.BenchRun) -> dict[str, harness.BenchRow]:
    return {row.implementation: row for row in run.rows}


FAST = dict(warmup=1, repeats=3, max_seconds=0.2)


# --- timer --------------------------------------------------------------------------------------


def test_measure_times_a_sleep():
    timing = measure(lambda: time.sleep(0.002), "cpu", warmup=1, repeats=5)
    assert 0.0018 < timing.median_s < 0.05
    assert timing.q1_s <= timing.median_s <= timing.q3_s
    assert timing.iqr_s >= 0
    assert timing.samples == 5
    assert timing.calls_per_sample == 1


def test_measure_batches_tiny_calls():
    timing = measure(lambda: None, "cpu", warmup=2, repeats=3)
    assert timing.calls_per_sample > 1
    assert 0 < timing.median_s < 1e-4


def test_measure_stops_at_the_time_budget():
    timing = measure(lambda: time.sleep(0.01), "cpu", warmup=1, repeats=1000, max_seconds=0.05)
    assert 3 <= timing.samples < 20


def test_measure_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        measure(lambda: None, "cpu", repeats=0)


def test_measure_interleaved_takes_samples_in_turns_rotating_the_order():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name) or time.sleep(3e-4)) for name in "abc"}
    timings = harness.measure_interleaved(fns, "cpu", warmup=1, repeats=4, max_seconds=10, samples_per_turn=2)
    assert calls[:3] == ["a", "b", "c"]  # one warm-up call each
    # Each turn: one untimed call (short calls re-warm after another's), then 2 samples.
    turns = [calls[i:i + 3] for i in range(3, len(calls), 3)]
    assert [turn[0] for turn in turns] == ["a", "b", "c", "b", "c", "a"]
    assert all(len(set(turn)) == 1 for turn in turns) and len(calls) == 3 + 6 * 3
    assert {name: t.samples for name, t in timings.items()} == {"a": 4, "b": 4, "c": 4}


def test_measure_interleaved_gives_slow_calls_fewer_samples_per_turn():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name) or time.sleep(0.06)) for name in "ab"}
    timings = harness.measure_interleaved(fns, "cpu", warmup=1, repeats=4, max_seconds=0.2, samples_per_turn=5)
    # A turn ends once it has lasted max_seconds / 4 (0.05 s): one 0.06 s sample; no re-warming
    # call for calls this slow; at least 3 samples each.
    assert calls[2:8] == ["a", "b", "b", "a", "a", "b"]
    assert all(t.samples >= 3 for t in timings.values())


def test_measure_interleaved_keeps_ratios_under_drift():
    """The machine slows down call by call; b does twice a's work. Timed in turns, b/a stays
    near 2; timed one after the other (measure), b would see the later, slower machine."""
    count = [0]

    def work(units: int) -> None:
        count[0] += 1
        time.sleep(1e-3 * units * (1 + 0.1 * count[0]))

    timings = harness.measure_interleaved({"a": lambda: work(1), "b": lambda: work(2)}, "cpu", warmup=1,
                                          repeats=20, max_seconds=30)
    assert 1.6 < timings["b"].median_s / timings["a"].median_s < 2.5
    count[0] = 0  # the same, b timed first and then a: the drift hides the 2x
    b_first = measure(lambda: work(2), "cpu", warmup=1, repeats=20, max_seconds=30)
    a_then = measure(lambda: work(1), "cpu", warmup=1, repeats=20, max_seconds=30)
    assert b_first.median_s / a_then.median_s < 1.3


def test_measure_interleaved_drops_a_callable_that_raises():
    def broken() -> None:
        raise RuntimeError("kernel failed")

    errors: dict[str, BaseException] = {}
    timings = harness.measure_interleaved({"ok": lambda: None, "bad": broken}, "cpu", warmup=1, repeats=3,
                                          errors=errors)
    assert set(timings) == {"ok"} and timings["ok"].samples == 3
    assert isinstance(errors["bad"], RuntimeError)
    with pytest.raises(RuntimeError, match="kernel failed"):
        harness.measure_interleaved({"bad": broken}, "cpu", warmup=1, repeats=3)


def test_copy_bandwidth_cpu_is_positive():
    assert harness.copy_bandwidth("cpu", nbytes=4 * 2**20, repeats=3) > 0


# --- running cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [FORWARD, FORWARD_BACKWARD])
def test_tiny_case_end_to_end(mode):
    run = run_cases([_axpy_case(mode)], "cpu", implementations={EAGER, FASTGEN}, **FAST)
    rows = _rows_by_impl(run)
    assert set(rows) == {EAGER, FASTGEN}  # compiled skipped on request
    assert rows[EAGER].check == "ref" and rows[FASTGEN].check == "ok"
    for row in rows.values():
        assert row.error is None
        assert row.median_s > 0 and row.samples >= 1
        assert row.gbps == pytest.approx(row.bytes_moved / row.median_s / 1e9)
        assert row.vs_compiled is None and row.pct_copy_bandwidth is None
        assert (row.op, row.shape, row.dtype, row.mode, row.family) == ("axpy", "64x32", "fp32", mode,
                                                                       "tiny")
    assert rows[EAGER].vs_eager == pytest.approx(1.0)
    assert rows[FASTGEN].vs_eager == pytest.approx(rows[EAGER].median_s / rows[FASTGEN].median_s)
    assert run.environment["device"] == "cpu" and run.settings["repeats"] == 3


def test_wrong_kernel_is_not_timed():
    case = _axpy_case(fast=lambda x, y: 2 * x + y + 1e-2)
    run = run_cases([case], "cpu", implementations={EAGER, FASTGEN}, **FAST)
    fast = _rows_by_impl(run)[FASTGEN]
    assert fast.check.startswith("FAIL") and "max abs err" in fast.check
    assert fast.median_s is None and fast.gbps is None
    assert run.failed_checks == [fast]


def test_wrong_gradient_is_caught():
    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            return 2 * x + y

        @staticmethod
        def backward(ctx, grad):
            return 3 * grad, grad

    run = run_cases([_axpy_case(FORWARD_BACKWARD, fast=WrongGrad.apply)], "cpu",
                    implementations={EAGER, FASTGEN}, **FAST)
    assert _rows_by_impl(run)[FASTGEN].check.startswith("FAIL")


def _sum_case(fast, **overrides) -> BenchCase:
    """A case with two outputs, x and a per-row sum of x (the shape of a flow's (y, logdet))."""
    return _axpy_case(implementations={EAGER: lambda x, y: (x + y, (x + y).sum(1)), FASTGEN: fast}, **overrides)


def test_output_atol_loosens_only_the_output_it_names():
    def off_in_the_sum(x, y):  # the sum off by 5e-4, as another summation order of many terms can be
        return x + y, (x + y).sum(1) + 5e-4

    def off_in_both(x, y):
        return x + y + 5e-4, (x + y).sum(1) + 5e-4

    def check(fast, output_atol) -> str:
        run = run_cases([_sum_case(fast, output_atol=output_atol)], "cpu", implementations={EAGER, FASTGEN}, **FAST)
        return _rows_by_impl(run)[FASTGEN].check

    assert check(off_in_the_sum, {}).startswith("FAIL: output 1")
    assert check(off_in_the_sum, {1: 1e-3}) == "ok"
    assert check(off_in_both, {1: 1e-3}).startswith("FAIL: output 0")


def test_flow_logdet_tolerance_grows_with_the_terms_summed():
    from fastgen.bench.cases import flows

    for op, (n, c, h, w), scale in flows.GPU_SHAPES:
        for case in flows._cases((op, (n, c, h, w), scale), torch.float32, FORWARD, False):
            if op == "additive_coupling":
                assert case.output_atol == {}
            else:
                assert case.output_atol == {1: pytest.approx(flows.LOGDET_ATOL_PER_TERM * c * h * w)}


def test_noise_ops_are_checked_through_their_explicit_noise_twins():
    def eager(x):
        return x + torch.randn_like(x)

    def fast(x):
        return x + torch.randn_like(x) * 1.0  # other noise draws: not comparable directly

    case = BenchCase(op="noisy", shape="16", dtype=torch.float32, mode=FORWARD,
                     make_inputs=lambda device: (torch.randn(16, 4, device=device),),
                     implementations={EAGER: eager, FASTGEN: fast}, bytes_moved=2 * 64 * 4,
                     check_implementations={EAGER: lambda x, eps: x + eps,
                                            FASTGEN: lambda x, eps: eps + x},
                     check_extra=lambda inputs: (torch.randn_like(inputs[0]),))
    rows = _rows_by_impl(run_cases([case], "cpu", implementations={EAGER, FASTGEN}, **FAST))
    assert rows[FASTGEN].check == "ok" and rows[FASTGEN].median_s is not None


def test_compile_failure_is_recorded_not_raised(monkeypatch):
    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("inductor exploded\nsecond line")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    rows = _rows_by_impl(run_cases([_axpy_case()], "cpu", **FAST))
    assert set(rows) == {EAGER, COMPILED, FASTGEN}
    assert "inductor exploded" in rows[COMPILED].error
    assert "second line" not in rows[COMPILED].error
    assert rows[COMPILED].median_s is None
    assert rows[FASTGEN].median_s is not None and rows[FASTGEN].vs_compiled is None


def test_compiled_row_uses_the_compiled_callable(monkeypatch):
    compiled_calls = []

    def fake_compile(fn, **kwargs):
        def compiled(*args):
            compiled_calls.append(1)
            return fn(*args)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    rows = _rows_by_impl(run_cases([_axpy_case(), _axpy_case(FORWARD_BACKWARD)], "cpu", **FAST))
    assert rows[COMPILED].check == "ok" and rows[COMPILED].vs_compiled == pytest.approx(1.0)
    assert rows[FASTGEN].vs_compiled is not None
    assert compiled_calls


def test_implementation_error_becomes_a_row():
    def crash(x, y):
        raise NotImplementedError("no kernel for this dtype")

    rows = _rows_by_impl(run_cases([_axpy_case(fast=crash)], "cpu",
                                   implementations={EAGER, FASTGEN}, **FAST))
    assert "NotImplementedError: no kernel" in rows[FASTGEN].error
    assert rows[EAGER].median_s is not None


def test_case_validation():
    with pytest.raises(ValueError, match="mode"):
        _axpy_case(mode="backward")
    with pytest.raises(ValueError, match="eager"):
        _axpy_case(implementations={FASTGEN: _fast_axpy})


# --- registry -----------------------------------------------------------------------------------


@pytest.fixture
def tiny_registry(monkeypatch):
    """Only a 'tiny' family, so the test does not depend on the real cases."""
    from fastgen.bench import cases

    monkeypatch.setattr(registry, "_FAMILIES", {})
    monkeypatch.setattr(cases, "load_all", lambda: [])

    @harness.register_cases("tiny")
    def tiny(spec: CaseSpec):
        return [_axpy_case(FORWARD, family=""), _axpy_case(FORWARD_BACKWARD, family="")]

    return tiny


def test_collect_cases_filters_by_op_and_family(tiny_registry):
    spec = CaseSpec(device=torch.device("cpu"))
    assert len(collect_cases(spec)) == 2
    assert len(collect_cases(spec, ["axpy"])) == 2
    assert [c.family for c in collect_cases(spec, ["tiny"])] == ["tiny", "tiny"]
    with pytest.raises(ValueError, match="unknown op 'nope'.*known ops: axpy"):
        collect_cases(spec, ["nope"])


def test_gaussian_cases_registered():
    spec = CaseSpec(device=torch.device("cpu"))
    cases = collect_cases(spec, ["gaussian"])
    ops = {c.op for c in cases}
    assert ops == {"reparameterize_with_kl", "reparameterize", "gaussian_kl",
                   "standard_normal_log_prob"}
    headline = [c for c in cases if c.op == "reparameterize_with_kl" and c.shape == "4096x512"]
    assert {c.mode for c in headline} == {FORWARD, FORWARD_BACKWARD}
    assert all(c.dtype == torch.float32 for c in cases)  # CPU default
    quick = collect_cases(CaseSpec(device=torch.device("cpu"), quick=True))
    assert 1 <= len(quick) <= 15  # gaussian 5, conv 2, masked_conv 2, wavenet 2, pixelcnn 2, flows 1, steps 1


def test_masked_conv_cases_registered():
    cpu = CaseSpec(device=torch.device("cpu"))
    cases = collect_cases(cpu, ["masked_conv"])
    assert {c.op for c in cases} == {"masked_conv2d"} and {c.family for c in cases} == {"masked_conv"}
    assert all(c.dtype == torch.float32 for c in cases)  # CPU default
    assert {(c.shape, c.mode) for c in cases} == {
        (shape, mode) for shape in ("32x64x28x28->64 3x3 mask-B", "32x1x28x28->64 7x7 mask-A",
                                    "32x64x28x28->64 3x3 mask-B channels-last")
        for mode in (FORWARD, FORWARD_BACKWARD)}
    for case in cases:
        assert set(case.implementation_names()) == {EAGER, COMPILED, FASTGEN}
        assert case.grad_args == (0, 1, 2)
        # useful FLOPs: 2 N H W C_out C_in kept_taps (5 of 9 for 3x3 "B", 24 of 49 for 7x7 "A")
        kept = 64 * 64 * 5 if "mask-B" in case.shape else 64 * 1 * 24
        assert case.flops == 2 * 32 * 28 * 28 * kept * (3 if case.mode == FORWARD_BACKWARD else 1)
    quick = collect_cases(CaseSpec(device=torch.device("cpu"), quick=True), ["masked_conv2d"])
    assert [(c.shape, c.mode) for c in quick] == [("32x64x28x28->64 3x3 mask-B", FORWARD),
                                                  ("32x64x28x28->64 3x3 mask-B", FORWARD_BACKWARD)]
    x, w, b, mask, *options = quick[0].make_inputs(torch.device("cpu"))
    assert x.shape == (32, 64, 28, 28) and w.shape == (64, 64, 3, 3) and b.shape == (64,)
    assert options == ["B", 1, 1, 1] and int(mask.sum()) == 64 * 64 * 5


def test_masked_conv_implementations_agree_on_a_small_shape():
    from fastgen.bench.cases import masked_conv

    shape = masked_conv.Shape(2, 3, 6, 5, 6, 3, 5, "A", dilation=2, color_channels=3)
    (case,) = masked_conv._cases(shape, torch.float32, FORWARD_BACKWARD, triton=False)
    rows = _rows_by_impl(run_cases([case], "cpu", implementations={EAGER, FASTGEN}, **FAST))
    assert rows[EAGER].check == "ref" and rows[FASTGEN].check == "ok"
    assert rows[FASTGEN].tflops == pytest.approx(case.flops / rows[FASTGEN].median_s / 1e12)


def test_pixelcnn_cases_registered():
    cpu = CaseSpec(device=torch.device("cpu"))
    cases = collect_cases(cpu, ["pixelcnn"])
    assert {c.op for c in cases} == {"gated_pixelcnn_layer"} and {c.family for c in cases} == {"pixelcnn"}
    assert all(c.dtype == torch.float32 for c in cases)  # CPU default
    assert [(c.shape, c.mode) for c in cases] == [("32x64x28x28->64 3x3 mask-B", FORWARD),
                                                  ("32x64x28x28->64 3x3 mask-B", FORWARD_BACKWARD)]
    for case in cases:
        assert set(case.implementation_names()) == {EAGER, COMPILED, FASTGEN}
        assert case.grad_args == tuple(range(10))
        # useful FLOPs per pixel: vertical 2C C_in (2x3), horizontal 2C C_in 2, link 2C 2C, out C C
        per_pixel = 128 * 64 * 6 + 128 * 64 * 2 + 128 * 128 + 64 * 64
        assert case.flops == 2 * 32 * 28 * 28 * per_pixel * (3 if case.mode == FORWARD_BACKWARD else 1)
    quick = collect_cases(CaseSpec(device=torch.device("cpu"), quick=True), ["gated_pixelcnn_layer"])
    assert [(c.shape, c.mode) for c in quick] == [(c.shape, c.mode) for c in cases]
    v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type = quick[0].make_inputs(torch.device("cpu"))
    assert v.shape == h.shape == (32, 64, 28, 28) and mask_type == "B"
    assert w_v.shape == (128, 64, 2, 3) and w_h.shape == (128, 64, 1, 2)
    assert w_v2h.shape == (128, 128) and w_res.shape == (64, 64)
    assert b_v.shape == b_h.shape == b_v2h.shape == (128,) and b_res.shape == (64,)


def test_pixelcnn_implementations_agree_on_a_small_shape():
    from fastgen.bench.cases import pixelcnn

    shape = pixelcnn.Shape(2, 3, 4, 5, 6, 5, "A")
    (case,) = pixelcnn._cases(shape, torch.float32, FORWARD_BACKWARD, triton=False)
    rows = _rows_by_impl(run_cases([case], "cpu", implementations={EAGER, FASTGEN}, **FAST))
    assert rows[EAGER].check == "ref" and rows[FASTGEN].check == "ok"
    assert rows[FASTGEN].tflops == pytest.approx(case.flops / rows[FASTGEN].median_s / 1e12)


def test_parse_dtype():
    assert harness.parse_dtype("bf16") is torch.bfloat16
    assert harness.parse_dtype("Float32") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        harness.parse_dtype("fp8")


# --- report -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run():
    cases = [_axpy_case(), _axpy_case(fast=lambda x, y: 2 * x + y + 1)]
    return run_cases(cases, "cpu", implementations={EAGER, FASTGEN}, **FAST)


ENV_KEYS = {"device", "device_name", "torch", "triton", "fastgen", "cpu_threads", "date", "host",
            "python", "copy_bandwidth_gbps", "cpu_steal_share"}


def test_steal_share_is_the_steal_counter_over_all_cpu_time():
    before = [100, 0, 50, 800, 10, 0, 0, 40]
    after = [160, 0, 70, 830, 10, 0, 0, 80]  # 150 ticks in all, 40 of them stolen
    assert report.steal_share(before, after) == pytest.approx(40 / 150)
    assert report.steal_share(None, after) is None and report.steal_share(after, after) is None
    ticks = report.cpu_ticks()
    assert ticks is None or (len(ticks) == 8 and all(t >= 0 for t in ticks))


def test_steal_is_reported_with_the_environment(tiny_run):
    steal = tiny_run.environment["cpu_steal_share"]
    assert steal is None or 0.0 <= steal <= 1.0
    try:  # the fixture is shared: put its value back
        tiny_run.environment["cpu_steal_share"] = 0.25
        assert "(steal): 25% -- times are slower" in report.format_run(tiny_run)
        tiny_run.environment["cpu_steal_share"] = 0.0
        assert "(steal): 0%" in report.format_run(tiny_run) and "slower" not in report.format_run(tiny_run)
    finally:
        tiny_run.environment["cpu_steal_share"] = steal


def test_write_results_json_and_markdown(tiny_run, tmp_path):
    paths = report.write_results(tiny_run, tmp_path / "out")
    assert [p.name for p in paths] == ["results.json", "results.md"]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert ENV_KEYS <= set(data["environment"])
    assert data["environment"]["cpu_threads"] == torch.get_num_threads()
    assert data["environment"]["torch"] == torch.__version__
    row = data["rows"][0]
    for key in ("op", "shape", "dtype", "pass", "implementation", "median_s", "iqr_s", "vs_eager",
                "vs_compiled", "gbps", "pct_copy_bandwidth", "check", "error"):
        assert key in row
    assert len(data["rows"]) == 4
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| op | shape | dtype | pass | implementation | median time | IQR | vs eager | vs compiled | GB/s" in markdown
    assert "torch " + torch.__version__ in markdown and "CPU threads" in markdown
    assert markdown.count("| axpy |") == 4


def test_format_table_is_fixed_width(tiny_run):
    table = report.format_table(tiny_run.rows)
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["op", "shape", "dtype", "pass", "implementation", "median"]
    assert "vs eager" in lines[0] and "GB/s" in lines[0] and "check" in lines[0]
    assert "FAIL" in table and "ref" in table
    column = lines[0].index("implementation")
    assert all(line[column:].split()[0] in {"eager", "fastgen"} for line in lines[2:] if line)


def test_tflops_only_where_a_case_has_flops(tiny_run, tmp_path):
    assert all(row.flops == 0 and row.tflops is None for row in tiny_run.rows)
    assert "TFLOP/s" not in report.format_table(tiny_run.rows)
    assert "TFLOP/s" not in report.format_markdown_table(tiny_run.rows)
    assert "tflops" not in report.to_dict(tiny_run)["rows"][0]
    assert "TFLOP/s" not in report.to_dict(tiny_run)["columns"]

    flops = 64 * 32 * 2
    run = run_cases([_axpy_case(flops=flops)], "cpu", implementations={EAGER, FASTGEN}, **FAST)
    rows = _rows_by_impl(run)
    for row in rows.values():
        assert row.flops == flops and row.tflops == pytest.approx(flops / row.median_s / 1e12)
    lines = report.format_table(run.rows).splitlines()
    assert "TFLOP/s" in lines[0] and lines[0].index("% copy BW") < lines[0].index("TFLOP/s")
    column_end = lines[0].index("TFLOP/s") + len("TFLOP/s")
    assert all(line[:column_end].rstrip().split()[-1] == report._format_tflops(row.tflops)
               for line, row in zip(lines[2:], run.rows))
    data = report.to_dict(run)
    assert "TFLOP/s" in data["columns"] and data["rows"][0]["flops"] == flops
    assert "| TFLOP/s |" in report.format_markdown_table(run.rows)
    with pytest.raises(ValueError, match="flops"):
        _axpy_case(flops=-1)


def test_format_seconds():
    assert report.format_seconds(0.00123) == "1.23 ms"
    assert report.format_seconds(4.56e-5) == "45.6 us"
    assert report.format_seconds(2.0) == "2.00 s"
    assert report.format_seconds(None) == "-"


def test_step_cases_registered():
    cases = collect_cases(CaseSpec(device=torch.device("cpu")), ["steps"])
    assert {c.op for c in cases} == {"wavenet_layer_step", "gated_pixelcnn_vertical_step",
                                     "gated_pixelcnn_horizontal_step", "wavenet_generate", "pixelcnn_generate_row"}
    assert all(c.mode == FORWARD for c in cases)  # no gradient
    # The ops that update a state in place are checked on copies of it.
    assert all(c.check_implementations for c in cases if c.op != "pixelcnn_generate_row")


def test_fused_sampler_cases_agree_with_the_reference_loop():
    """The harness's spot-check of the two fused samplers at their benchmark sizes: the same codes
    as the loop of reference steps (float32; a tie at a CDF boundary would show as a FAIL)."""
    cases = [c for c in collect_cases(CaseSpec(device=torch.device("cpu")), ["steps"])
             if c.op == "pixelcnn_generate_row" or (c.op == "wavenet_generate" and " b1 " in c.shape)]
    assert {c.op for c in cases} == {"wavenet_generate", "pixelcnn_generate_row"}
    for case in cases:
        torch.manual_seed(0)
        inputs = case.make_inputs(torch.device("cpu"))
        results = harness.check_case(case, inputs, case.implementations)
        assert results == {EAGER: "ref", FASTGEN: "ok"}, (case.label, results)
