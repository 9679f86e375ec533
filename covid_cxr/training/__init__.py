"""Fine-tuning with the transformers Trainer, then calibration, evaluation, artefacts, the card and the push.

One fine-tune, top to bottom (`covid-cxr finetune` parses GROUPS and calls run.run):

    run(model_args, data_args, eval_args, training_args)    run.py: the four groups become one RunArguments
      load_splits, run_fingerprint, up_to_date              inputs.py, checkpoints.py: a finished run is left as is
      fit(arguments, splits)                                run.py: plan the resume, load_model (trainer.py; lungs
                                                            first with a segmenter), freeze, pre-decode, train
      finalise(model, processor, splits, ...)               run.py: score, calibrate, evaluate, fold the
                                                            temperature, save, ONNX, plots, probes (report.py),
                                                            lungs and occlusion, log, card, push
      finish_run                                            checkpoints.py: the folder is marked finished

Code beside the package (the study's rounds, the tests) calls `run`, `fit`, `recipe_of` and `RunArguments`.
"""
