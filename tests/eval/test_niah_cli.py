"""`longvlm eval niah` beyond the training length: the rope method is applied and named in the outputs."""

from __future__ import annotations

import json

from longvlm.cli import main


def test_eval_niah_with_a_position_extension(tmp_path, capsys, monkeypatch):
    titles = []
    monkeypatch.setattr("longvlm.eval.niah.plot_heatmap", lambda records, path, **kw: titles.append(kw["title"]))
    out = tmp_path / "niah"
    assert main(["eval", "niah", "--suite", "document", "--model", "tiny", "--lengths", "2", "--depths", "0.5",
                 "--samples", "1", "--scoring", "generate", "--out", str(out), "--rope-method", "yarn",
                 "--rope-scale", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 1 and (out / "document_samples.jsonl").is_file()
    assert titles and "model tiny" in titles[0] and "yarn x2" in titles[0]
    assert main(["eval", "niah", "--suite", "document", "--model", "tiny", "--out", str(out),
                 "--rope-method", "bogus"]) == 2
