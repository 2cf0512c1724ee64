"""The reference for decode speed: raw llama-cpp-python, same model, prompt and settings as
`assistant ask` in bench_foundation.py. Prints one JSON line."""

import json
import sys
import time

import llama_cpp

from engine.backends.local import default_threads
from engine.models import default_model_path

system, question, max_tokens, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(
    model_path=str(default_model_path()), n_ctx=4096, n_threads=default_threads(), n_batch=512,
    flash_attn=True, n_gpu_layers=0, verbose=False,
)
messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
pieces, first, last = [], None, None
for chunk in llm.create_chat_completion(
    messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0, top_p=0.95, seed=seed
):
    text = chunk["choices"][0]["delta"].get("content")
    if text:
        last = time.perf_counter()
        first = first or last
        pieces.append(text)
text = "".join(pieces)
tokens = len(llm.tokenize(text.encode(), add_bos=False, special=True))
print(json.dumps({"text": text, "tokens": tokens, "tokens_per_s": (tokens - 1) / (last - first)}))
