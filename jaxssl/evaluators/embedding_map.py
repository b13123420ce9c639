"""A 2-D map (t-SNE) of held-out features, pretrained vs random init: WORKDIR/embedding_map.png.

Drawn once, at the end of a run. Feature extraction runs on every process (it is a collective);
only process 0 draws and saves. matplotlib is an optional extra (``pip install -e '.[plots]'``).
"""
from __future__ import annotations

import os

import jax

from jaxssl.evaluators import features
from jaxssl.evaluators.representation import RepresentationEvaluator


class EmbeddingMapEvaluator(RepresentationEvaluator):
    name = "embedding_map"

    def __call__(self, state, workdir: str, final: bool) -> dict:
        if not final:
            return {}
        from jaxssl import plots
        c = self.config
        test = self.splits[1]
        bs = int(c.eval.batch_size)
        params0, model_state0 = self.random_init()
        f_ssl, labels = features.extract_split(
            self.embed_fn(state.params, state.model_state, test.host_cropped), test.reader,
            test.num_examples, bs, self.mesh)
        f_rand, _ = features.extract_split(
            self.embed_fn(params0, model_state0, test.host_cropped), test.reader,
            test.num_examples, bs, self.mesh)
        if jax.process_index() == 0:
            try:
                plots.save_embedding_map({f"{c.method} (pretrained)": (f_ssl, labels),
                                          "random init": (f_rand, labels)},
                                         os.path.join(workdir, "embedding_map.png"),
                                         random_state=c.seed)
            except ImportError as e:  # matplotlib is an optional extra ('.[plots]')
                print(f"embedding map skipped: {e}; pip install -e '.[plots]'", flush=True)
        return {}
