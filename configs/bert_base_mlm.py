"""BERT-base masked-language pretraining (Devlin et al. 2019): phase 1 (T=128) and phase 2 (T=512).

Command:   python -m jaxssl.main --config=configs/bert_base_mlm.py:phase1 --workdir=runs/bert_base_p1
           python -m jaxssl.main --config=configs/bert_base_mlm.py:phase2 --workdir=runs/bert_base_p2 \
               --config.train.init_from=runs/bert_base_p1 --config.data.vocab_file=runs/bert_base_p1/vocab.txt
           Large-batch LAMB variant (You et al. 2020): add --config.optim.name=lamb and the
           LAMB recipe's batch / lr (e.g. --config.train.batch_size=65536 --config.optim.base_lr=6e-3
           --config.optim.warmup_fraction=0.2843 --config.train.num_steps=7038 for phase 1).
           With BERT's released uncased vocabulary: --config.data.vocab_file=PATH/vocab.txt.
           Data: tfds wikipedia/20230601.en prepared in data.data_dir (tfds build needs
           apache-beam); BookCorpus, BERT's other half, is not in tfds.
Hardware:  the paper's 4 Cloud TPU pods (16 TPU chips) for 4 days; any pod slice or multi-GPU
           host. Global batch 256 (phase 1: 256 x 128 = 32,768 tokens per step).
Runtime:   phase 1: 900k steps (90% of BERT's 1M); phase 2: 100k steps (the last 10%).
Expected:  held-out masked-token accuracy of roughly 0.65-0.70 (MLM loss ~1.5-1.8) at the end
           of pretraining, as public BERT-base reproductions report (the paper gives no MLM
           number); eval_results.json also holds the most-frequent-token baseline on the
           same positions.

Recipe (BERT paper Sec. A.2, google-research/bert README): WordPiece, 30,522-token uncased
vocabulary (trained on the training split here unless data.vocab_file is given); 15% of
tokens selected, 80/10/10, max 20 predictions per 128-token row and 80 per 512-token row;
BERT-base L12 H768 A12 I3072, GELU, post-LN, learned positions (512), tied output embeddings,
dropout 0.1 (attention dropout 0.1 as in BERT: the explicit softmax path); AdamW lr 1e-4,
betas (0.9, 0.999), eps 1e-6, weight decay 0.01 (not on LayerNorm / biases), 10k warmup steps
then linear decay to 0; sentence-pair rows [CLS] A [SEP] B [SEP] with segment ids.

Deviations, named: no next-sentence prediction (RoBERTa: it does not help) and B is always
A's continuation; rows are re-masked every epoch (RoBERTa's dynamic masking) instead of
BERT's 10 static copies. Phase 2 starts from phase 1's parameters (train.init_from; both
phases have 512 position embeddings, so every leaf matches) with a fresh optimizer and its own
schedule (10k warmup, linear decay over its 100k steps), as NVIDIA's two-phase recipe does; it
must reuse phase 1's vocabulary (data.vocab_file=<phase 1 workdir>/vocab.txt). The packed rows
are held in host and device memory, so cap data.max_train_documents to what the devices hold.
"""
from jaxssl.config import parse_arg
from jaxssl.methods.mlm import mlm_base_config

# variant -> (seq_len, max_predictions, num_steps)
PHASES = {"phase1": (128, 20, 900_000), "phase2": (512, 80, 100_000)}


def get_config(arg=None):
    phase = parse_arg(arg, PHASES, "phase1")
    seq_len, max_predictions, num_steps = PHASES[phase]
    c = mlm_base_config()
    c.seed = 0
    c.data.update(dict(name="wikipedia/20230601.en", train_split="train[:99%]",
                       test_split="train[99%:]", max_test_documents=2000, seq_len=seq_len,
                       sentence_pairs=True, vocab_file="", vocab_size=30522, lowercase=True))
    c.model.update(dict(backbone="bert_base", num_layers=0, hidden_size=0, num_heads=0,
                        intermediate_size=0, max_position=512, hidden_dropout=0.1,
                        attention_dropout=0.1, dtype="bfloat16"))
    c.mlm.update(dict(rate=0.15, max_predictions=max_predictions, whole_word=False))
    c.optim.update(dict(name="adamw", base_lr=1e-4, lr_scaling="none", weight_decay=0.01,
                        b1=0.9, b2=0.999, eps=1e-6, warmup_epochs=0.0,
                        warmup_fraction=10_000 / num_steps, schedule="linear", grad_clip_norm=1.0))
    c.train.update(dict(batch_size=256, num_steps=num_steps, num_epochs=0.0, log_every_steps=1000,
                        checkpoint_every_steps=10_000, eval_every_steps=100_000))
    c.eval.update(dict(batch_size=512))
    return c.lock()
