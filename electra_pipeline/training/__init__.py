"""Training: pre-training a model. `train` is the loop; `pretrainer` joins generator and
discriminator, `optim`, `checkpoint`, `runlog`, `flops`, `runtime`, `cpu_paths` and `distributed`
are what the loop runs on, `preflight` checks a run before it starts, and `intrinsic`, `heldout`
and `intrinsic_config` score what pre-training learned on held-out text (also between steps).
Imports modeling, data and the shared root modules.
"""
