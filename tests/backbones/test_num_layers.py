"""model.num_layers: the backbone cut to its first N pretrained blocks."""

import pytest
import torch

from hyperscale.backbones.load import load_backbone
from hyperscale.config import load_config
from hyperscale.errors import ConfigError

TINY = ["model.name_or_path=tiny-random-llama", "model.tiny.num_layers=3", "model.compute_dtype=float32"]


def test_first_blocks_kept_with_their_weights():
    full = load_backbone(load_config("configs/synthetic.yaml", TINY).model)
    cut = load_backbone(load_config("configs/synthetic.yaml", [*TINY, "model.num_layers=2"]).model)
    assert len(cut.body.layers) == 2 and cut.body.config.num_hidden_layers == 2
    for a, b in zip(full.body.layers[:2].parameters(), cut.body.layers.parameters()):
        assert torch.equal(a, b)
    # the cut body is the full body stopped after block 2 (then the final norm)
    ids = torch.randint(0, 100, (2, 7))
    hidden = full.body(input_ids=ids, output_hidden_states=True).hidden_states[2]
    assert torch.allclose(cut.body.norm(hidden), cut.body(input_ids=ids).last_hidden_state, atol=1e-5)
    with pytest.raises(ConfigError, match="model.num_layers"):
        load_backbone(load_config("configs/synthetic.yaml", [*TINY, "model.num_layers=4"]).model)
    with pytest.raises(ConfigError, match="model.num_layers"):
        load_config("configs/synthetic.yaml", [*TINY, "model.num_layers=0"])
