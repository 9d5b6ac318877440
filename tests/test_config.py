"""Config: unknown keys, wrong types and impossible combinations fail before any model loads."""

import pytest

from hyperscale.config import RunConfig, build_config, load_config
from hyperscale.errors import ConfigError

SYNTH = {"data": {"source": "synthetic"}, "model": {"name_or_path": "tiny-random-llama"}}


def test_shipped_configs_load():
    for path in ("configs/demo.yaml", "configs/synthetic.yaml"):
        cfg = load_config(path)
        assert isinstance(cfg, RunConfig)
    assert load_config("configs/demo.yaml").model.quantization == "4bit"


def test_required_key_names_exist():
    cfg = build_config(SYNTH)
    for key in ("train_files", "eval_files", "text_column", "annotator_column", "label_column"):
        assert hasattr(cfg.data, key)
    assert (cfg.model.name_or_path, cfg.model.quantization) == ("tiny-random-llama", "none")
    assert cfg.adapter.kind == "hyper_lora" and cfg.adapter.rank >= 1 and cfg.adapter.target_modules
    assert cfg.train.max_steps >= 1 and isinstance(cfg.train.seed, int)


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as e:
        build_config(SYNTH, ["train.max_step=5"])
    assert "train.max_step" in str(e.value) and "train.max_steps" in str(e.value)
    with pytest.raises(ConfigError, match="'bogus'"):
        build_config({**SYNTH, "bogus": {}})


def test_wrong_type_and_choice():
    with pytest.raises(ConfigError, match="train.max_steps.*integer"):
        build_config(SYNTH, ["train.max_steps=lots"])
    with pytest.raises(ConfigError, match="model.quantization.*one of"):
        build_config(SYNTH, ["model.quantization=3bit"])
    with pytest.raises(ConfigError, match="adapter.rank"):
        build_config(SYNTH, ["adapter.rank=0"])
    with pytest.raises(ConfigError, match="train.annotator_lr_scale"):
        build_config(SYNTH, ["train.annotator_lr_scale=0"])


def test_impossible_combinations():
    with pytest.raises(ConfigError, match="adapter.conditions.*task"):
        build_config(SYNTH, ["adapter.conditions=[annotator,task]"])
    # with a task column it is fine
    build_config(SYNTH, ["adapter.conditions=[annotator,task]", "data.synthetic.n_tasks=2"])
    with pytest.raises(ConfigError, match="only hyper_lora takes conditions"):
        build_config(SYNTH, ["adapter.kind=shared_lora", "adapter.conditions=[instance]"])
    with pytest.raises(ConfigError, match="data.train_files"):
        build_config({"data": {"source": "files"}})


def test_overrides_parse_yaml_values_and_round_trip(tmp_path):
    cfg = build_config(SYNTH, ["train.lr=0.01", "adapter.target_modules=[q_proj,k_proj]", "train.progress_bar=false"])
    assert cfg.train.lr == 0.01 and cfg.adapter.target_modules == ["q_proj", "k_proj"]
    assert cfg.train.progress_bar is False
    path = tmp_path / "resolved.yaml"
    cfg.save(str(path))
    assert load_config(str(path)) == cfg


def test_cli_reports_config_error_without_loading(capsys):
    from hyperscale.cli import main

    rc = main(["train", "configs/synthetic.yaml", "--set", "adapter.rnak=3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "adapter.rnak" in err and "adapter.rank" in err
