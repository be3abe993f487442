"""Node counts (--nodes), inter-node fabrics, and TP groups kept inside a node."""

import json

import pytest

from hardware import HardwareError, list_fabrics, load_fabric, load_hardware, with_nodes
from perfmodel.cli import main
from perfmodel.layout import enumerate_layouts
from perfmodel.analysis.predict import candidate_layouts
from perfmodel.scenario import Scenario


def test_fabrics_are_sourced_datasheet_links():
    assert {"ib-ndr-400", "ib-hdr-200", "roce-400g"} <= set(list_fabrics())
    assert load_fabric("ib-ndr-400").bandwidth_bytes_per_s == 400e9 / 8
    assert load_fabric("ib-hdr-200").bandwidth_bytes_per_s == 200e9 / 8
    assert load_fabric("roce-400g").bandwidth_bytes_per_s == 400e9 / 8
    for name in list_fabrics():
        assert "http" in load_fabric(name).source


def test_cluster_yaml_may_name_a_fabric(tmp_path):
    text = (load_hardware("dgx-h100") and open("hardware/clusters/dgx-h100.yaml").read())
    start = text.index("inter_node_link:")
    end = text.index("nics_per_node:")
    path = tmp_path / "c.yaml"
    path.write_text(text[:start] + "inter_node_link: roce-400g\n" + text[end:])
    assert load_hardware(str(path)).inter_node_link.name == "roce-400g"


def test_with_nodes_needs_a_network_and_respects_job_limits():
    assert with_nodes(load_hardware("dgx-h100"), 4).num_gpus == 32
    assert with_nodes(load_hardware("h200-sxm"), 2).num_gpus == 16  # one node of a GPU keeps its cluster's fabric
    with pytest.raises(HardwareError, match="at most 2 nodes"):
        with_nodes(load_hardware("taiwania2"), 3)
    with pytest.raises(HardwareError, match="no inter-node network"):
        with_nodes(load_hardware("cpu-host"), 2)


def test_tp_groups_stay_inside_a_node_unless_asked():
    kw = dict(num_attention_heads=128, num_kv_heads=8, num_layers=126, gpus_per_node=8)
    assert max(lay.tp for lay in enumerate_layouts(16, **kw, tp_across_nodes=False)) == 8
    assert max(lay.tp for lay in enumerate_layouts(16, **kw)) == 16
    s = Scenario.build(model="llama-3.1-405b", hardware="dgx-h100", quantization="fp8", nodes=2)
    assert not s.tp_across_nodes and all(lay.tp <= 8 for lay in candidate_layouts(s, 16))
    s = Scenario.build(model="llama-3.1-405b", hardware="dgx-h100", quantization="fp8", nodes=2, tp_across_nodes=True)
    assert any(lay.tp == 16 for lay in candidate_layouts(s, 16))


def test_predict_two_dgx_h100_names_the_link_and_spanning_layouts(capsys):
    assert main(["predict", "--hardware", "dgx-h100", "--nodes", "2", "--gpus", "16", "--model", "llama-3.1-405b",
                 "-q", "fp8", "--simulate-top", "0", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nodes"] == 2 and out["inter_node_link"]["name"] == "ib-ndr-400"
    spanning = [lay for lay in out["layouts"] if lay["fits"] and lay["nodes_per_replica"] == 2]
    assert spanning and all(lay["crosses_nodes"] == "PP" for lay in spanning)


def test_nodes_beyond_one_needed_for_16_gpus_of_one_node():
    assert main(["predict", "--hardware", "dgx-h100", "--gpus", "16", "--model", "llama-3.1-8b"]) == 2
