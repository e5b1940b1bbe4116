"""Prediction and sharing with a trained model: everything after training, none of the training loop.

- ``export``: the model folder a run writes (``model/``) and its safe loading;
- ``model_card``: that folder's ``README.md``;
- ``hub``: a run, an export folder or a Hub id resolved to a model folder; push to the Hub; ``SERHubModel``;
- ``inference``: ``EmotionClassifier`` (``ser-dist predict``);
- ``evaluation``: ``evaluate_model`` (``ser-dist evaluate``), scored through ``ser_dist.scoring``.

Imports go one way (model_card <- export <- hub <- inference, evaluation); nothing here imports the
trainer, checkpoints, optimizers or the study runners. The modules are imported on use, not here.
"""
