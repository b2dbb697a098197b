"""kernels.bench's table plumbing (CPU): `--impls` filtering and `--merge` of re-measured rows."""
from __future__ import annotations

import math

import pytest

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
    bench.write(rows, tmp_path, notes=["first merge", "second merge"])
    head, notes, back = bench.read_csv(tmp_path / "kernels.csv")
    assert head == "GPU: test" and notes == ["first merge", "second merge"] and len(back) == 2
    assert back[0]["fwd_ms"] == 1.0 and math.isnan(back[1]["fwd_ms"])
    assert "second merge" in (tmp_path / "kernels.md").read_text()


def test_collect_passes_the_impls_filter_to_each_op(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("fake_op_bench")
    fake.run = lambda quick, impls=None, long=False: [_row(i) for i in ("triton", "torch") if impls is None or i in impls]
    monkeypatch.setitem(sys.modules, "fake_op_bench", fake)
    assert [r["impl"] for r in bench.collect(False, ["fake_op_bench"], impls={"triton"})] == ["triton"]
    assert len(bench.collect(False, ["fake_op_bench"])) == 2


def test_a_table_from_before_the_graph_columns_reads_back_with_nan(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "header", lambda: "GPU: test")
    old_columns = ["op", "shape", "impl", "dtype", "fwd_ms", "fwdbwd_ms", "gbps", "frac_copy_bw", "note"]
    (tmp_path / "kernels.csv").write_text("# GPU: old\n" + ",".join(old_columns) + "\n"
                                          "op,B=1,triton,bfloat16,1.0,2.0,3.0,0.5,decay=none\n")
    _, _, rows = bench.read_csv(tmp_path / "kernels.csv")
    assert rows[0]["fwdbwd_ms"] == 2.0 and math.isnan(rows[0]["fwdbwd_graph_ms"])
    bench.write(rows, tmp_path)          # and writes back with every column
    assert "fwdbwd_graph_ms" in (tmp_path / "kernels.csv").read_text()


@pytest.mark.gpu
def test_graph_time_excludes_the_host_and_refuses_a_host_sync():
    import torch

    x = torch.randn(2**24, device="cuda")
    one = bench.time_graph(lambda: x.mul_(1.0))
    ten = bench.time_graph(lambda: [x.mul_(1.0) for _ in range(10)])
    assert 0 < one < ten and ten / one > 5         # device time grows with the work captured
    assert math.isnan(bench.time_graph(lambda: x.sum().item()))


@pytest.mark.parametrize("argv,message", [
    (["--decays", "scalar,chanel"], "--decays: unknown ['chanel']"),
    (["--shapes", "k=128 "], "--shapes 'k=128 ' matches none of the linear-attention shapes"),
    (["--ops", "linear_attn"], "--ops: unknown ['kernels.linear_attn.bench']"),
])
def test_flag_typos_are_reported_before_the_gpu_is_needed(monkeypatch, argv, message):
    from kernels.linear_attention import bench as la_bench

    monkeypatch.setattr(la_bench, "DECAYS", la_bench.DECAYS)          # main() narrows them in place
    monkeypatch.setattr(la_bench, "SHAPE_FILTER", la_bench.SHAPE_FILTER)
    monkeypatch.setattr("sys.argv", ["kernels.bench", *argv])
    with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")):
        bench.main()


def test_the_shape_filter_keeps_whole_values():
    from kernels.linear_attention import bench as la_bench

    la_bench.SHAPE_FILTER = ("K=128 ",)
    try:
        kept = [n for n in la_bench.shape_names(long=True) if la_bench.shape_selected(n)]
    finally:
        la_bench.SHAPE_FILTER = ()
    assert kept == ["B=8 T=4096 H=8 K=128 V=128", "B=8 T=16384 H=8 K=128 V=128"]
