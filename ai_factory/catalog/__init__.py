"""The approved-model catalog, its model cards and their publication to the MLflow model registry."""
