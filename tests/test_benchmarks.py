"""Benchmarks: harness statistics on a fake runner with known delays, device detection, device
profiles, roofline estimates, the report's JSON schema and HTML (parsed), and the real thing on a
tiny model: `bench` and `report` with runtimes measured in fresh processes."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from benchmarks import api, report as reports
from benchmarks.device import cpu_info, identity, last_level_cache_mb
from benchmarks.estimate import estimate_rows
from benchmarks.harness import Timing, latency_stats, time_calls
from factory.errors import ConfigError, NotFoundError, UnsupportedSpecError
from targets import api as targets_api
from targets.devices import find_profile, load_profiles
from tests.conftest import copy_home, run_cli

FAST = Timing(warmup=2, min_iters=10, min_time_s=0.2, max_time_s=5)


# -- harness statistics --------------------------------------------------------------------------------
class FakeClock:
    """A clock the fake runner advances by known delays, so every timed call is exact."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_of_known_delays_are_exact():
    clock = FakeClock()
    delays = [1.0] * 90 + [5.0] * 9 + [50.0]  # ms, in a shuffled but fixed order
    order = np.random.default_rng(0).permutation(len(delays))
    calls = iter([delays[i] for i in order] * 3)

    def runner():
        clock.now += next(calls) / 1000

    times = time_calls(runner, Timing(warmup=0, min_iters=100, min_time_s=0.0), clock=clock)
    assert len(times) == 100 and sorted(times) == pytest.approx(sorted(delays))
    stats = latency_stats(times)
    for q, key in ((50, "p50"), (90, "p90"), (99, "p99")):
        assert stats[key] == pytest.approx(np.percentile(delays, q))
    assert stats["p50"] == pytest.approx(1.0) and stats["p99"] == pytest.approx(np.percentile(delays, 99))
    assert stats["mean"] == pytest.approx(np.mean(delays)) and stats["iterations"] == 100


def test_timing_needs_both_the_minimum_count_and_the_minimum_time():
    clock = FakeClock()

    def runner():
        clock.now += 2 ** -7  # 7.8125 ms per call, exact in binary

    assert len(time_calls(runner, Timing(warmup=3, min_iters=5, min_time_s=1.0), clock=clock)) == 128  # time decides
    assert len(time_calls(runner, Timing(warmup=0, min_iters=300, min_time_s=0.1), clock=clock)) == 300  # count decides
    assert len(time_calls(runner, Timing(warmup=0, min_iters=10 ** 6, min_time_s=0.1, max_time_s=2.0), clock=clock)) == 256


def test_real_sleeping_runner_is_timed_close_to_its_delay():
    import time

    times = time_calls(lambda: time.sleep(0.004), Timing(warmup=1, min_iters=20, min_time_s=0.1))
    assert 3.9 <= latency_stats(times)["p50"] <= 12.0  # sleep never returns early; loaded machines add delay


# -- device ---------------------------------------------------------------------------------------------
X86 = """processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338\nphysical id\t: 0\ncore id\t: 0
flags\t\t: fpu sse avx2 fma avx512f avx512_vnni amx_tile amx_int8\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338
physical id\t: 0\ncore id\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni amx_tile amx_int8\n"""
ARM = """processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid asimddp\nCPU part\t: 0xd0b\n
Hardware\t: BCM2712\n"""


def test_cpu_detection_reads_model_cores_and_isa():
    x86 = cpu_info(X86)
    assert x86["model"] == "Intel(R) Xeon(R) Gold 6338" and x86["physical_cores"] == 1
    assert {"avx2", "avx512f", "avx512_vnni", "amx_int8"} <= set(x86["isa"]) and "avx_vnni" not in x86["isa"]
    arm = cpu_info(ARM)
    assert arm["model"] == "BCM2712" and {"asimd", "asimddp"} <= set(arm["isa"])


def test_this_machine_has_an_identity_and_a_cache_size(tmp_path: Path):
    me = identity()
    assert me["id"].startswith("local-") and me["id"] == identity()["id"]  # stable
    assert me["cpu"]["logical_cores"] >= 1 and "torch" in me["packages"] and me["gpus"] == [] or me["gpus"]
    (tmp_path / "index0").mkdir()
    (tmp_path / "index0" / "size").write_text("48K\n")
    (tmp_path / "index3").mkdir()
    (tmp_path / "index3" / "size").write_text("32768K\n")
    assert last_level_cache_mb(tmp_path) == 32.0


# -- device profiles -------------------------------------------------------------------------------------
def test_profiles_cover_the_devices_not_at_hand_and_map_words():
    profiles = load_profiles()
    assert {"raspberry_pi_4", "raspberry_pi_5", "jetson_orin_nano", "snapdragon_8_gen3", "apple_a17_pro",
            "intel_nuc_13"} <= set(profiles)
    for phrase, pid in (("a Raspberry Pi 4", "raspberry_pi_4"), ("Android phones", "snapdragon_8_gen3"),
                        ("an Intel NUC", "intel_nuc_13"), ("a Jetson", "jetson_orin_nano"), ("树莓派5", "raspberry_pi_5"),
                        ("iPhone", "apple_a17_pro")):
        assert find_profile(phrase, profiles).id == pid
    with pytest.raises(NotFoundError, match="Did you mean"):
        find_profile("raspbery pi", profiles)


def test_a_workspace_profile_extends_and_a_bad_one_is_a_clear_error(tmp_path: Path):
    (tmp_path / "devices.yaml").write_text("my_board:\n  name: My board\n  kind: cpu\n  targets: [tflite]\n"
                                           "  precisions: [fp32]\n  fp32_gflops: 10\n  int8_gops: 20\n  memory_gbps: 2\n"
                                           "  basis: measured by me\n")
    assert load_profiles(tmp_path)["my_board"].peak_ops("int8") == 20e9
    (tmp_path / "devices.yaml").write_text("bad:\n  name: B\n  kind: fpga\n  targets: [tflite]\n  precisions: [fp64]\n"
                                           "  fp32_gflops: -1\n  int8_gops: 1\n  memory_gbps: 1\n  basis: x\n  cache_size: 3\n")
    with pytest.raises(ConfigError) as err:
        load_profiles(tmp_path)
    for part in ("kind 'fpga'", "fp64", "fp32_gflops must be a positive", "unknown field 'cache_size'", "cache_mb"):
        assert part in err.value.message


# -- estimates and the report, from stored rows ----------------------------------------------------------
LOCAL = {"id": "local-test", "name": "Test CPU (2 threads)", "kind": "cpu", "host": "h", "os": "linux", "python": "3",
         "cpu": {"model": "Test CPU", "isa": ["avx2"], "cache_mb": 32}, "gpus": [], "packages": {},
         "peaks": {"fp32_gflops": 100.0, "int8_gops": 400.0, "memory_gbps": 10.0}}
COST = {"macs": 50_000_000, "params": 1_000_000}  # 0.1 GFLOP per call: 1 ms at the FP32 peak


def stored(target: str, precision: str, p50: float, accuracy: float, per_class: dict, device: dict = LOCAL,
           measured: bool = True, predictions: list | None = None) -> dict:
    result = {"latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "mean": p50 * 1.05, "iterations": 100},
              "throughput": {"images_per_s": 1000 / p50, "batch": 1, "threads": 2}, "memory_mb": 30.0, "size_mb": 4.0,
              "accuracy": accuracy, "per_class": per_class, "predictions": predictions, "load_ms": 10.0}
    return {"target": target, "precision": precision, "device_id": device["id"], "device": device, "measured": measured,
            "result": result}


def fake_rows() -> list[dict]:
    return [stored("pytorch", "fp32", 4.0, 0.95, {"a": 1.0, "b": 0.9}, predictions=[0, 1, 1, 0]),
            stored("openvino", "fp32", 2.0, 0.95, {"a": 1.0, "b": 0.9}, predictions=[0, 1, 1, 0]),
            stored("openvino", "int8", 0.5, 0.94, {"a": 1.0, "b": 0.88}, predictions=[0, 1, 0, 0]),
            stored("onnxruntime", "fp32", 1.5, 0.95, {"a": 1.0, "b": 0.9}),
            stored("onnxruntime", "int8", 3.0, 0.92, {"a": 0.95, "b": 0.89}),  # slower than its FP32 and over budget
            stored("web", "int8", 12.0, None, None, device={"id": "phone-1", "name": "Pixel 8 (Chrome)", "kind": "browser"})]


def test_estimates_follow_the_roofline_and_are_labelled():
    profiles = load_profiles()
    rows, skipped = estimate_rows(fake_rows(), profiles, LOCAL, COST)
    assert rows and all(r["measured"] is False and r["result"]["estimate"]["basis"] for r in rows)
    assert skipped == []  # fp16 rows are calibrated by the fp32 measurements
    by = {(r["device_id"], r["precision"]): r["result"] for r in rows}
    # the NUC runs OpenVINO: openvino int8 here does 0.1 GOP in 0.5 ms = 50% of the 400 GOPS peak, so it is
    # compute-bound and scales by the INT8 rates; its 1 MB of INT8 weights fit the NUC's cache
    nuc = by[("intel_nuc_13", "int8")]
    assert nuc["estimate"]["calibrated_by"]["target"] == "openvino" and nuc["estimate"]["confidence"] == "medium"
    assert nuc["latency_ms"]["p50"] == pytest.approx(0.5 * 400 / 1400)
    # a Pi 4 is calibrated by onnxruntime (one of its runtimes): 3 ms here is 8% of peak, overhead-bound,
    # so it scales by the FP32 rates and says so
    pi4 = by[("raspberry_pi_4", "int8")]
    assert pi4["estimate"]["calibrated_by"]["target"] == "onnxruntime" and pi4["estimate"]["confidence"] == "low"
    assert pi4["latency_ms"]["p50"] == pytest.approx(3.0 * 100 / 13.5)
    assert pi4["latency_ms"]["p99"] == pytest.approx(pi4["latency_ms"]["p50"] * 1.3)
    # weights that do not fit a device's cache put a floor under it: 400 MB of FP32 weights over 4.5 GB/s
    big = estimate_rows(fake_rows(), profiles, LOCAL, {"macs": 1000, "params": 100_000_000})[0]
    pi4_fp32 = next(r for r in big if r["device_id"] == "raspberry_pi_4" and r["precision"] == "fp32")["result"]
    assert pi4_fp32["latency_ms"]["p50"] == pytest.approx(4e8 / 4.5e9 * 1000) and pi4_fp32["estimate"]["bound"] == "memory"


def test_skipped_estimates_say_why():
    rows, skipped = estimate_rows([stored("pytorch", "fp32", 4.0, 0.9, {})], load_profiles(), LOCAL, COST)
    assert all(r["precision"] in ("fp32", "fp16") for r in rows)
    assert {(s["device"], s["precision"]) for s in skipped} >= {("raspberry_pi_4", "int8")}
    assert all("nothing measured here at int8" in s["reason"] for s in skipped)


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def test_report_schema_guard_and_html(tmp_path: Path):
    model = {"name": "m", "version": 1, "task": "classification"}
    rep = reports.build(model, fake_rows(), LOCAL, load_profiles(), COST, budget=1.0)
    results = rep["results"]
    for r in results:
        assert {"target", "precision", "device", "measured", "latency_ms", "throughput", "memory_mb", "size_mb",
                "accuracy"} <= set(r) and {"p50", "p90", "p99"} <= set(r["latency_ms"])
    measured = [r for r in results if r["measured"]]
    assert rep["measured_rows"] == len(measured) == 6
    assert all(not r.get("pareto") for r in results if not r["measured"])  # estimates never ranked
    ov8 = next(r for r in results if r["target"] == "openvino" and r["precision"] == "int8")
    assert ov8["accuracy_delta_points"] == pytest.approx(-1.0) and ov8["per_class_delta"]["b"] == pytest.approx(-2.0)
    assert ov8["prediction_flips"] == 1 and ov8["pareto"] and ov8["peak_share"] == pytest.approx(0.5)  # 0.1 GOP in 0.5 ms of a 400 GOPS peak
    codes = {(w["code"], results[w["row"]]["target"]) for w in rep["warnings"]}
    assert codes == {("INT8_SLOWER_THAN_FP32", "onnxruntime"), ("ACCURACY_OVER_BUDGET", "onnxruntime")}
    phone = next(r for r in results if r["device"] == "phone-1")
    assert phone["measured"] and phone["device_name"] == "Pixel 8 (Chrome)"

    files = reports.write(rep, tmp_path / "rep")
    assert json.loads(Path(files["json"]).read_text())["results"] == json.loads(json.dumps(results))
    assert set(files["devices"]) >= {"local-test", "phone-1", "raspberry_pi_4"}
    page = Page()
    page.feed(Path(files["html"]).read_text())
    assert {a["data-plot"] for a in page.find("svg")} == {"latency-accuracy", "size", "per-class-delta"}
    assert len(page.find("tr", data_measured="true")) == 6
    assert len(page.find("tr", data_measured="false")) == len(results) - 6
    warn_rows = [a for t, a in page.tags if t == "tr" and "warn" in a.get("class", "")]
    assert [int(a["data-row"]) for a in warn_rows] == sorted({w["row"] for w in rep["warnings"]})
    hollow = page.find("circle", data_measured="false")
    assert len(hollow) == len(results) - 6 and page.find("polyline", **{"class": "pareto"})
    assert len(page.find("li", **{"class": "warn"})) == 2


# -- the real thing on a tiny model ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("bench") / "ws"
    copy_home(trained_home, home)
    targets_api.export("shapes-tiny:v1", "openvino", home=home)
    targets_api.export("shapes-tiny:v1", "openvino", precision="int8", keep_if_slower=True, max_drop=10, home=home)
    targets_api.export("shapes-tiny:v1", "onnxruntime", home=home)
    targets_api.export("shapes-tiny:v1", "web", home=home)
    return home


def test_bench_measures_one_artifact_in_a_fresh_process(bench_home: Path):
    out = api.bench("shapes-tiny", "openvino", precision="int8", home=bench_home, timing=FAST)
    assert out["device"]["id"].startswith("local-") and out["latency_ms"]["p50"] > 0
    assert out["latency_ms"]["p50"] <= out["latency_ms"]["p90"] <= out["latency_ms"]["p99"]
    assert out["throughput"] > 0 and out["memory_mb"] > 0 and out["size_mb"] > 0 and 0 <= out["accuracy"] <= 1
    with pytest.raises(NotFoundError, match="edgefactory export shapes-tiny:v1 --target tflite --precision int8"):
        api.bench("shapes-tiny", "tflite", precision="int8", home=bench_home, timing=FAST)
    with pytest.raises(UnsupportedSpecError, match="QR preview"):  # web runs in a browser, not here
        api.bench("shapes-tiny", "web", home=bench_home, timing=FAST)


def test_report_measures_every_runnable_artifact_and_estimates_the_rest(bench_home: Path):
    phone = {"id": "phone-test", "name": "Test phone (Chrome 130)", "kind": "browser", "user_agent": "Mozilla/5.0"}
    api.record_measurement("shapes-tiny:v1", "web", "fp32", phone, {"latency_ms": {"p50": 9.5, "p90": 12.0}},
                           home=bench_home)
    events = []
    out = api.report("shapes-tiny:v1", home=bench_home, timing=FAST, progress=lambda *e: events.append(e))
    rep = json.loads(Path(out["json"]).read_text())
    measured = {(r["target"], r["precision"]) for r in rep["results"] if r["measured"] and r["device"] == rep["local_device"]}
    assert measured == {("pytorch", "fp32"), ("openvino", "fp32"), ("openvino", "int8"), ("onnxruntime", "fp32")}
    assert events[-1] == ("bench", 4, 4)
    phone_row = next(r for r in rep["results"] if r["device"] == "phone-test")
    assert phone_row["measured"] and phone_row["latency_ms"]["p50"] == 9.5
    estimated = [r for r in rep["results"] if not r["measured"]]
    assert {r["device"] for r in estimated} >= {"raspberry_pi_4", "raspberry_pi_5", "jetson_orin_nano", "snapdragon_8_gen3",
                                                "apple_a17_pro", "intel_nuc_13"}
    assert rep["measured_rows"] == 5 and Path(out["html"]).is_file()
    ref = next(r for r in rep["results"] if r["target"] == "pytorch")
    assert ref["accuracy_delta_points"] == 0 and rep["reference"]["accuracy"] == ref["accuracy"]
    # each measuring process wrote its runtimes' own output to the workspace's logs, not to the terminal
    logs = {p.name for p in (bench_home / "logs").glob("bench-*.log")}
    assert {f"bench-shapes-tiny-v1-{t}-{p}.log" for t, p in measured} <= logs


def test_cli_bench_and_report(bench_home: Path):
    code, out, _ = run_cli("bench", "shapes-tiny:v1", "--target", "pytorch", "--precision", "fp32", home=bench_home)
    assert code == 0 and {"device", "latency_ms", "throughput", "memory_mb", "size_mb", "accuracy"} <= set(out)
    assert {"p50", "p90", "p99", "mean"} <= set(out["latency_ms"])
    code, out, _ = run_cli("report", "shapes-tiny:v1", "--no-measure", home=bench_home)
    assert code == 0 and Path(out["json"]).is_file() and Path(out["html"]).is_file()
    code, out, err = run_cli("bench", "shapes-tiny:v1", "--target", "openvin", home=bench_home, check=False)
    assert code == 1 and out["error"]["code"] == "NOT_FOUND" and "openvino" in out["error"]["message"]


def test_the_suite_has_a_detection_row_with_our_int8_against_eager():
    from benchmarks import suite

    out = suite.run(models=[], detectors=["tiny_det"], detection_size=64, timing=FAST, out=None, log=lambda line: None)
    (row,) = out["rows"]
    assert row["task"] == "detection" and row["model"] == "tiny_det" and row["img_size"] == 64
    assert set(row["latency_ms"]) == {"pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "ours_openvino_int8"}
    assert row["speedup"]["vs_pytorch_fp32"] == pytest.approx(
        row["latency_ms"]["pytorch_fp32"]["p50"] / row["latency_ms"]["ours_openvino_int8"]["p50"])
