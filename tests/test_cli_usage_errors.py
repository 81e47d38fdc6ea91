"""Usage errors exit 2 with ``error: ...`` (``raise SystemExit("text")`` would exit 1, the code
of a real shortfall), the missing-extra table names the extra that brings each module, and
``--help`` lists every format."""

from __future__ import annotations

import json

import pytest

from docedge.tools.cli import EXTRA_FOR_MODULE, main, missing_extra_message


@pytest.mark.parametrize("argv, message", [
    (["convert", "B", "--formats", "openvino", "--openvino-precisions", "fp8"],
     "--openvino-precisions 'fp8': choose from bf16, int8"),
    (["convert", "B", "--formats", "openvino", "--openvino-precisions", ","],
     "--openvino-precisions ',': choose from bf16, int8"),
    (["convert", "B", "--formats", "nosuchformat"], "unknown format(s) ['nosuchformat']"),
    (["gallery", "add", "B", "G.dgal", "a.jpg", "b.jpg", "--label", "x"],
     "give one --label per image"),
    (["gallery", "remove", "G.dgal"], "give --label and/or --id"),
])  # fmt: skip
def test_usage_errors_exit_2_naming_the_problem(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a in ("B", "G.dgal") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err
    assert main([*argv, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and message in out["message"]


def test_nncf_is_brought_by_the_openvino_export_extra():
    assert EXTRA_FOR_MODULE["nncf"] == "openvino-export"
    assert EXTRA_FOR_MODULE["openvino"] == "openvino"
    e = ModuleNotFoundError("No module named 'nncf'", name="nncf")
    assert "pip install 'docedge[openvino-export]'" in missing_extra_message(e)


def test_export_help_lists_every_format(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ort,tflite,coreml,ncnn,openvino" in text
