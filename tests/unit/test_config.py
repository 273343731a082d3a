"""The config loader: typing, typo suggestions, group selections, load order, validation before work."""

import dataclasses
import inspect

import pytest

from hlrp_core.config import Config, ConfigError, diff, load, load_run, schema_keys, to_yaml
from hlrp_core.config import schema as schema_mod


def test_defaults_and_override_types():
    cfg = load("", ["data.loader.batch_size=48", "training.lr=1e-3", "data.loader.pin_memory=true"])
    assert cfg.data.loader.batch_size == 48
    assert cfg.training.lr == pytest.approx(1e-3)
    assert cfg.data.loader.pin_memory is True
    assert diff(cfg)["data.loader.batch_size"] == (32, 48)


def test_typo_names_key_and_suggests_closest():
    with pytest.raises(ConfigError) as err:
        load("", ["data.loader.batch_sise=48"])
    msg = str(err.value)
    assert "batch_sise" in msg and "data.loader.batch_size" in msg


def test_wrong_type_names_knob_and_value():
    with pytest.raises(ConfigError) as err:
        load("", ["training.max_steps=many"])
    assert "training.max_steps" in str(err.value) and "many" in str(err.value)


def test_invalid_value_lists_choices():
    with pytest.raises(ConfigError) as err:
        load("", ["training.accelerator=tpu"])
    assert "training.accelerator" in str(err.value) and "'gpu'" in str(err.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load("", ["training.accelerator=tpu", "training.max_steps=0"])
    assert len(err.value.problems) >= 2


def test_group_selection_and_unknown_group():
    cfg = load("", ["cluster=local"])
    assert cfg.cluster.backend == "local"
    with pytest.raises(ConfigError) as err:
        load("", ["cluster=no_such_queue"])
    assert "available" in str(err.value) and "local" in str(err.value)


def test_experiment_preset_recorded_and_seed_spellings():
    cfg = load("workbench_check", ["+submit.time=00:15:00", "logging.use_wandb=true", "experiment.name=x"])
    assert cfg.experiment.preset == "workbench_check"
    assert cfg.experiment.name == "x"
    assert cfg.submit.time == "00:15:00"
    with pytest.raises(ConfigError):
        load("", ["~training.lr"])


def test_smoke_applies_before_overrides():
    smoke = load("", [], smoke=True)
    assert smoke.smoke and smoke.training.max_steps < Config().training.max_steps
    assert load("", ["training.max_steps=7"], smoke=True).training.max_steps == 7
    assert load("", ["smoke=true"]).training.max_steps == smoke.training.max_steps


def test_yaml_round_trip(tmp_path):
    cfg = load("", ["data.loader.batch_size=48"], smoke=True)
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    assert load_run(tmp_path) == cfg


def _dataclasses(cls, seen=None):
    seen = seen if seen is not None else set()
    if cls in seen:
        return seen
    seen.add(cls)
    for f in dataclasses.fields(cls):
        t = f.type if isinstance(f.type, type) else None
        if t is None and f.default_factory is not dataclasses.MISSING:
            t = type(f.default_factory())
        if t is not None and dataclasses.is_dataclass(t):
            _dataclasses(t, seen)
    return seen


def test_every_config_field_is_documented():
    """House rule: each schema class documents every field in its docstring (lerobot-style Args)."""
    undocumented = []
    for cls in _dataclasses(Config):
        for f in dataclasses.fields(cls):
            owner = next(c for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {}))
            if f"{f.name}:" not in (inspect.getdoc(owner) or ""):
                undocumented.append(f"{cls.__name__}.{f.name}")
    assert not undocumented, f"document these fields in the class docstring: {undocumented}"


def test_schema_keys_cover_nested_sections():
    keys = schema_keys()
    assert "data.loader.batch_size" in keys and "training.validation.check_interval" in keys
