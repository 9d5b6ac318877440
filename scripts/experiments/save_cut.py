# Usage: python scripts/experiments/save_cut.py OUT_DIR
# Save SmolLM2-135M cut to its first 2 pretrained blocks (model.num_layers=2) as a local HF dir: loading it
# takes seconds instead of de-quantizing the whole GGUF in every trial. Same weights, fp32.
import sys, torch
from hyperscale.config import load_config
from hyperscale.backbones.load import load_backbone
cfg = load_config("configs/tune_pipa.yaml")
bb = load_backbone(cfg.model)
bb.body.hf_quantizer = None
if hasattr(bb.body.config, "quantization_config"): del bb.body.config.quantization_config
bb.body.save_pretrained(sys.argv[1], safe_serialization=True)
bb.tokenizer.save_pretrained(sys.argv[1])
bb2 = load_backbone(load_config("configs/tune_pipa.yaml", [f"model.name_or_path={sys.argv[1]}", "model.num_layers=null"]).model)
ids = torch.randint(0, 1000, (2, 9))
a, b = bb.body(input_ids=ids).last_hidden_state, bb2.body(input_ids=ids).last_hidden_state
print("max abs diff", (a - b).abs().max().item(), len(bb2.body.layers))
