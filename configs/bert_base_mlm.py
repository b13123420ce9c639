"""BERT-base masked-language pretraining (Devlin et al. 2019): phase 1 (T=128) and phase 2 (T=512).

Command:   python -m jaxssl.main --config=configs/bert_base_mlm.py:phase1 --workdir=runs/bert_base_p1
           python -m jaxssl.main --config=configs/bert_base_mlm.py:phase2 --workdir=runs/bert_base_p2 \
               --config.train.init_from=runs/bert_base_p1 --config.data.vocab_file=runs/bert_base_p1/vocab.txt
           (:phase2_rewarm instead of :phase2 for a fresh warm-up in phase 2, see Variants)
           Large-batch LAMB variant (You et al. 2020): add --config.optim.name=lamb and the
           LAMB recipe's batch / lr and a schedule of its own per phase (e.g. phase1 with
           --config.train.batch_size=65536 --config.optim.base_lr=6e-3 --config.train.num_steps=7038
           --config.optim.warmup_fraction=0.2843 --config.optim.schedule_total_steps=0).
           With BERT's released uncased vocabulary: --config.data.vocab_file=PATH/vocab.txt.
           Data: tfds wikipedia/20230601.en prepared in data.data_dir (tfds build needs
           apache-beam); BookCorpus, BERT's other half, is not in tfds.
Hardware:  the paper's 4 Cloud TPU pods (16 TPU chips) for 4 days; any pod slice or multi-GPU
           host. Global batch 256 (phase 1: 256 x 128 = 32,768 tokens per step).
Runtime:   phase 1: 900k steps (90% of BERT's 1M); phase 2: 100k steps (the last 10%).
Expected:  no published target. The BERT paper and google-research/bert report no
           masked-LM accuracy for BERT-base pretraining (only downstream GLUE / SQuAD after
           fine-tuning: GLUE is configs/bert_glue.py, SQuAD is not implemented);
           eval_results.json gives the held-out
           masked-token accuracy and perplexity of this run next to the most-frequent-token
           baseline on the same positions.

Recipe (BERT paper appendix A.2; google-research/bert run_pretraining.py, optimization.py,
create_pretraining_data.py): WordPiece, 30,522-token uncased vocabulary (trained on the
training split here unless data.vocab_file is given); 15% of tokens selected, n = round(0.15 x
len(tokens)) with [CLS] / [SEP] counted, 80/10/10, max 20 predictions per 128-token row and
80 per 512-token row; BERT-base L12 H768 A12 I3072, GELU, post-LN, learned positions (512),
tied output embeddings, dropout 0.1 (attention dropout 0.1 as in BERT: the explicit softmax
path); AdamWeightDecayOptimizer: Adam without bias correction, lr 1e-4, betas (0.9, 0.999),
eps 1e-6, weight decay 0.01 (not on LayerNorm / biases), global-norm clipping 1.0; ONE
learning-rate schedule over the 1M steps of both phases: 10k warm-up steps, then linear decay
to 0 at step 1M; phase 1 runs its steps 0-900k at T=128, phase 2 its steps 900k-1M at T=512
(lr 1e-5 -> 0); sentence-pair rows [CLS] A [SEP] B [SEP] with segment ids; B = 256.

Variants: phase1, phase2 (the paper's single schedule, split); phase2_rewarm: phase 2 with a
schedule of its own (10k warm-up to 1e-4 again, linear decay over its 100k steps) -- the
structure of NVIDIA's two-phase BERT recipe (a fresh warm-up per phase) and of calling
google-research/bert's run_pretraining.py twice (each call builds its own warm-up + decay over
its num_train_steps; init_checkpoint restores no global step).

Deviations, named: no next-sentence prediction (RoBERTa: it does not help) and B is always
A's continuation; rows are re-masked every epoch (RoBERTa's dynamic masking) instead of
BERT's 10 static copies; the linear decay is the continuous form, peak x (T - t) / (T - W)
(BERT's polynomial_decay runs from step 0 and is overridden during warm-up: at most 1%
relative difference, optim.warmup_linear_schedule). Phase 2 starts from phase 1's
parameters (train.init_from; both phases have 512 position embeddings, so every leaf matches)
with fresh Adam moments (as run_pretraining.py with init_checkpoint: optimization.py's
comment, m / v are not loaded); it must reuse phase 1's vocabulary
(data.vocab_file=<phase 1 workdir>/vocab.txt). The packed rows are held in host and device
memory, so cap data.max_train_documents to what the devices hold.
Every field against its source: docs/recipes.md.
"""
from jaxssl.config import parse_arg
from jaxssl.methods.mlm import mlm_base_config

# variant -> (seq_len, max_predictions, num_steps, schedule_start_step, schedule_total_steps)
TOTAL_STEPS = 1_000_000   # BERT paper A.2: 1M steps, 90% at T=128, 10% at T=512
WARMUP_STEPS = 10_000
PHASES = {"phase1": (128, 20, 900_000, 0, TOTAL_STEPS),
          "phase2": (512, 80, 100_000, 900_000, TOTAL_STEPS),
          "phase2_rewarm": (512, 80, 100_000, 0, 0)}


def get_config(arg=None):
    phase = parse_arg(arg, PHASES, "phase1")
    seq_len, max_predictions, num_steps, start, span = PHASES[phase]
    c = mlm_base_config()
    c.seed = 0
    c.data.update(dict(name="wikipedia/20230601.en", train_split="train[:99%]",
                       test_split="train[99%:]", max_test_documents=2000, seq_len=seq_len,
                       sentence_pairs=True, vocab_file="", vocab_size=30522, lowercase=True))
    c.model.update(dict(backbone="bert_base", num_layers=0, hidden_size=0, num_heads=0,
                        intermediate_size=0, max_position=512, hidden_dropout=0.1,
                        attention_dropout=0.1, dtype="bfloat16"))
    c.mlm.update(dict(rate=0.15, max_predictions=max_predictions, whole_word=False,
                      count_special_tokens=True))
    c.optim.update(dict(name="adamw", base_lr=1e-4, lr_scaling="none", weight_decay=0.01,
                        b1=0.9, b2=0.999, eps=1e-6, adam_bias_correction=False,
                        warmup_epochs=0.0, warmup_fraction=WARMUP_STEPS / (span or num_steps),
                        schedule="linear", schedule_total_steps=span,
                        schedule_start_step=start, grad_clip_norm=1.0,
                        decay_all_params=False))  # not LayerNorm / biases (ndim <= 1)
    c.train.update(dict(batch_size=256, num_steps=num_steps, num_epochs=0.0, log_every_steps=1000,
                        checkpoint_every_steps=10_000, eval_every_steps=100_000))
    c.eval.update(dict(batch_size=512))
    return c.lock()
