"""The file MLflow copies into every logged model ("models from code", nothing pickled): loading
the model runs it, which makes an `ImageClassifier` (tracking/logged_model.py) the model."""
from mlflow.models import set_model

from mribench.tracking.logged_model import ImageClassifier

set_model(ImageClassifier())
