"""The code a Hugging Face directory of a non-standard architecture carries beside its config.json.

`hf.save_hf` copies these two files into every directory whose model transformers' own ELECTRA
cannot compute (pre-LayerNorm, relative attention), so that
`AutoModel.from_pretrained(dir, trust_remote_code=True)` loads exactly the model trained here.
They import only torch and transformers: the user need not have this project installed. The
library itself never imports them (transformers is not one of its dependencies).
"""
