"""Fit a model to the machine: how many layers go to the GPU, and how long a context fits.

A pure function of the model's shape (from its GGUF header) and the hardware (engine/hardware.py),
so it can be checked on a table of machines it never ran on. The estimate follows llama.cpp's own
accounting: weights per layer, an f16 KV cache of 2 x kv_heads x head_dim x 2 bytes per token and
layer, and a compute buffer dominated by the logits of one batch (n_batch x n_vocab floats).
Measured on SmolLM2-135M at n_ctx 4096: KV 90.0 MiB (llama.cpp: 90.00), compute 100.5 MiB (98.25).

Policy: keep the requested context and put as many layers on the GPU as fit (all of them, or a
partial offload, or none); only when RAM cannot hold the rest is the context halved, down to
`min_ctx`. A model too large even then is still loaded (memory-mapped weights page from disk) and
the fit says so rather than refusing.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.gguf import GGUFInfo

MiB = 1 << 20
GiB = 1 << 30
VRAM_HEADROOM = 512 * MiB  # the GPU driver's context, fragmentation, the desktop
RAM_HEADROOM = 1 * GiB  # this app (Textual, SQLite, the embedding model) and the OS
UNIFIED_GPU_SHARE = 0.75  # Apple silicon lets the GPU use about this much of the memory
CTX_STEP = 256


def size_text(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GiB:,.1f} GiB" if n >= GiB else f"{n / MiB:,.0f} MiB"


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a model depends on; read from a GGUF header by `from_gguf`."""

    n_layers: int
    layer_bytes: int  # weights of one repeating layer (the mean)
    output_bytes: int  # the output head: on the GPU only when every layer is
    other_bytes: int  # token embeddings and the like: stay in RAM
    kv_bytes_per_token_layer: int  # f16 K and V of one token in one layer
    n_vocab: int
    n_embd: int
    n_head: int
    n_ctx_train: int | None = None

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        n_layers = info.block_count or len(info.layer_bytes) or 1
        layers = sum(info.layer_bytes.values())
        kv_heads, k_dim, v_dim = info.head_count_kv or 0, info.key_length or 0, info.value_length or 0
        if not layers:  # unknown tensor types: spread the file over the layers
            layers = info.file_size - info.other_bytes - info.output_bytes
        return cls(
            n_layers=n_layers,
            layer_bytes=-(-layers // n_layers),
            output_bytes=info.output_bytes,
            other_bytes=info.other_bytes,
            kv_bytes_per_token_layer=kv_heads * (k_dim + v_dim) * 2,
            n_vocab=info.vocab_size or 32_000,
            n_embd=info.embedding_length or 4096,
            n_head=info.head_count or 32,
            n_ctx_train=info.context_length,
        )

    @property
    def weights_bytes(self) -> int:
        return self.n_layers * self.layer_bytes + self.output_bytes + self.other_bytes

    def kv_bytes(self, n_ctx: int, layers: int | None = None) -> int:
        return n_ctx * (self.n_layers if layers is None else layers) * self.kv_bytes_per_token_layer

    def compute_bytes(self, n_ctx: int, n_batch: int, flash_attn: bool) -> int:
        size = n_batch * (self.n_vocab + 4 * self.n_embd) * 4
        if not flash_attn:  # the attention scores of one batch are materialised
            size += n_batch * n_ctx * self.n_head * 4
        return size


@dataclass(frozen=True)
class Hardware:
    """What the machine offers; None where the platform does not tell."""

    gpu_offload: bool  # this llama.cpp build can offload (CUDA, Metal, Vulkan, ...)
    vram_free: int | None = None
    vram_total: int | None = None
    ram_available: int | None = None
    ram_total: int | None = None
    unified_memory: bool = False  # the GPU shares RAM (Apple silicon)
    gpu_name: str | None = None


@dataclass(frozen=True)
class Fit:
    n_gpu_layers: int  # -1: every layer and the output head
    n_ctx: int
    gpu_bytes: int  # estimated, on the GPU
    ram_bytes: int  # estimated, in RAM
    fits: bool | None  # False: more than the memory available (it will page); None: unknown
    reason: str

    @property
    def memory_text(self) -> str:
        parts = [f"{size_text(self.gpu_bytes)} on the GPU"] if self.gpu_bytes else []
        parts += [f"{size_text(self.ram_bytes)} in RAM"] if self.ram_bytes or not self.gpu_bytes else []
        return "about " + " + ".join(parts)

    @property
    def placement(self) -> str:
        if self.n_gpu_layers == 0:
            return "CPU"
        return "GPU (all layers)" if self.n_gpu_layers < 0 else f"GPU ({self.n_gpu_layers} layers) + CPU"


def choose_fit(
    shape: ModelShape,
    hardware: Hardware,
    n_ctx: int,
    *,
    n_gpu_layers: int | None = None,
    n_batch: int = 512,
    flash_attn: bool = True,
    min_ctx: int = 512,
) -> Fit:
    """The layers to offload and the context to use. `n_gpu_layers` set by the user is kept;
    `n_ctx` is the context asked for (never raised, capped at the trained context)."""
    notes: list[str] = []
    if shape.n_ctx_train and n_ctx > shape.n_ctx_train:
        notes.append(f"n_ctx {n_ctx} capped at the model's trained context {shape.n_ctx_train}")
        n_ctx = shape.n_ctx_train
    min_ctx = min(min_ctx, n_ctx)
    all_layers = shape.n_layers + 1  # llama.cpp counts the output head as one more layer

    def compute(ctx: int) -> int:
        return shape.compute_bytes(ctx, min(n_batch, ctx), flash_attn)

    def gpu_need(k: int, ctx: int) -> int:
        if k <= 0:
            return 0
        layers = min(k, shape.n_layers)
        head = shape.output_bytes if k >= all_layers else 0
        return layers * shape.layer_bytes + head + shape.kv_bytes(ctx, layers) + compute(ctx)

    def ram_need(k: int, ctx: int) -> int:
        on_cpu = shape.n_layers - min(max(k, 0), shape.n_layers)
        head = 0 if k >= all_layers else shape.output_bytes
        scratch = compute(ctx) if k <= 0 else 0
        return on_cpu * shape.layer_bytes + head + shape.other_bytes + shape.kv_bytes(ctx, on_cpu) + scratch

    user_layers = n_gpu_layers is not None and hardware.gpu_offload
    unified = hardware.gpu_offload and hardware.unified_memory
    ram_budget = None if hardware.ram_available is None else hardware.ram_available - RAM_HEADROOM
    gpu_budget: int | None
    if not hardware.gpu_offload:
        gpu_budget = 0
        if n_gpu_layers:
            notes.append("this llama.cpp build cannot offload to a GPU, so n_gpu_layers is ignored")
        n_gpu_layers = 0
    elif unified:
        # One pool: the GPU part and the rest both come out of RAM.
        total = hardware.ram_total or hardware.ram_available
        gpu_budget = None if ram_budget is None or total is None else min(
            ram_budget, int(total * UNIFIED_GPU_SHARE))
    else:
        gpu_budget = None if hardware.vram_free is None else hardware.vram_free - VRAM_HEADROOM

    def layers_for(ctx: int) -> int:
        if n_gpu_layers is not None:
            return all_layers if n_gpu_layers < 0 else n_gpu_layers
        if gpu_budget is None:
            return all_layers  # the GPU does not say how much is free: llama.cpp's default
        k = all_layers
        while k > 0 and gpu_need(k, ctx) > gpu_budget:
            k -= 1
        return k

    def ram_ok(k: int, ctx: int) -> bool | None:
        if ram_budget is None:
            return None
        need = ram_need(k, ctx) + (gpu_need(k, ctx) if unified else 0)
        return need <= ram_budget

    ctx = n_ctx
    while True:
        k = layers_for(ctx)
        ok = ram_ok(k, ctx)
        if ok is not False or ctx <= min_ctx:
            break
        ctx = max(min_ctx, (ctx // 2) // CTX_STEP * CTX_STEP)

    if ctx < n_ctx:
        notes.append(f"n_ctx lowered from {n_ctx} to {ctx} to fit in RAM")
    reason = _reason(k, all_layers, hardware, gpu_budget, ok, user_layers)
    if user_layers and k and gpu_budget is not None and not unified and gpu_need(k, ctx) > gpu_budget:
        ok = False
        reason += (f"; n_gpu_layers={n_gpu_layers} needs {size_text(gpu_need(k, ctx))} of GPU memory, "
                   f"{size_text(max(gpu_budget, 0))} is free")
    return Fit(-1 if k >= all_layers else k, ctx, gpu_need(k, ctx), ram_need(k, ctx), ok,
               "; ".join([*notes, reason]))


def min_context(max_tokens: int) -> int:
    """The shortest context worth lowering to: an answer of max_tokens and a question."""
    return max(512, max_tokens + 256)


def fit_model(
    info: GGUFInfo,
    hardware: Hardware,
    *,
    n_ctx: int,
    n_gpu_layers: int | None,
    auto_fit: bool = True,
    n_batch: int = 512,
    flash_attn: bool = True,
    min_ctx: int = 512,
) -> Fit:
    """`choose_fit` for a model file and the settings; with `auto_fit` off, the settings as set."""
    if not auto_fit:
        layers = n_gpu_layers if n_gpu_layers is not None else (-1 if hardware.gpu_offload else 0)
        return Fit(layers, n_ctx, 0, 0, None, "auto_fit is off: n_ctx and n_gpu_layers as configured")
    return choose_fit(ModelShape.from_gguf(info), hardware, n_ctx, n_gpu_layers=n_gpu_layers,
                      n_batch=n_batch, flash_attn=flash_attn, min_ctx=min_ctx)


def _reason(k: int, all_layers: int, hw: Hardware, gpu_budget: int | None, ok: bool | None,
            user_layers: bool) -> str:
    if ok is False:
        where = "the model does not fit in the memory available even at the smallest context: " \
                "it will page from disk and answer slowly; choose a smaller quantization"
    elif ok is None:
        where = "free RAM unknown"
    else:
        where = ""
    if user_layers:
        what = "n_gpu_layers as configured"
    elif not hw.gpu_offload:
        what = "CPU only: this llama.cpp build has no GPU offload"
    elif gpu_budget is None:
        what = "free GPU memory unknown: every layer offloaded (set n_gpu_layers if loading fails)"
    elif k >= all_layers:
        what = "every layer fits on the GPU"
    elif k > 0:
        what = f"partial offload: {k} of {all_layers - 1} layers fit in free GPU memory"
    else:
        what = "not even one layer fits in free GPU memory: CPU"
    return "; ".join(part for part in (what, where) if part)
