"""Make a tiny causal language model that vLLM can serve on CPU, without any download.

A Llama-style config with random (seeded) weights, a byte-level BPE tokenizer trained here on text from the Python
standard library, and a chat template. A few MB; head size 64 (vLLM's CPU attention does not take 16).

    python hack/tinymodel.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + (message['content'] if message['content'] is string else '') + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
# Tool-call markers too: vLLM's tool parsers (hermes, llama3_json) refuse a tokenizer without them.
SPECIAL = ["<|endoftext|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<tool_call>",
           "</tool_call>", "<|python_tag|>"]
VOCAB = 2048
VERSION = "2"  # bump when the recipe changes, so cached copies are remade


def training_text() -> list[str]:
    """Deterministic text that ships with Python: the docstrings and sources of a few standard modules."""
    import argparse, collections, json as j, pathlib, textwrap  # noqa: E401
    import inspect
    texts = []
    for mod in (argparse, collections, j, pathlib, textwrap):
        texts.append(inspect.getsource(mod))
    return texts


def make(out: Path) -> Path:
    marker = out / "modelplane-tiny.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=True, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    marker.write_text(json.dumps({"version": VERSION}))
    return out


if __name__ == "__main__":
    print(make(Path(sys.argv[1])))
