"""Config: unknown keys, wrong types and impossible combinations fail before any model loads."""

import pytest

from hyperscale.config import build_config, load_config
from hyperscale.errors import ConfigError

SYNTH = {"data": {"source": "synthetic"}, "model": {"name_or_path": "tiny-random-llama"}}


def test_shipped_configs_load():
    demo = load_config("configs/demo.yaml")
    assert (demo.model.name_or_path, demo.model.quantization, demo.data.source) == ("smollm2-135m", "4bit",
                                                                                 "pipa_toxicity")
    synthetic = load_config("configs/synthetic.yaml")
    assert (synthetic.adapter.kind, synthetic.data.synthetic.n_annotators, synthetic.train.max_steps) == (
        "hyper_lora", 40, 600)
    for path in ("configs/compare_pipa.yaml", "configs/compare_convabuse.yaml"):
        assert load_config(path).model.name_or_path == "smollm2-135m"


def test_defaults_of_the_data_contract():
    cfg = build_config(SYNTH)
    d = cfg.data
    assert (d.train_files, d.eval_files, d.text_column, d.annotator_column, d.label_column) == (
        [], [], "text", "annotator", "label")
    assert (cfg.model.name_or_path, cfg.model.quantization) == ("tiny-random-llama", "none")
    assert (cfg.adapter.kind, cfg.adapter.rank, cfg.adapter.target_modules) == ("hyper_lora", 4, ["q_proj", "v_proj"])
    assert (cfg.train.max_steps, cfg.train.seed) == (100, 0)


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


def test_kind_checks_run_when_the_config_is_read():
    """Misuses that used to fail only after the data or the backbone loaded are config errors now."""
    with pytest.raises(ConfigError, match="adapter.aggregate_labels"):
        build_config(SYNTH, ["adapter.kind=hyper_lora", "adapter.aggregate_labels=true"])
    for kind in ("annotator_embedding", "multi_head"):
        with pytest.raises(ConfigError, match="model.task=classification"):
            build_config(SYNTH, [f"adapter.kind={kind}", "model.task=causal_lm"])
    with pytest.raises(ConfigError) as e:
        build_config(SYNTH, ["adapter.kind=hyper_lorra"])
    assert "did you mean 'hyper_lora'" in str(e.value) and "per_annotator_lora" in str(e.value)


def test_model_name_checked_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError) as e:
        build_config(SYNTH, ["model.name_or_path=smollm2-135"])
    assert "did you mean 'smollm2-135m'" in str(e.value) and "tiny-random-llama" in str(e.value)
    with pytest.raises(ConfigError, match="no config.json"):
        build_config(SYNTH, [f"model.name_or_path={tmp_path}"])
    with pytest.raises(ConfigError, match="tiny-random-bert"):
        build_config(SYNTH, ["model.name_or_path=tiny-random-t5"])


def test_missing_required_field_is_named_and_bugs_are_not_relabelled():
    import dataclasses

    from hyperscale.config.parse import from_dict

    @dataclasses.dataclass(kw_only=True)
    class Needs:
        size: int

        def __post_init__(self):
            raise TypeError("a bug inside __post_init__")

    with pytest.raises(ConfigError, match="'x.size': is required and missing"):
        from_dict(Needs, {}, prefix="x")
    with pytest.raises(TypeError, match="a bug inside"):  # not reported as a missing field
        from_dict(Needs, {"size": 1}, prefix="x")


def test_runtime_section_of_a_run_config_is_ignored_on_load(tmp_path):
    cfg = build_config(SYNTH, ["train.lr=0.01"])
    path = tmp_path / "config.yaml"
    cfg.save(path, runtime={"kernel_backend": "torch", "device": "cpu"})
    assert "runtime:" in path.read_text() and load_config(str(path)) == cfg


def test_config_docs_cover_every_key():
    from hyperscale.config.docs import describe, render

    rows = describe()
    undocumented = [r["key"] for r in rows if not r["doc"]]
    assert undocumented == []
    assert {"train.annotator_lr_scale", "data.synthetic.n_groups", "adapter.hypernet.hidden_dim"} <= {
        r["key"] for r in rows}
    text = render("train.lr")
    assert text.startswith("train.lr  (float, default 0.001)") and "Learning rate" in text
    assert render("adapter.hypernet").count("\n") > 6
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        render("train.lrr")


def test_numbers_are_read_the_way_people_write_them():
    """D8: `lr: 3e-4` in YAML (a string in YAML 1.1) and --set train.lr=1e-4 were refused."""
    import yaml

    assert yaml.safe_load("lr: 3e-4") == {"lr": "3e-4"}  # why this needs handling at all
    cfg = build_config({**SYNTH, "train": {"lr": "3e-4"}}, ["train.annotator_lr_scale=1E1", "train.max_steps=1_000"])
    assert (cfg.train.lr, cfg.train.annotator_lr_scale, cfg.train.max_steps) == (3e-4, 10.0, 1000)
    assert build_config(SYNTH, ["train.lr=1e-4"]).train.lr == 1e-4
    for bad, why in (("train.lr=fast", "expected a number"), ("train.lr=.nan", "not a finite number"),
                     ("train.max_steps=1.5", "expected an integer")):
        with pytest.raises(ConfigError, match=why):
            build_config(SYNTH, [bad])
