# The two commands a newcomer runs: `make demo` and `make test`. Each builds .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test docs bench install outside clean

install: $(STAMP)

$(STAMP): setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# A CPU build of torch first: a looser requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# tinysoundfont's wheel declares pyaudio (real-time playback, needs system PortAudio);
	# lmm_env never plays live audio, so install it without that dependency.
	$(PY) -m pip install -q --no-deps tinysoundfont
	$(PY) -m pip install -q -e ".[test,rllib,docs,datasets,judges]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out out

test: $(STAMP)
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory docs

# The documentation site (mkdocs.yml, docs/) into site/, warnings as errors: a broken link or
# reference fails it, and `make test` (what CI runs) builds it. No --quiet: it hides the
# warnings from --strict too, and the build passes.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

# The outside transcribers of the by-ear table (optional: the benchmark plays them when installed).
# --no-deps: basic-pitch's wheel declares TensorFlow on Python >= 3.11 and transkun torchaudio;
# neither is needed (basic-pitch runs its ONNX model; see lmm_env.agents.baselines.transcribers).
outside: $(STAMP)
	$(PY) -m pip install -q --no-deps basic-pitch==0.4.0 transkun==2.0.1
	$(PY) -m pip install -q onnxruntime "resampy<0.4.3,>=0.2.2" "setuptools<81" moduleconf ncls soxr

bench: $(STAMP)
	$(PY) bench/bench_synth.py
	$(PY) bench/bench_env.py

clean:
	rm -rf $(VENV) out *.egg-info site build/docs_src
