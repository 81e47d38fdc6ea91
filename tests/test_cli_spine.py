"""The CLI is a thin layer: every subcommand has --help, human output and --json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from docedge.tools.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_subcommand_has_help_and_a_json_flag():
    for name in _subcommands():
        parser = build_parser()
        action = next(a for a in parser._actions if a.dest == "command")
        sub = action.choices[name]
        text = sub.format_help()
        nested = [a for a in sub._actions if getattr(a, "choices", None) and a.dest != "help"]
        groups = [a for a in nested if isinstance(a.choices, dict)]
        if groups:  # a command group: check its members
            for member in groups[0].choices.values():
                assert "--json" in member.format_help(), f"{name} {member.prog} lacks --json"
        else:
            assert "--json" in text, f"{name} lacks --json"


def test_console_script_runs(seeded_bundle):
    out = subprocess.run(
        [sys.executable, "-m", "docedge.tools.cli", "info", str(seeded_bundle), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["manifest"]["schema"] == "docedge.bundle"


def test_info_human_output(seeded_bundle, capsys):
    assert main(["info", str(seeded_bundle)]) == 0
    text = capsys.readouterr().out
    assert "model_fp32.onnx" in text and "verified    yes" in text


def test_embed_writes_npy_and_reports_failures(seeded_bundle, check_image_files, tmp_path, capsys):
    import numpy as np

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = tmp_path / "e.npy"
    code = main(
        [
            "embed",
            str(seeded_bundle),
            *map(str, check_image_files[:3]),
            str(bad),
            "--out",
            str(out),
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["embedded"] == 3 and str(bad) in report["failed"]
    arr = np.load(out)
    assert arr.shape == (4, 256) and np.isnan(arr[3]).all()


def test_bundle_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "manifest.json: missing" in capsys.readouterr().err


def test_doctor_reports_the_environment(capsys):
    assert main(["doctor", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert (
        facts["onnxruntime"]["installed"]
        and "CPUExecutionProvider" in facts["onnxruntime"]["providers"]
    )
    assert "tensorrt" in facts and "pycuda" in facts


@pytest.mark.slow
def test_bench_runs_each_engine_in_its_own_process_in_interleaved_rounds(seeded_bundle, capsys):
    """c7066f8's "vs PyTorch" ratio ranged 2.8x-223x: both engines shared one process."""
    argv = ["bench", str(seeded_bundle), "--batch-sizes", "1,4", "--rounds", "2",
            "--seconds", "0.05", "--gallery-sizes", "1000", "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    rounds = [(x["round"], x["engine"]) for x in r["rounds"] if "batch" in x and x["batch"] == 1]
    assert [e for rd, e in rounds if rd == 0] == ["onnxruntime-fp32", "pytorch-eager"]
    assert [e for rd, e in rounds if rd == 1] == ["pytorch-eager", "onnxruntime-fp32"]  # rotated
    engines = {(c["engine"], c["batch"]) for c in r["summary"]}
    assert {("pytorch-eager", 1), ("pytorch-eager", 4), ("onnxruntime-fp32", 1),
            ("onnxruntime-fp32", 4)} <= engines  # fmt: skip
    for c in r["summary"]:
        assert c["rounds"] == 2 and c["cpu_min"] <= c["cpu_ms_per_image"] <= c["cpu_max"]
        assert c["cpu_speedup_vs_pytorch"] > 0 and c["wall_ms_per_image"] > 0
    assert r["gemm_gflops"] > 0 and r["load_before"] is not None



@pytest.mark.slow
def test_bench_compare_puts_every_backend_in_one_table_and_names_what_could_not_run(
    seeded_bundle, capsys
):
    argv = ["bench", str(seeded_bundle), "--compare", "--batch-sizes", "2", "--rounds", "1",
            "--seconds", "0.05", "--gallery-sizes", "", "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    ran = {c["engine"] for c in r["summary"]}
    assert {"onnxruntime-fp32", "pytorch-eager"} <= ran
    assert "tensorrt-fp32" in r["not_run"] and "tensorrt-fp32" not in ran  # no GPU here
    assert ran.isdisjoint(r["not_run"])
    ort = next(c for c in r["summary"] if c["engine"] == "onnxruntime-fp32")
    assert ort["cpu_speedup_vs_onnxruntime"] == 1.0
    for c in r["summary"]:
        assert c["cpu_speedup_vs_onnxruntime"] > 0


def test_bench_compare_refuses_options_it_would_ignore(seeded_bundle, capsys):
    assert main(["bench", str(seeded_bundle), "--compare", "--precision", "int8"]) == 2
    assert "--compare" in capsys.readouterr().err
