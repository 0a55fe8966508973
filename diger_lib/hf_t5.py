"""Interop with Hugging Face ``transformers``' T5: the equivalent ``T5Config`` of a recommender, and weight copies both
ways round (tests check that the two compute the same logits, and the benchmarks time one against the other)."""
from __future__ import annotations

import torch

from .config import RecommenderConfig
from .vocab import PAD, SIDVocab


def config_from_hf(c) -> RecommenderConfig:
    """The RecommenderConfig of a ``transformers.T5Config``."""
    return RecommenderConfig(d_model=c.d_model, n_heads=c.num_heads, d_kv=c.d_kv, d_ff=c.d_ff,
                             n_encoder_layers=c.num_layers, n_decoder_layers=c.num_decoder_layers,
                             dropout=c.dropout_rate, rel_buckets=c.relative_attention_num_buckets,
                             rel_max_distance=c.relative_attention_max_distance,
                             tie_embeddings=bool(getattr(c, "scale_decoder_outputs", c.tie_word_embeddings)))


@torch.no_grad()
def load_hf_t5(model, hf):  # model: a recommender.GenRecModel (not imported: recommender imports this module)
    """Copy the weights of a ``transformers.T5ForConditionalGeneration`` built with ``hf_t5_config``."""
    want = hf_t5_config(model.cfg, model.vocab)
    got = hf.config
    for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                 "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj"):
        if getattr(got, name) != getattr(want, name):
            raise ValueError(f"HF T5 config {name}={getattr(got, name)!r} does not match this model's "
                             f"{getattr(want, name)!r}")
    scaled = bool(getattr(got, "scale_decoder_outputs", getattr(got, "tie_word_embeddings", True)))
    if scaled != model.cfg.tie_embeddings:
        raise ValueError(f"HF T5 {'rescales' if scaled else 'does not rescale'} decoder outputs by d_model**-0.5 "
                         f"but this model has tie_embeddings={model.cfg.tie_embeddings}; build it with hf_t5_config()")
    model.embed.weight.copy_(hf.shared.weight)
    if model.cfg.tie_embeddings:
        if not torch.equal(hf.lm_head.weight, hf.shared.weight):
            raise ValueError("this model ties lm_head to the input table, the HF model's lm_head differs")
    else:
        model.lm_head.weight.copy_(hf.lm_head.weight)

    def attn(dst, src) -> None:
        if dst.cross:
            dst.q.weight.copy_(src.q.weight)
            dst.kv.weight.copy_(torch.cat([src.k.weight, src.v.weight], 0))
        else:
            dst.qkv.weight.copy_(torch.cat([src.q.weight, src.k.weight, src.v.weight], 0))
        dst.o.weight.copy_(src.o.weight)

    for stack, blocks, bias, norm in ((hf.encoder, model.enc_blocks, model.enc_bias, model.enc_norm),
                                      (hf.decoder, model.dec_blocks, model.dec_bias, model.dec_norm)):
        bias.weight.copy_(stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight)
        norm.weight.copy_(stack.final_layer_norm.weight)
        for blk, hb in zip(blocks, stack.block):
            layers = list(hb.layer)
            attn(blk.self_attn, layers[0].SelfAttention)
            blk.self_norm.weight.copy_(layers[0].layer_norm.weight)
            if len(layers) == 3:
                attn(blk.cross_attn, layers[1].EncDecAttention)
                blk.cross_norm.weight.copy_(layers[1].layer_norm.weight)
            ff = layers[-1]
            blk.ff_norm.weight.copy_(ff.layer_norm.weight)
            blk.wi.weight.copy_(ff.DenseReluDense.wi.weight)
            blk.wo.weight.copy_(ff.DenseReluDense.wo.weight)
    return model


def hf_t5_config(cfg: RecommenderConfig, vocab: SIDVocab):
    """The ``transformers.T5Config`` equivalent to (cfg, vocab) (LETTER/TIGER's T5 setup)."""
    from transformers import T5Config

    return T5Config(vocab_size=vocab.size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
                    num_layers=cfg.n_encoder_layers, num_decoder_layers=cfg.n_decoder_layers, num_heads=cfg.n_heads,
                    relative_attention_num_buckets=cfg.rel_buckets,
                    relative_attention_max_distance=cfg.rel_max_distance, dropout_rate=cfg.dropout,
                    feed_forward_proj="relu", tie_word_embeddings=cfg.tie_embeddings, decoder_start_token_id=PAD, pad_token_id=PAD,
                    eos_token_id=1)
