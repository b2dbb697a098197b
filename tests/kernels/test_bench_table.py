"""kernels.bench's table plumbing (CPU): `--impls` filtering and `--merge` of re-measured rows."""
from __future__ import annotations

import math

from kernels import bench


def _row(impl, shape="B=1", note="decay=scalar", ms=1.0):
    return dict(op="op", shape=shape, impl=impl, dtype="bfloat16", fwd_ms=ms, fwdbwd_ms=2 * ms, gbps=math.nan,
                frac_copy_bw=math.nan, note=note)


def test_merge_replaces_in_place_and_inserts_new_rows_by_shape():
    old = [_row("triton"), _row("torch"), _row("triton", shape="B=2")]
    new = [_row("triton", ms=0.5, note="decay=scalar; faster"), _row("fla")]
    rows = bench.merge(old, new)
    assert [(r["impl"], r["shape"]) for r in rows] == [("triton", "B=1"), ("torch", "B=1"), ("fla", "B=1"),
                                                      ("triton", "B=2")]
    assert rows[0]["fwd_ms"] == 0.5 and rows[1]["fwd_ms"] == 1.0
    # the decay in the note is part of the key: another decay is another row
    assert len(bench.merge(old, [_row("triton", note="decay=channel")])) == 4


def test_written_csv_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "header", lambda: "GPU: test")
    rows = [_row("triton"), _row("torch", ms=math.nan)]
    bench.write(rows, tmp_path, note="merged")
    head, back = bench.read_csv(tmp_path / "kernels.csv")
    assert head == "GPU: test" and len(back) == 2
    assert back[0]["fwd_ms"] == 1.0 and math.isnan(back[1]["fwd_ms"])
    assert "merged" in (tmp_path / "kernels.md").read_text()


def test_wanted_filters_by_impl(monkeypatch):
    monkeypatch.setattr(bench, "IMPLS", {"triton"})
    assert bench.wanted("triton") and not bench.wanted("torch-chunk")
    monkeypatch.setattr(bench, "IMPLS", None)
    assert bench.wanted("anything")
