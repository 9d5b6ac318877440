"""Relative local paths reach Ray workers (which run elsewhere) as absolute ones."""

from pathlib import Path

from hyperscale.cluster import with_local_paths_resolved
from tests.helpers import tiny_config


def test_relative_model_folder_and_data_files_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "train.csv").write_text("text,annotator,label\\nx,a,1\\n")
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config("model.name_or_path=m", "data.source=files", "data.train_files=[train.csv]",
                      "data.eval_fraction=0.2")
    out = with_local_paths_resolved(cfg)
    assert out.model.name_or_path == str(tmp_path / "m")
    assert out.data.train_files == [str(tmp_path / "train.csv")]
    # built-in names and absolute paths are left alone
    same = tiny_config()
    assert with_local_paths_resolved(same) is same
    assert Path(out.model.name_or_path).is_absolute()
