"""Backbones: where the frozen model comes from; quantized and frozen the same way for every source.

    model.name_or_path           source         file
    smollm2-135m                 embedded GGUF  embedded.py (the default; nothing downloaded)
    tiny-random-{llama,bert,gpt2} random init   tiny.py (tests; real SmolLM2 tokenizer)
    a local folder               Hugging Face   load.py (`AutoModel.from_pretrained(folder)`)

Every source yields one `Backbone`: a frozen transformer body, an optional frozen
LM head (causal_lm), a tokenizer. Quantization (quantize.py) happens after
loading, through the base-layer dispatch (adapters/base_layers.py).
`names.check_name_or_path` runs when the config is read, so a typo in the model name
fails in a second, before any data loads.

Importing this package loads nothing heavy (`load.load_backbone` does).
"""
