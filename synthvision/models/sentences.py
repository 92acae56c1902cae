"""The word-to-sentence model of language enhancement (LE): any transformers seq2seq model.

The paper used T5-base fine-tuned on CommonGen (e.g. hub id `mrm8488/t5-base-finetuned-common_gen`,
whose input is the concept words themselves: `input_template: "{}"`). Offline, `model: tiny` builds a
random two-layer T5 with a byte-level tokenizer: it writes gibberish (which `prompts.require_class_name`
rejects), but every line of the real path runs.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from synthvision.core.data_config import SentenceModelConfig
from synthvision.core.hashing import derive_seed
from synthvision.models.devices import resolve_device
from synthvision.models.weights import from_pretrained


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges (259 tokens), built without any download."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {char: index + 3 for index, char in enumerate(alphabet)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_tiny_sentence_model(seed: int = 0) -> tuple[T5ForConditionalGeneration, PreTrainedTokenizerFast]:
    tokenizer = byte_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config), tokenizer


def load_sentence_model(config: SentenceModelConfig):
    """(model, tokenizer) on the configured device, from 'tiny', a hub id or a local folder."""
    if config.model == "tiny":
        model, tokenizer = build_tiny_sentence_model()
    else:
        model, tokenizer = from_pretrained(
            "prompts.sentence_model.model",
            config.model,
            lambda source: (AutoModelForSeq2SeqLM.from_pretrained(source), AutoTokenizer.from_pretrained(source)),
        )
    return model.to(resolve_device(config.device)).eval(), tokenizer


@torch.inference_mode()
def sample_sentences(
    model, tokenizer, class_name: str, count: int, config: SentenceModelConfig, seed: int
) -> list[str]:
    """`count` sampled sentences for one class; the same seed gives the same sentences."""
    inputs = tokenizer([config.input_template.format(class_name)], return_tensors="pt").to(model.device)
    sentences: list[str] = []
    for start in range(0, count, config.batch_size):
        torch.manual_seed(derive_seed(seed, "sentences", class_name, start))
        output = model.generate(
            **inputs,
            do_sample=True,
            top_k=config.top_k,
            top_p=config.top_p,
            temperature=config.temperature,
            max_new_tokens=config.max_new_tokens,
            num_return_sequences=min(config.batch_size, count - start),
        )
        sentences += tokenizer.batch_decode(output, skip_special_tokens=True)
    return sentences
