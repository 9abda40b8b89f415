"""``ovis.records``: metrics renamed since a run was recorded are read under their current names."""
import json

from ovis.records import current_metric_name, iter_metric_records, read_metrics


def test_old_metric_names_are_read_under_their_current_names(tmp_path):
    record = {"step": 3, "epoch": 1, "split": "online", "time": 0.0,
              "values": {"reinforce/mse": 2.0, "gmm/posterior_mse": 0.5, "loss/L_k": -1.0}}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    assert next(iter_metric_records(str(tmp_path)))["values"] == {
        "control_variate/mse": 2.0, "gmm/posterior_distance": 0.5, "loss/L_k": -1.0}
    assert current_metric_name("test:gaussian_toy/mse_phi") == "test:gaussian_toy/distance_phi"
    assert current_metric_name("test:loss/L_k") == "test:loss/L_k"
    frame = read_metrics(str(tmp_path), keys=["online:reinforce/mse"])  # asked for by its old name
    assert frame.metric.tolist() == ["online:control_variate/mse"] and frame.value.tolist() == [2.0]
