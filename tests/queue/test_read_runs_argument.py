"""``ovis.queue.read_runs`` takes the experiment's folder; given the queue file itself, it says so."""
import pytest

from ovis.queue import read_runs
from ovis.queue.database import RunDatabase
from ovis.queue.spec import parse_spec


def test_read_runs_of_the_folder_and_a_clear_message_for_the_db_json_file(tmp_path):
    exp_dir = tmp_path / "exp"
    points = parse_spec({"args": ["--x 1"], "parameters": {"seed": [1, 2]}}, "t", "/t.json").grid()
    RunDatabase(str(exp_dir)).add_runs(points)
    assert [run["run_id"] for run in read_runs(str(exp_dir))] == [p.run_id for p in points]
    with pytest.raises(ValueError) as error:
        read_runs(str(exp_dir / ".db.json"))
    message = str(error.value)
    assert "pass the experiment's folder" in message and f"read_runs({str(exp_dir)!r})" in message
    assert "ENOTDIR" not in message
