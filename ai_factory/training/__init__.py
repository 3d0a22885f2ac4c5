"""Training lineage for custom models: train locally or as a SageMaker training job, record everything
in MLflow (parameters, dataset digests, metrics, the registered model and its lineage tags), then host
the registered model on a SageMaker endpoint (``ai_factory.constructs.sagemaker_endpoint``) and route to
it from the model catalog (``provider: sagemaker``). See ``docs/mlops.md``.

- ``lineage``: dataset loading and digests, git commit, the lineage tags every model version carries.
- ``classifier``: the example model, a keyword (multinomial naive Bayes) text classifier in pure Python.
- ``chat_model``: the MLflow model file (models-from-code) that serves it with an OpenAI-style chat API.
- ``train``: the training script (``python -m ai_factory.training.train``), the same locally and in
  SageMaker.
- ``sagemaker_job``: launches ``train`` as a SageMaker training job (the optional ``sagemaker`` extra).
"""
