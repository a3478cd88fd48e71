"""Modeling: the ELECTRA model and what describes it. `config` and `settings` hold the typed run
configs, `presets` the named sizes, `model` the generator and discriminator, `objectives` the pure
masking, sampling and loss functions, `hf` and `remote_code/` the Hugging Face form, `warmstart`
starting from a published checkpoint, `modelcard` the card written next to a model. Imports data
and the shared root modules.
"""
