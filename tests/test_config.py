import pytest

from diger_lib.config import (AssignConfig, ConfigError, DataConfig, Decay, Method, RQVAEConfig, TrainConfig,
                              from_flat, reject_unknown, to_dict)


@pytest.mark.parametrize("make, field", [
    (lambda: RQVAEConfig(codebook_size=1), "codebook_size"),
    (lambda: TrainConfig(lr=-1e-3), "lr"),
    (lambda: TrainConfig(beam_size=5, topk=10), "beam_size"),
    (lambda: DataConfig(max_history=0), "max_history"),
    (lambda: AssignConfig(decay="sdud_frqud"), "decay"),
    (lambda: TrainConfig(method="tiger"), "method"),
    (lambda: AssignConfig(frqud_beta=1.0), "frqud_beta"),
])
def test_out_of_range_values_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_enums_parse_and_serialise():
    a = AssignConfig(decay="sdud+frqud")
    assert a.decay is Decay.SDUD_FRQUD and to_dict(a)["decay"] == "sdud+frqud"
    assert TrainConfig(method="diger").method is Method.DIGER


def test_unknown_parameter_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'tokenizer_lr'"):
        reject_unknown({"tokeniser_lr": 1e-4}, ["tokenizer_lr", "lr"])


def test_from_flat_picks_prefixed_fields():
    cfg = from_flat(RQVAEConfig, {"rq_codebook_size": 128, "other": 1}, prefix="rq_")
    assert cfg.codebook_size == 128
