"""llama.cpp engine (llama-cpp-python) for GGUF checkpoints, CPU or CUDA builds."""
from __future__ import annotations

import math
from pathlib import Path

from ..base import Completion, Engine, EngineInfo, LoadRequest, Scored


class LlamaCppEngine(Engine):
    kind = "llamacpp"
    preload = ("llama_cpp",)

    def load(self, request: LoadRequest) -> EngineInfo:
        import llama_cpp

        path = request.gguf_file or str(next(Path(request.path).glob("*.gguf"), Path(request.path)))
        if not path.endswith(".gguf"):
            raise ValueError(f"llama.cpp loads GGUF files; {request.path} has none (quantization {request.quantization!r})")
        args = {"model_path": path, "n_ctx": 256, "seed": request.seed, "logits_all": True, "verbose": False,
                "n_gpu_layers": -1 if request.device == "cuda" else 0, **self.args}
        self.args_used = {"call": "llama_cpp.Llama", **args}
        self.llm = llama_cpp.Llama(**args)
        self.loaded = {"n_vocab": self.llm.n_vocab()}
        return EngineInfo(version=llama_cpp.__version__, args=self.args_used)

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Completion]:
        import numpy as np

        out = []
        eos = self.llm.token_eos()
        for prompt in prompts:
            self.llm.reset()
            tokens = self.llm.tokenize(prompt.encode(), add_bos=True)
            new: list[int] = []
            top: list[dict[int, float]] = []
            finite = True
            for token in self.llm.generate(tokens, top_k=1, temp=0.0, reset=True):
                logits = np.asarray(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float64)
                finite = finite and bool(np.isfinite(logits).all())
                lp = logits - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
                best = np.argsort(lp)[::-1][:5]
                top.append({int(i): float(lp[i]) for i in best})
                if token == eos:
                    break
                new.append(int(token))
                if len(new) >= max_new_tokens:
                    break
            text = self.llm.detokenize(new).decode("utf-8", "replace")
            out.append(Completion(prompt, text, new, finite, top))
        return out

    def score(self, text: str, top_k: int = 5) -> Scored:
        import numpy as np

        self.llm.reset()
        tokens = self.llm.tokenize(text.encode(), add_bos=True)[: self.llm.n_ctx()]
        self.llm.eval(tokens)
        logits = np.asarray(self.llm.scores[: len(tokens) - 1], dtype=np.float64)
        lp = logits - (logits.max(axis=1, keepdims=True)
                       + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)))
        actual = [float(lp[i, tokens[i + 1]]) for i in range(len(tokens) - 1)]
        top = [{int(j): float(row[j]) for j in np.argsort(row)[::-1][:top_k]} for row in lp]
        return Scored([int(t) for t in tokens], actual, top)

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.close()
        self.llm = None
