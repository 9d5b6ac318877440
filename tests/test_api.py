"""The public API and the CLI built on it."""

import subprocess
import sys
from pathlib import Path

import pytest

import hyperscale
from hyperscale.errors import ConfigError

from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light_and_names_resolve():
    code = ("import sys, hyperscale; assert 'torch' not in sys.modules, 'torch at import';"
            "cfg = hyperscale.load_config('configs/synthetic.yaml'); assert 'torch' not in sys.modules;"
            "print(hyperscale.__version__, cfg.adapter.kind, ','.join(hyperscale.kind_names()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    version, kind, kinds = out.stdout.split()
    assert version == hyperscale.__version__ and kind == "hyper_lora"
    assert kinds.split(",") == ["hyper_lora", "shared_lora", "annotator_embedding", "multi_head", "per_annotator_lora"]
    for name in hyperscale.__all__:
        assert getattr(hyperscale, name) is not None, name
    with pytest.raises(AttributeError):
        hyperscale.no_such_thing  # noqa: B018


def test_in_process_training_refuses_several_workers(tmp_path):
    cfg = tiny_config("distributed.num_workers=2")
    with pytest.raises(ConfigError) as e:
        hyperscale.train(cfg, tmp_path, use_ray=False)
    assert e.value.key == "distributed.num_workers" and "drop --no-ray" in str(e.value)
    assert not any(tmp_path.iterdir())  # refused before anything was written
    from hyperscale.cli import main

    assert main(["train", "configs/synthetic.yaml", "--no-ray", "--set", "distributed.num_workers=2",
                 "--run-dir", str(tmp_path / "cli")]) == 2


def test_compare_takes_workers_through_ray(tmp_path, monkeypatch):
    """compare honours distributed.num_workers: more than one worker goes through Ray."""
    import hyperscale.api
    from hyperscale.experiments.compare import default_trainer

    calls = []
    monkeypatch.setattr(hyperscale.api, "train", lambda cfg, run_dir, use_ray: calls.append(use_ray) or {})
    default_trainer(tiny_config("distributed.num_workers=2"), tmp_path)
    default_trainer(tiny_config(), tmp_path)
    assert calls == [True, False]


def test_cli_config_and_version(capsys):
    from hyperscale.cli import main

    assert main(["config", "train.annotator_lr_scale"]) == 0
    assert "train.annotator_lr_scale  (float, default 1.0)" in capsys.readouterr().out
    assert main(["config", "trian"]) == 2
    assert "unknown key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--version"])
    assert hyperscale.__version__ in capsys.readouterr().out
