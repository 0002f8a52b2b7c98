"""Entry point MLflow runs when it loads a texinspect pyfunc ("models from code", no pickle).

MLflow copies this file into the logged model and executes it at load time; it names the model
class, and :class:`~texinspect.tracking.pyfunc.TexinspectModel.load_context` then reads the
texinspect model folder stored as the ``model_dir`` artifact.
"""

from mlflow.models import set_model

from texinspect.tracking.pyfunc import TexinspectModel

set_model(TexinspectModel())
