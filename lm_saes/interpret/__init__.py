"""Explanations and scores of a dictionary's features, through any OpenAI-compatible endpoint or
the offline lexical baseline (`lm-saes interpret`; see ``stage.py``)."""
