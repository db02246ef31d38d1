"""Hugging Face transformers adapter (runs in the worker): CPU and CUDA, dtypes, bitsandbytes 4/8-bit on the fly and pre-quantized."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..base import Completion, Engine, EngineInfo, LoadRequest, Scored


class QuantMethodUnsupported(RuntimeError):
    pass


def _before_dtype_keyword(version: str) -> bool:
    from packaging.version import Version

    return Version(version) < Version("4.56.0")


class TransformersEngine(Engine):
    kind = "transformers"
    preload = ("torch", "transformers", "transformers.generation")
    preload_cpu_only = ("bitsandbytes",)  # its import initialises CUDA on GPU machines

    def load(self, request: LoadRequest) -> EngineInfo:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype: Any = "auto" if request.dtype == "auto" else getattr(torch, request.dtype)
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": request.trust_remote_code}
        shown: dict[str, Any] = {"dtype": request.dtype, "trust_remote_code": request.trust_remote_code}
        method = request.quantization
        if method in ("bnb-4bit", "bnb-8bit") and not request.prequantized:
            from transformers import BitsAndBytesConfig

            if method == "bnb-4bit":
                qargs = {"load_in_4bit": True, "bnb_4bit_quant_type": self.args.get("bnb_4bit_quant_type", "nf4"),
                         "bnb_4bit_use_double_quant": bool(self.args.get("bnb_4bit_use_double_quant", False))}
                if dtype != "auto":
                    qargs["bnb_4bit_compute_dtype"] = dtype
            else:
                qargs = {"load_in_8bit": True}
            kwargs["quantization_config"] = BitsAndBytesConfig(**qargs)
            shown["quantization_config"] = {"BitsAndBytesConfig": {k: str(v) for k, v in qargs.items()}}
        elif request.gguf_file or method.startswith("gguf"):
            if not request.gguf_file:
                raise QuantMethodUnsupported(f"{method}: no GGUF file to load (expected a .gguf checkpoint)")
            kwargs["gguf_file"] = request.gguf_file
            shown["gguf_file"] = request.gguf_file
        elif method != "none" and not request.prequantized:
            raise QuantMethodUnsupported(
                f"Unknown quantization method for on-the-fly loading in transformers: {method!r}. "
                f"Give a pre-quantized checkpoint under the model's `variants: {{{method}: PATH}}`.")
        device_map = "cuda:0" if request.device == "cuda" else "cpu"
        kwargs["device_map"] = device_map
        shown["device_map"] = device_map
        extra = dict(self.args.get("model_kwargs", {}))
        kwargs.update(extra)
        shown.update(extra)

        if _before_dtype_keyword(transformers.__version__):
            # `dtype` arrived in 4.56 (`torch_dtype` before): older releases keep an unknown `dtype` in the config,
            # which then fails to serialise ("Object of type dtype is not JSON serializable")
            kwargs["torch_dtype"] = kwargs.pop("dtype")
            shown["torch_dtype"] = shown.pop("dtype")
        self.args_used = {"call": "AutoModelForCausalLM.from_pretrained", "path": request.path, **shown}
        torch.manual_seed(request.seed)
        # A GGUF next to a tokenizer.json (a real: source's folder): that tokenizer follows the file's add_bos_token;
        # transformers' GGUF tokenizer conversion ignores it (Gemma 3 without BOS degenerates).
        has_tokenizer = (Path(request.path) / "tokenizer.json").is_file()
        tok_kwargs = {"gguf_file": request.gguf_file} if request.gguf_file and not has_tokenizer else {}
        # Phases of the start (the GPU cost benchmark's table; vLLM's come from its worker methods): on the H200 a
        # 270M model's transformers cell took 14-20 s to load, which the cell's metrics could not break down.
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(request.path, trust_remote_code=request.trust_remote_code, **tok_kwargs)
        t1 = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(request.path, **kwargs).eval()
        self.phases = {"tokenizer_s": round(t1 - t0, 4), "weight_load_s": round(time.perf_counter() - t1, 4)}
        self.device = self.model.device
        self.torch = torch
        qmodules = sum(1 for m in self.model.modules() if type(m).__name__ in ("Linear4bit", "Linear8bitLt"))
        self.loaded = {"param_dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
                       "quantized_modules": qmodules}
        return EngineInfo(version=transformers.__version__, args=self.args_used)

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Completion]:
        torch = self.torch
        out: list[Completion] = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            for prompt in prompts:
                enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
                res = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                          output_logits=True, return_dict_in_generate=True)
                new = res.sequences[0, enc["input_ids"].shape[1]:].tolist()
                logits = torch.stack(res.logits) if res.logits else None
                finite = bool(torch.isfinite(logits).all()) if logits is not None else None
                top = None
                if logits is not None:
                    lp = torch.log_softmax(logits.float()[:, 0, :], dim=-1)
                    vals, idx = lp.topk(5, dim=-1)
                    top = [dict(zip(i.tolist(), v.tolist())) for i, v in zip(idx, vals)]
                out.append(Completion(prompt, self.tokenizer.decode(new, skip_special_tokens=True), new, finite, top))
        return out

    def score(self, text: str, top_k: int = 5) -> Scored:
        torch = self.torch
        with torch.inference_mode():
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"].to(self.device)
            lp = torch.log_softmax(self.model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            nxt = ids[0, 1:]
            actual = lp.gather(1, nxt[:, None])[:, 0]
            vals, idx = lp.topk(top_k, dim=-1)
        return Scored(ids[0].tolist(), actual.tolist(), [dict(zip(i.tolist(), v.tolist())) for i, v in zip(idx, vals)])

    def close(self) -> None:
        self.model = None
