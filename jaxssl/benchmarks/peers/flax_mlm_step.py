"""Peer MLM train step: Hugging Face FlaxBertForMaskedLM (transformers<5, bert-base config,
random init), run_mlm_flax's masked cross-entropy, optax AdamW 1e-4 wd 0.01, one jit.

    python flax_mlm_step.py --batch 8 --seq-len 128 [--bf16]

Prints ``... ms/step, X tok/s``, the mean of 5 steps after compilation and one warm-up step.
Exits 3 when transformers' Flax models, jax or optax are missing (run
``bash scripts/setup_peers.sh flax``). Imports no jaxssl code.
"""
import argparse
import sys
import time

NOT_INSTALLED_EXIT = 3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--bf16", action="store_true", help="bfloat16 computation (fp32 parameters)")
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    try:
        import jax
        import jax.numpy as jnp
        import numpy as np
        import optax
        from transformers import BertConfig, FlaxBertForMaskedLM
    except ImportError as e:
        print(f"peer not installed: {e}")
        sys.exit(NOT_INSTALLED_EXIT)

    b, t_len = a.batch, a.seq_len
    cfg = BertConfig()
    model = FlaxBertForMaskedLM(cfg, seed=0, dtype=jnp.bfloat16 if a.bf16 else jnp.float32,
                                _do_init=True)
    params = model.params
    tx = optax.adamw(1e-4, weight_decay=0.01)
    opt_state = tx.init(params)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, cfg.vocab_size, (b, t_len)).astype("i4")
    labels = ids.copy()
    masked = rng.random((b, t_len)) < 0.15
    labels[~masked] = -100
    ids[masked] = 103
    batch = dict(input_ids=jnp.asarray(ids), attention_mask=jnp.ones((b, t_len), "i4"),
                 token_type_ids=jnp.zeros((b, t_len), "i4"))
    labels = jnp.asarray(labels)

    @jax.jit
    def train_step(params, opt_state, batch, labels, dropout_rng):
        def loss_fn(p):
            logits = model(**batch, params=p, dropout_rng=dropout_rng, train=True)[0]
            mask = (labels > 0).astype(jnp.float32)
            ll = optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), jnp.maximum(labels, 0))
            return (ll * mask).sum() / mask.sum()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    params, opt_state, loss = train_step(params, opt_state, batch, labels, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    params, opt_state, loss = train_step(params, opt_state, batch, labels, key)
    loss.block_until_ready()
    t = time.perf_counter()
    for i in range(a.steps):
        params, opt_state, loss = train_step(params, opt_state, batch, labels, jax.random.fold_in(key, i))
    loss.block_until_ready()
    dt = (time.perf_counter() - t) / a.steps
    flop_per_token = 6 * 85e6 + 6 * 24.0e6 + 12 * 12 * t_len * 768
    tag = "[bf16] " if a.bf16 else ""
    print(f"{tag}jax {jax.__version__} FlaxBertForMaskedLM B={b} T={t_len}: compile+1st {compile_s:.1f}s, "
          f"{dt * 1e3:.0f} ms/step, {b * t_len / dt:.0f} tok/s, "
          f"~{flop_per_token * b * t_len / dt / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
