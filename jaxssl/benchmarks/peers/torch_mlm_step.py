"""Peer MLM train step: Hugging Face BertForMaskedLM (bert-base config, random init), 15% of
positions masked and labelled, AdamW 1e-4 wd 0.01, dropout 0.1.

    python torch_mlm_step.py --batch 8 --seq-len 128 --threads 2 [--bf16]

Prints ``... ms/step, X tok/s``, the mean of 5 steps after 2 warm-up steps. Exits 3 when
torch or transformers is missing (run ``bash scripts/setup_peers.sh torch``). Imports no
jaxssl code.
"""
import argparse
import sys
import time

NOT_INSTALLED_EXIT = 3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="forward under torch.autocast(bfloat16)")
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    try:
        import torch
        from transformers import BertConfig, BertForMaskedLM
    except ImportError as e:
        print(f"peer not installed: {e}")
        sys.exit(NOT_INSTALLED_EXIT)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, t_len = a.batch, a.seq_len
    cfg = BertConfig()  # bert-base: L12 H768 A12 V30522
    model = BertForMaskedLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(1000, cfg.vocab_size, (b, t_len))
    labels = ids.clone()
    masked = torch.rand(b, t_len) < 0.15
    labels[~masked] = -100
    ids[masked] = 103
    attention = torch.ones(b, t_len, dtype=torch.long)

    def step():
        if a.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=ids, attention_mask=attention, labels=labels)
        else:
            out = model(input_ids=ids, attention_mask=attention, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        return out.loss.item()

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t) / a.steps
    flop_per_token = 6 * 85e6 + 6 * 24.0e6 + 12 * 12 * t_len * 768  # encoder + MLM head + attention
    tag = "[bf16 autocast] " if a.bf16 else ""
    print(f"{tag}torch {torch.__version__} BertForMaskedLM B={b} T={t_len}: {dt * 1e3:.0f} ms/step, "
          f"{b * t_len / dt:.0f} tok/s, ~{flop_per_token * b * t_len / dt / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
